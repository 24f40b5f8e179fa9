"""The account (importer.account) and the checks of mappings and rows against it (importer.account_checks)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from importer.account import (
    AccountMetadata,
    ActivityMeta,
    FieldMeta,
    Identity,
    MetadataSettings,
    cache_path,
    check_keys,
    data_kind,
    default_cache_dir,
    find_type,
    open_account,
    parse_activity_setting,
    parse_activity_types,
    parse_option_set,
    region_problem,
)
from importer.account_checks import check_mapping, check_rows
from importer.client import Credentials, LsqClient
from importer.endpoints import ACTIVITY_SETTING_PATH, ACTIVITY_TYPES_PATH
from importer.errors import ApiUnusableError, AuthError, MappingError
from importer.mapping import Mapping
from importer.records import Stage
from importer.sandbox import DEFAULT_OPPORTUNITIES, Account, Sandbox
from importer.throttle import RateLimit, RateLimiter
from importer.validate import UNRESOLVED_EVENT, validate_sheet
from tests.helpers import make_sheet

OPP = DEFAULT_OPPORTUNITIES[0]
OWNER = "asha.rao@example.com"
DOCS = ActivityMeta(
    201,
    "Document Collected",
    {
        "mx_Custom_1": FieldMeta("mx_Custom_1", "PAN Number", "String", mandatory=True),
        "mx_Custom_2": FieldMeta("mx_Custom_2", "Amount", "Number"),
        "mx_Custom_3": FieldMeta("mx_Custom_3", "Due Date", "Date"),
        "mx_Custom_4": FieldMeta("mx_Custom_4", "Channel", "Dropdown", options=("Branch", "Online", "Phone")),
        "mx_Custom_6": FieldMeta(
            "mx_Custom_6", "Documents", "MultiSelect", options=("PAN Card", "Aadhaar", "Bank Statement")
        ),
        "mx_Custom_7": FieldMeta("mx_Custom_7", "Verified", "Boolean"),
        "mx_Custom_8": FieldMeta("mx_Custom_8", "Visit Time", "DateTime"),
    },
)


def client_of(sandbox: Sandbox, access_key: str | None = None, secret_key: str | None = None) -> LsqClient:
    return LsqClient(
        sandbox.url, Credentials(access_key or sandbox.access_key, secret_key or sandbox.secret_key)
    )


def metadata_calls(sandbox: Sandbox) -> list[str]:
    return [r.path for r in sandbox.request_log if r.path in {ACTIVITY_TYPES_PATH, ACTIVITY_SETTING_PATH}]


def mapping_of(fields: dict[str, dict], **top: object) -> Mapping:
    return Mapping.model_validate(
        {
            "activity_event": {"value": 201},
            "opportunity_id": {"column": "Opp"},
            "owner_email": {"column": "Owner"},
            "fields": fields,
            **top,
        }
    )


def checked(cells: dict[str, list[str]], fields: dict[str, dict], **top: object):
    """Validate a sheet of Opp, Owner and `cells` columns, then check it against DOCS."""
    size = len(next(iter(cells.values())))
    headers = ["Opp", "Owner", *cells]
    rows = [[OPP, OWNER, *(column[i] for column in cells.values())] for i in range(size)]
    mapping = mapping_of(fields, **top)
    validated = validate_sheet(make_sheet(headers, rows), mapping)
    return check_rows(validated, mapping, {201: DOCS}, "m.yaml", known_types={201: "Document Collected"})


def field_values(result) -> list[dict[str, str]]:
    return [{f["SchemaName"]: f["Value"] for f in row.body.get("Fields", [])} for row in result.rows]


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('[{"Value": "Weight Gain"}, {"Value": "Weight Loss"}]', ("Weight Gain", "Weight Loss")),
        ([{"Value": "A"}, {"Text": "B"}, "C"], ("A", "B", "C")),
        ('[{"Value": "A"}, {"Value": "A"}, {"Value": " "}]', ("A",)),
        ("", ()),
        (None, ()),
        ("[{not json", ()),
        ('{"Value": "A"}', ()),
    ],
)
def test_parse_option_set_reads_the_json_string(raw, expected):
    assert parse_option_set(raw) == expected


@pytest.mark.parametrize(
    ("data_type", "kind"),
    [
        ("String", "text"),
        ("Number", "number"),
        ("Decimal", "number"),
        ("Date", "date"),
        ("DateTime", "datetime"),
        ("Boolean", "boolean"),
        ("Dropdown", "dropdown"),
        ("SearchableDropdown", "dropdown"),
        ("MultiSelect", "multiselect"),
        ("Multi Select Dropdown", "multiselect"),
        ("Rating", "text"),
        ("", "text"),
    ],
)
def test_data_kind_of_each_data_type(data_type, kind):
    assert data_kind(data_type) == kind


def test_parse_activity_setting_tolerates_missing_and_odd_attributes():
    meta = parse_activity_setting(
        7,
        {
            "Name": "X",
            "Fields": [
                {"SchemaName": "mx_Custom_1", "IsMandatory": "true"},
                {"DisplayName": "no schema"},
                "junk",
            ],
        },
    )
    assert meta.display_name == "X"
    assert list(meta.fields) == ["mx_Custom_1"]
    assert (meta.fields["mx_Custom_1"].data_type, meta.fields["mx_Custom_1"].mandatory) == ("String", True)


@pytest.mark.parametrize(
    "data",
    [
        [{"ActivityEvent": 201, "ActivityEventName": "Document Collected"}],
        {"List": [{"EventCode": "201", "DisplayName": "Document Collected"}]},
    ],
)
def test_parse_activity_types_reads_either_shape(data):
    assert parse_activity_types(data) == {201: "Document Collected"}


@pytest.mark.parametrize(
    "name", ["Document Collected", "document collected", "DocumentCollected", " DOCUMENT  collected "]
)
def test_find_type_ignores_case_and_spaces(name):
    assert find_type(name, {201: "Document Collected", 202: "Site Visit"}) == 201


def test_find_type_unknown_name_suggests_and_lists_types():
    with pytest.raises(
        ValueError, match=r"did you mean 'Site Visit'\?.*201 Document Collected, 202 Site Visit"
    ):
        find_type("Site Visits", {201: "Document Collected", 202: "Site Visit"})


# --- keys and region -------------------------------------------------------------------------


def test_check_keys_tells_who_and_the_api_host(sandbox):
    identity = check_keys(client_of(sandbox))
    assert identity.user == "Sandbox User <asha.rao@example.com>"
    assert identity.org == "10001"
    assert region_problem(identity, sandbox.url) is None


def test_check_keys_bad_keys_is_an_auth_error_naming_the_env_vars(sandbox):
    with pytest.raises(AuthError, match=r"refused the API keys.*Check LSQ_ACCESS_KEY and LSQ_SECRET_KEY"):
        check_keys(client_of(sandbox, secret_key="wrong"))


def test_check_keys_of_another_region_names_the_host_to_use():
    account = Account(other_region_keys={"u$eu-key": "api-us11.leadsquared.com"})
    with Sandbox(account) as sandbox, pytest.raises(AuthError) as caught:
        check_keys(client_of(sandbox, access_key="u$eu-key"))
    assert str(caught.value).endswith(
        "these keys belong to api-us11.leadsquared.com: use --host api-us11.leadsquared.com"
    )


def test_open_account_refuses_a_host_that_is_not_the_accounts():
    with (
        Sandbox(Account(api_host="https://api-in21.leadsquared.com/")) as sandbox,
        pytest.raises(ApiUnusableError) as caught,
    ):
        open_account(client_of(sandbox), MetadataSettings())
    assert "use --host api-in21.leadsquared.com" in str(caught.value)
    assert [r.path for r in sandbox.request_log] == ["/v2/Authentication.svc/UserByAccessKey.Get"]


def test_identity_of_a_sparse_answer():
    identity = Identity.of({"EmailAddress": "a@b.c"})
    assert (identity.user, identity.org, identity.api_host) == ("a@b.c", None, None)


# --- fetching and the cache ------------------------------------------------------------------


def account_of(sandbox: Sandbox, cache_dir: Path | None, **settings: object) -> AccountMetadata:
    client = client_of(sandbox)
    return AccountMetadata(client, check_keys(client), MetadataSettings(cache_dir, **settings))


def test_account_metadata_reads_the_sandbox_types(sandbox):
    account = account_of(sandbox, None)
    assert account.code_of("Site Visit") == 202
    meta = account.activity(201)
    assert meta.fields["mx_Custom_4"].options == ("Branch", "Online", "Phone", "Partner")
    assert meta.fields["mx_Custom_1"].mandatory
    assert meta.fields["mx_Custom_6"].kind == "multiselect"
    account.activity(201)
    assert metadata_calls(sandbox) == [ACTIVITY_TYPES_PATH, ACTIVITY_SETTING_PATH]  # once per run


def test_account_metadata_calls_take_a_slot_of_the_rate_limiter(sandbox):
    class Counting(RateLimiter):
        taken = 0

        def acquire(self) -> None:
            Counting.taken += 1
            super().acquire()

    client = client_of(sandbox)
    account = open_account(client, MetadataSettings(), limiter=Counting(RateLimit(50, 1)))
    account.activity(account.code_of(201))
    assert Counting.taken == 3  # who am I, activity types, activity setting


def test_cache_second_run_makes_no_metadata_call(sandbox, tmp_path):
    first = account_of(sandbox, tmp_path)
    first.activity(first.code_of(201))
    sandbox.reset()
    again = account_of(sandbox, tmp_path)
    assert again.activity(201).fields["mx_Custom_2"].data_type == "Number"
    assert again.activity_types()[202] == "Site Visit"
    assert metadata_calls(sandbox) == []


def test_cache_refresh_and_expiry_fetch_again(sandbox, tmp_path):
    account_of(sandbox, tmp_path).activity(201)
    sandbox.reset()
    account_of(sandbox, tmp_path, refresh=True).activity(201)
    assert metadata_calls(sandbox) == [ACTIVITY_SETTING_PATH]
    sandbox.reset()
    client = client_of(sandbox)
    later = AccountMetadata(
        client, check_keys(client), MetadataSettings(tmp_path, ttl_hours=1), clock=lambda: time.time() + 3601
    )
    later.activity(201)
    assert metadata_calls(sandbox) == [ACTIVITY_SETTING_PATH]


def test_cache_is_keyed_by_host_and_account_and_never_holds_keys(sandbox, tmp_path):
    account = account_of(sandbox, tmp_path)
    account.activity(201)
    (path,) = tmp_path.iterdir()
    assert path == cache_path(tmp_path, sandbox.url, "10001")
    assert path.name == f"127.0.0.1_{sandbox.url.rsplit(':', 1)[1]}-org10001.json"
    text = path.read_text()
    assert sandbox.access_key not in text
    assert sandbox.secret_key not in text
    assert "Document Collected" in text


def test_cache_damaged_file_is_ignored_and_rewritten(sandbox, tmp_path):
    account_of(sandbox, tmp_path).activity(201)
    (path,) = tmp_path.iterdir()
    path.write_text("{not json")
    sandbox.reset()
    account_of(sandbox, tmp_path).activity(201)
    assert metadata_calls(sandbox) == [ACTIVITY_SETTING_PATH]
    assert json.loads(path.read_text())["version"] == 1


def test_cache_unwritable_folder_only_warns(sandbox, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    account_of(sandbox, blocker / "cache").activity(201)
    assert "cannot keep the account's metadata" in caplog.text


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LSQ_IMPORT_CACHE_DIR": "/x/c", "XDG_CACHE_HOME": "/y", "HOME": "/h"}, "/x/c"),
        ({"XDG_CACHE_HOME": "/y", "HOME": "/h"}, "/y/lsq-import"),
        ({"HOME": "/h"}, "/h/.cache/lsq-import"),
    ],
)
def test_default_cache_dir(environ, expected):
    assert default_cache_dir(environ) == Path(expected)


# --- the mapping against the account ---------------------------------------------------------


def test_check_mapping_unknown_schema_name_lists_the_valid_ones():
    with pytest.raises(MappingError) as caught:
        check_mapping(
            mapping_of({"mx_Custom_1": {"column": "PAN"}, "mx_Custom_9": {"column": "X"}}), [DOCS], "m.yaml"
        )
    message = str(caught.value)
    assert message.startswith(
        "m.yaml: 'fields.mx_Custom_9': Document Collected (201) has no field mx_Custom_9"
    )
    assert "mx_Custom_1 (PAN Number), mx_Custom_2 (Amount), mx_Custom_3 (Due Date)" in message


def test_check_mapping_unmapped_mandatory_field_is_an_error():
    with pytest.raises(
        MappingError, match=r"'fields': Document Collected \(201\) requires mx_Custom_1 \(PAN Number\)"
    ):
        check_mapping(mapping_of({"mx_Custom_2": {"column": "Amount", "type": "number"}}), [DOCS], "m.yaml")


@pytest.mark.parametrize(
    ("field", "warned"),
    [
        ({"column": "Amount", "type": "date"}, True),
        ({"column": "Amount", "type": "text"}, True),  # declared, and not what the field is
        ({"column": "Amount"}, False),  # text by default: checked as a number without a warning
        ({"column": "Amount", "type": "number"}, False),
    ],
)
def test_check_mapping_declared_type_contradicting_the_data_type_warns(field, warned):
    warnings = check_mapping(
        mapping_of({"mx_Custom_1": {"column": "PAN"}, "mx_Custom_2": field}), [DOCS], "m.yaml"
    )
    assert bool(warnings) is warned
    if warned:
        assert "mx_Custom_2 (Amount) is a Number field of Document Collected (201)" in warnings[0]


def test_check_mapping_text_on_dropdowns_is_no_contradiction():
    fields = {
        "mx_Custom_1": {"column": "PAN"},
        "mx_Custom_4": {"column": "C", "type": "text"},
        "mx_Custom_6": {"column": "D"},
    }
    assert check_mapping(mapping_of(fields), [DOCS], "m.yaml") == []


# --- rows against the account ----------------------------------------------------------------

PAN = {"mx_Custom_1": {"column": "PAN"}}


def test_rows_numbers_dates_and_booleans_are_checked_by_data_type():
    result = checked(
        {
            "PAN": ["P1", "P2", "P3", "P4"],
            "Amount": ["1,234.50", "12abc", "7", "8"],
            "Due": ["2024-03-05", "2024-03-05", "05/03/2024", "2024-03-06 10:00:00"],
            "Ok": ["yes", "no", "1", "maybe"],
        },
        {
            **PAN,
            "mx_Custom_2": {"column": "Amount"},
            "mx_Custom_3": {"column": "Due"},
            "mx_Custom_7": {"column": "Ok"},
        },
    )
    assert field_values(result) == [
        {
            "mx_Custom_1": "P1",
            "mx_Custom_2": "1234.5",
            "mx_Custom_3": "2024-03-05 00:00:00",
            "mx_Custom_7": "true",
        }
    ]
    errors = [(e.source_row, e.stage, e.column, e.message) for e in result.errors]
    assert errors == [
        (3, Stage.VALIDATION, "Amount", "not a number: '12abc' (it is a Number field in LeadSquared)"),
        (
            4,
            Stage.VALIDATION,
            "Due",
            "not a date in the form YYYY-MM-DD (or YYYY-MM-DD HH:mm:ss): '05/03/2024' (it is a Date field "
            'in LeadSquared; in the mapping, give the column type: date and its format, like format: "DD/MM/YYYY")',
        ),
        (
            5,
            Stage.VALIDATION,
            "Ok",
            "not a yes/no value: 'maybe' (use true/false, yes/no, 1/0) "
            "(it is a Boolean field in LeadSquared)",
        ),
    ]


def test_rows_declared_type_contradicting_the_field_fail_each_row():
    result = checked(
        {"PAN": ["P1"], "When": ["2024-03-05"]}, {**PAN, "mx_Custom_2": {"column": "When", "type": "date"}}
    )
    assert result.rows == []
    assert "not a number: '2024-03-05 00:00:00'" in result.errors[0].message


def test_rows_datetime_field_values_become_utc_wire_times():
    result = checked(
        {"PAN": ["P1"], "At": ["2024-03-05T14:15:00+05:30"]}, {**PAN, "mx_Custom_8": {"column": "At"}}
    )
    assert field_values(result)[0]["mx_Custom_8"] == "2024-03-05 08:45:00"


def test_rows_dropdown_matches_case_insensitively_and_sends_the_exact_spelling():
    result = checked(
        {"PAN": ["P1", "P2", "P3"], "Channel": ["branch", " ONLINE ", "Walk-in"]},
        {**PAN, "mx_Custom_4": {"column": "Channel"}},
    )
    assert [values["mx_Custom_4"] for values in field_values(result)] == ["Branch", "Online"]
    (error,) = result.errors
    assert (error.source_row, error.column) == (4, "Channel")
    assert error.message == "'Walk-in' is not one of its options: Branch, Online, Phone"


def test_rows_dropdowns_are_not_checked_when_skip_dropdown_validation_is_set():
    result = checked(
        {"PAN": ["P1"], "Channel": ["Walk-in"], "Docs": ["Voter ID"]},
        {**PAN, "mx_Custom_4": {"column": "Channel"}, "mx_Custom_6": {"column": "Docs"}},
        skip_dropdown_validation=True,
    )
    assert result.errors == []
    assert field_values(result) == [
        {"mx_Custom_1": "P1", "mx_Custom_4": "Walk-in", "mx_Custom_6": "Voter ID"}
    ]


def test_rows_multi_select_values_are_split_and_checked_one_by_one():
    result = checked(
        {"PAN": ["P1", "P2", "P3"], "Docs": ["pan card; AADHAAR", "PAN Card;Voter ID;Passport", " ; "]},
        {**PAN, "mx_Custom_6": {"column": "Docs"}},
    )
    assert field_values(result) == [{"mx_Custom_1": "P1", "mx_Custom_6": "PAN Card;Aadhaar"}]
    messages = [e.message for e in result.errors]
    assert messages[0] == (
        "'Voter ID', 'Passport' are not among its options "
        "(separate several with ';'): PAN Card, Aadhaar, Bank Statement"
    )
    assert messages[1].startswith("';' is not among its options")  # cells are trimmed first


def test_rows_mandatory_field_left_empty_is_a_row_error():
    result = checked({"PAN": ["P1", ""]}, PAN)
    (error,) = result.errors
    assert (error.source_row, error.column) == (3, "PAN")
    assert error.message == "is empty, but it is mandatory for Document Collected (201)"


def test_rows_invalid_constant_is_a_mapping_error():
    with pytest.raises(
        MappingError, match=r"'fields.mx_Custom_4.value': 'Walk-in' is not one of its options"
    ):
        checked({"PAN": ["P1"]}, {**PAN, "mx_Custom_4": {"value": "Walk-in"}})


def test_rows_keep_earlier_validation_errors_in_row_order():
    result = checked(
        {"PAN": ["P1", "P2"], "Amount": ["x", "1"], "Channel": ["Branch", "Walk-in"]},
        {**PAN, "mx_Custom_2": {"column": "Amount", "type": "number"}, "mx_Custom_4": {"column": "Channel"}},
    )
    assert [(e.source_row, e.column) for e in result.errors] == [(2, "Amount"), (3, "Channel")]


def test_rows_with_an_event_column_of_unknown_codes_fail():
    mapping = Mapping.model_validate(
        {
            "activity_event": {"column": "Event"},
            "opportunity_id": {"column": "Opp"},
            "owner_email": {"column": "Owner"},
            "fields": PAN,
        }
    )
    sheet = make_sheet(
        ["Opp", "Owner", "Event", "PAN"], [[OPP, OWNER, "201", "P1"], [OPP, OWNER, "999", "P2"]]
    )
    result = check_rows(
        validate_sheet(sheet, mapping),
        mapping,
        {201: DOCS},
        "m.yaml",
        known_types={201: "Document Collected"},
    )
    assert len(result.rows) == 1
    (error,) = result.errors
    assert (error.source_row, error.column) == (3, "Event")
    assert (
        error.message
        == "activity event 999 is not an activity type of this account; its types: 201 Document Collected"
    )


def test_rows_of_a_named_event_get_the_resolved_code():
    mapping = Mapping.model_validate(
        {
            "activity_event": {"name": "Document Collected"},
            "opportunity_id": {"column": "Opp"},
            "owner_email": {"column": "Owner"},
            "fields": PAN,
        }
    )
    validated = validate_sheet(make_sheet(["Opp", "Owner", "PAN"], [[OPP, OWNER, "P1"]]), mapping)
    assert validated.rows[0].body["ActivityEvent"] == UNRESOLVED_EVENT  # offline: not known yet
    result = check_rows(validated, mapping, {201: DOCS}, "m.yaml", event_code=201)
    assert result.rows[0].body["ActivityEvent"] == 201
