"""End-to-end: `check`, the run's pre-flight, `validate --online` and `init-mapping` against the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from importer.endpoints import ACTIVITY_SETTING_PATH, ACTIVITY_TYPES_PATH
from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS, Account, Sandbox
from tests.conftest import FAST_LIMIT, REPO, run_cli
from tests.helpers import error_rows, write_csv

OPP = DEFAULT_OPPORTUNITIES
OWNER = DEFAULT_USERS[0]
WHO_AM_I = "/v2/Authentication.svc/UserByAccessKey.Get"
HEADERS = ["Opportunity ID", "Owner Email", "PAN", "Amount", "Due", "Channel", "Documents"]
MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: "Opportunity ID"}
owner_email: {column: "Owner Email"}
fields:
  mx_Custom_1: {column: PAN, required: true}
  mx_Custom_2: {column: Amount}
  mx_Custom_3: {column: Due}
  mx_Custom_4: {column: Channel}
  mx_Custom_6: {column: Documents}
"""


def good(opp: str = OPP[0], **cells: str) -> dict[str, str]:
    row = {
        "Opportunity ID": opp,
        "Owner Email": OWNER,
        "PAN": "ABCDE1234F",
        "Amount": "2500",
        "Due": "2024-03-31",
        "Channel": "Branch",
        "Documents": "PAN Card",
    }
    row.update(cells)
    return row


def write_mapping(tmp_path: Path, text: str = MAPPING) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run(input_path: Path, mapping: Path, env: dict[str, str], *extra: str | Path, command: str = "run"):
    summary = input_path.with_suffix(".summary.json")
    result = run_cli(
        command,
        input_path,
        "--mapping",
        mapping,
        "--rate-limit",
        FAST_LIMIT,
        "--summary-json",
        summary,
        *(["--no-progress"] if command == "run" else []),
        *extra,
        env=env,
    )
    result.summary = json.loads(summary.read_text()) if summary.exists() else None
    return result


def paths(sandbox: Sandbox) -> list[str]:
    return [record.path for record in sandbox.request_log]


def metadata_calls(sandbox: Sandbox) -> list[str]:
    return [path for path in paths(sandbox) if path in {ACTIVITY_TYPES_PATH, ACTIVITY_SETTING_PATH}]


# --- check -----------------------------------------------------------------------------------


def test_check_prints_whose_keys_and_the_api_host(sandbox, env):
    result = run_cli("check", env=env)
    assert result.code == 0, result.output
    host = sandbox.url.removeprefix("http://")
    assert result.out.splitlines() == [
        "Keys of Sandbox User <asha.rao@example.com>, org 10001",
        f"Account API host: {host}",
        f"OK: {sandbox.url} accepts these keys",
    ]
    assert paths(sandbox) == [WHO_AM_I]


def test_check_bad_keys_exit_3_with_a_clear_message(sandbox, env):
    result = run_cli("check", env={**env, "LSQ_SECRET_KEY": "wrong"})
    assert result.code == 3, result.output
    assert "refused the API keys" in result.err
    assert "Check LSQ_ACCESS_KEY and LSQ_SECRET_KEY" in result.err
    assert "Traceback" not in result.err


def test_check_keys_of_another_region_get_the_host_to_use(env):
    account = Account(other_region_keys={env["LSQ_ACCESS_KEY"]: "api-us11.leadsquared.com"})
    with Sandbox(account) as sandbox:
        result = run_cli("check", env={**env, "LSQ_HOST": sandbox.url})
    assert result.code == 3, result.output
    assert result.err.strip().endswith(
        "these keys belong to api-us11.leadsquared.com: use --host api-us11.leadsquared.com"
    )


def test_check_account_on_another_api_host_gets_the_host_to_use(env):
    with Sandbox(Account(api_host="api-in21.leadsquared.com")) as sandbox:
        result = run_cli("check", env={**env, "LSQ_HOST": sandbox.url})
    assert result.code == 3, result.output
    assert "Account API host: api-in21.leadsquared.com" in result.out
    assert "use --host api-in21.leadsquared.com" in result.err


def test_check_without_keys_is_a_usage_error(env):
    result = run_cli("check", env={"LSQ_HOST": env["LSQ_HOST"]})
    assert result.code == 2, result.output
    assert "LSQ_ACCESS_KEY and LSQ_SECRET_KEY not set" in result.err


# --- the run's pre-flight --------------------------------------------------------------------


@pytest.mark.parametrize(
    "account",
    [
        Account(other_region_keys={"u$sandbox-access-key": "api-us11.leadsquared.com"}),
        Account(api_host="api-us11.leadsquared.com"),
    ],
)
def test_run_wrong_region_exits_3_after_one_call_and_sends_nothing(tmp_path, env, account):
    with Sandbox(account, rate_limit=(50, 1.0)) as sandbox:
        result = run(
            write_csv(tmp_path / "t.csv", [good()]), write_mapping(tmp_path), {**env, "LSQ_HOST": sandbox.url}
        )
        assert paths(sandbox) == [WHO_AM_I]
    assert result.code == 3, result.output
    assert "use --host api-us11.leadsquared.com" in result.err


def test_run_bad_keys_exit_3_before_anything_is_sent(tmp_path, sandbox, env):
    result = run(
        write_csv(tmp_path / "t.csv", [good()]), write_mapping(tmp_path), {**env, "LSQ_SECRET_KEY": "wrong"}
    )
    assert result.code == 3, result.output
    assert "refused the API keys" in result.err
    assert paths(sandbox) == [WHO_AM_I]
    assert sandbox.stats.bulk_calls == 0


@pytest.mark.parametrize(
    ("mapping_text", "message"),
    [
        (
            MAPPING + "  mx_Custom_9: {column: PAN}\n",
            "'fields.mx_Custom_9': Document Collected (201) has no field mx_Custom_9; its fields are mx_Custom_1 (PAN Number), "
            "mx_Custom_2 (Amount), mx_Custom_3 (Due Date), mx_Custom_4 (Channel), mx_Custom_5 (Reference), "
            "mx_Custom_6 (Documents), mx_Custom_7 (Verified)",
        ),
        (
            MAPPING.replace("  mx_Custom_1: {column: PAN, required: true}\n", ""),
            "'fields': Document Collected (201) requires mx_Custom_1 (PAN Number), which the mapping leaves out",
        ),
        (
            MAPPING.replace("value: 201", "value: 299"),
            "'activity_event.value': 299 is not an activity type of this account; its types: 201 Document Collected, "
            "202 Site Visit, 203 Payment Received",
        ),
        (
            MAPPING.replace("value: 201", 'name: "Documents Collected"'),
            "no activity type of this account is named 'Documents Collected' (did you mean 'Document Collected'?)",
        ),
        (
            MAPPING.replace("column: Channel", "value: Walk-in"),
            "'fields.mx_Custom_4.value': 'Walk-in' is not one of its options",
        ),
    ],
)
def test_run_mapping_wrong_for_the_account_exits_2_and_sends_nothing(
    tmp_path, sandbox, env, mapping_text, message
):
    mapping = write_mapping(tmp_path, mapping_text)
    result = run(write_csv(tmp_path / "t.csv", [good()]), mapping, env)
    assert result.code == 2, result.output
    assert message in result.err
    assert str(mapping) in result.err
    assert sandbox.stats.bulk_calls == 0


def test_run_declared_type_contradicting_the_account_warns_and_still_runs(tmp_path, sandbox, env):
    mapping = write_mapping(tmp_path, MAPPING.replace("column: Channel}", "column: Channel, type: number}"))
    result = run(write_csv(tmp_path / "t.csv", [good(Channel="7")]), mapping, env, "--metadata-ttl", "0")
    assert (
        "'fields.mx_Custom_4' is declared type number, but mx_Custom_4 (Channel) is a Dropdown field"
        in result.err
    )
    assert result.code == 1, result.output
    (row,) = error_rows(tmp_path / "t.errors.xlsx")
    assert (
        "Channel (mx_Custom_4): '7' is not one of its options: Branch, Online, Phone, Partner" in row["Error"]
    )


def test_run_rows_checked_against_the_account_before_sending(tmp_path, sandbox, env):
    rows = [
        good(PAN="P0", Channel="branch", Documents="pan card;aadhaar", Amount="1,250.50"),
        good(PAN="P1", Channel="Walk-in"),
        good(PAN="P2", Documents="PAN Card;Voter ID"),
        good(PAN="P3", Amount="12 lakh"),
        good(PAN="P4", Due="31/03/2024"),
        good(OPP[1], PAN="P5", **{"Owner Email": "former.employee@example.com"}),
    ]
    result = run(write_csv(tmp_path / "t.csv", rows), write_mapping(tmp_path), env)
    assert result.code == 1, result.output
    (stored,) = [a for a in sandbox.activities() if a.fields["mx_Custom_1"] == "P0"]
    assert stored.fields["mx_Custom_4"] == "Branch"  # the option's exact spelling
    assert stored.fields["mx_Custom_6"] == "PAN Card;Aadhaar"
    assert stored.fields["mx_Custom_2"] == "1250.5"
    assert len(sandbox.activities()) == 1
    errors = {row["Source Row"]: row for row in error_rows(tmp_path / "t.errors.xlsx")}
    assert {row: errors[row]["Error Stage"] for row in errors} == {
        3: "validation",
        4: "validation",
        5: "validation",
        6: "validation",
        7: "api",
    }
    assert (
        "Channel (mx_Custom_4): 'Walk-in' is not one of its options: Branch, Online, Phone, Partner"
        in errors[3]["Error"]
    )
    assert "Documents (mx_Custom_6): 'Voter ID' is not among its options" in errors[4]["Error"]
    assert "PAN Card, Aadhaar, Passport, Bank Statement" in errors[4]["Error"]
    assert "not a number: '12 lakh'" in errors[5]["Error"]
    assert "'31/03/2024'" in errors[6]["Error"]
    assert sandbox.stats.bulk_calls == 2  # one per opportunity; the invalid rows never left
    assert result.summary["rows_failed"] == 5


def test_run_skip_dropdown_validation_sends_values_as_they_are(tmp_path, sandbox, env):
    mapping = write_mapping(tmp_path, MAPPING + "skip_dropdown_validation: true\n")
    result = run(write_csv(tmp_path / "t.csv", [good(Channel="Walk-in", Documents="Voter ID")]), mapping, env)
    assert result.code == 0, result.output
    (stored,) = sandbox.activities()
    assert (stored.fields["mx_Custom_4"], stored.fields["mx_Custom_6"]) == ("Walk-in", "Voter ID")


def test_run_metadata_is_cached_so_a_second_run_makes_no_metadata_call(tmp_path, sandbox, env):
    path, mapping = write_csv(tmp_path / "t.csv", [good()]), write_mapping(tmp_path)
    assert run(path, mapping, env).code == 0
    assert metadata_calls(sandbox) == [ACTIVITY_TYPES_PATH, ACTIVITY_SETTING_PATH]
    sandbox.reset()
    second = run(path, mapping, env)
    assert second.code == 0, second.output
    assert paths(sandbox)[0] == WHO_AM_I
    assert metadata_calls(sandbox) == []
    sandbox.reset()
    assert run(path, mapping, env, "--refresh-metadata").code == 0
    assert metadata_calls(sandbox) == [ACTIVITY_TYPES_PATH, ACTIVITY_SETTING_PATH]
    (cache,) = Path(env["LSQ_IMPORT_CACHE_DIR"]).iterdir()
    assert env["LSQ_SECRET_KEY"] not in cache.read_text()
    assert env["LSQ_ACCESS_KEY"] not in cache.read_text()


def test_run_cache_dir_option_and_ttl_zero(tmp_path, sandbox, env):
    path, mapping = write_csv(tmp_path / "t.csv", [good()]), write_mapping(tmp_path)
    for _ in range(2):
        assert run(path, mapping, env, "--cache-dir", tmp_path / "mine", "--metadata-ttl", "0").code == 0
    assert len(metadata_calls(sandbox)) == 4
    assert [p.name.endswith("-org10001.json") for p in (tmp_path / "mine").iterdir()] == [True]


def test_run_named_event_is_resolved_through_activity_types(tmp_path, sandbox, env):
    mapping = write_mapping(tmp_path, MAPPING.replace("value: 201", 'name: "document  COLLECTED"'))
    result = run(write_csv(tmp_path / "t.csv", [good(), good(OPP[1])]), mapping, env)
    assert result.code == 0, result.output
    assert [a.event for a in sandbox.activities()] == [201, 201]


def test_run_event_column_with_a_code_the_account_lacks(tmp_path, sandbox, env):
    mapping = write_mapping(tmp_path, MAPPING.replace("value: 201", "column: Amount"))
    rows = [good(Amount="201"), good(Amount="404")]
    result = run(write_csv(tmp_path / "t.csv", rows), mapping, env)
    assert result.code == 1, result.output
    (row,) = error_rows(tmp_path / "t.errors.xlsx")
    assert (row["Source Row"], row["Error Stage"]) == (3, "validation")
    assert "activity event 404 is not an activity type of this account" in row["Error"]


# --- validate --------------------------------------------------------------------------------


def test_validate_online_checks_everything_and_sends_no_activity(tmp_path, sandbox, env):
    rows = [good(), good(Channel="Walk-in"), good(PAN="")]
    result = run(
        write_csv(tmp_path / "v.csv", rows), write_mapping(tmp_path), env, "--online", command="validate"
    )
    assert result.code == 1, result.output
    assert "3 rows, 1 valid, 2 invalid" in result.out
    assert sandbox.stats.bulk_calls == 0
    assert paths(sandbox) == [WHO_AM_I, ACTIVITY_TYPES_PATH, ACTIVITY_SETTING_PATH]
    errors = error_rows(tmp_path / "v.errors.xlsx")
    assert [(r["Source Row"], r["Error Stage"]) for r in errors] == [(3, "validation"), (4, "validation")]


def test_validate_online_mapping_error_exits_2(tmp_path, sandbox, env):
    mapping = write_mapping(tmp_path, MAPPING + "  mx_Custom_9: {column: PAN}\n")
    result = run(write_csv(tmp_path / "v.csv", [good()]), mapping, env, "--online", command="validate")
    assert result.code == 2, result.output
    assert "has no field mx_Custom_9" in result.err


def test_validate_offline_stays_offline_even_with_a_named_event(tmp_path, sandbox, env):
    mapping = write_mapping(tmp_path, MAPPING.replace("value: 201", "name: Document Collected"))
    result = run(write_csv(tmp_path / "v.csv", [good(), good(PAN="")]), mapping, env, command="validate")
    assert result.code == 1, result.output
    assert "2 rows, 1 valid, 1 invalid" in result.out
    assert (
        "activity_event.name 'Document Collected' is looked up in the account only with --online"
        in result.err
    )
    assert sandbox.stats.requests == 0


# --- init-mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["activities.csv", "activities.xlsx"])
def test_init_mapping_online_on_the_sample_imports_it_with_no_mapping_error(tmp_path, sandbox, env, name):
    sample = REPO / "importer" / "sample_data" / name
    result = run_cli("init-mapping", sample, "--activity-event", "201", "--online", env=env)
    assert result.code == 0, result.output
    mapping = tmp_path / "visits.yaml"
    mapping.write_text(result.out, encoding="utf-8")
    assert 'mx_Custom_1: {column: "PAN", required: true}' in result.out
    assert "# Mandatory fields still missing" not in result.out

    checked = run_cli(
        "validate", sample, "--mapping", mapping, "--online", "--errors", tmp_path / "v.xlsx", env=env
    )
    assert checked.code == 1, checked.output  # the sample's deliberate bad rows, and nothing else
    assert "193 valid, 7 invalid" in checked.out
    assert "error" not in checked.err

    errors = tmp_path / "run.errors.xlsx"
    imported = run_cli(
        "run",
        sample,
        "--mapping",
        mapping,
        "--rate-limit",
        FAST_LIMIT,
        "--errors",
        errors,
        "--no-progress",
        env=env,
    )
    assert imported.code == 1, imported.output
    assert len(sandbox.activities()) == 190
    failed = sorted((r["Source Row"], r["Error Stage"]) for r in error_rows(errors))
    assert failed == sorted(
        [
            (8, "validation"),
            (27, "validation"),
            (46, "validation"),
            (68, "validation"),
            (89, "validation"),
            (128, "validation"),
            (149, "validation"),
            (110, "api"),
            (167, "api"),
            (188, "api"),
        ]
    )


def test_init_mapping_offline_loads_and_validates_as_it_is(tmp_path, sandbox, env):
    sample = REPO / "importer" / "sample_data" / "activities.csv"
    result = run_cli("init-mapping", sample, "--activity-event", "Document Collected", env={})
    assert result.code == 0, result.output
    assert 'activity_event: {name: "Document Collected"}' in result.out
    assert "no custom field mapped" in result.err
    mapping = tmp_path / "m.yaml"
    mapping.write_text(result.out, encoding="utf-8")
    checked = run_cli("validate", sample, "--mapping", mapping, "--errors", tmp_path / "v.xlsx", env={})
    assert checked.code == 1, checked.output
    assert "198 valid, 2 invalid" in checked.out  # rows 8 and 27: no opportunity, a broken email
    assert sandbox.stats.requests == 0


def test_init_mapping_unknown_event_name_online_is_a_usage_error(sandbox, env):
    sample = REPO / "importer" / "sample_data" / "activities.csv"
    result = run_cli("init-mapping", sample, "--activity-event", "Site Visits", "--online", env=env)
    assert result.code == 2, result.output
    assert "did you mean 'Site Visit'?" in result.err
    assert result.out == ""
