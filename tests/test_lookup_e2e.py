"""End-to-end over loopback: sheets keyed by the lead's email or mobile, through the real CLI, against the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest

from importer.client import OPPORTUNITIES_BY_ID_PATH, OPPORTUNITIES_BY_LEAD_FIELD_PATH
from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS, Account, Sandbox
from importer.sandbox._account import DEFAULT_LEADS, DEFAULT_OPPORTUNITY_RECORDS, Lead, Opportunity
from tests.conftest import FAST_LIMIT, run_cli
from tests.helpers import error_rows, write_csv

OPP = DEFAULT_OPPORTUNITIES
OWNER = DEFAULT_USERS[0]
FIELDS = """
owner_email: {column: "Owner Email"}
fields:
  mx_Custom_1: {column: PAN, required: true}
"""
# lead 56 has only an opportunity of another type (12001); the defaults have no such lead
ONLY_OTHER = Lead("lead-only-other", "other.type@example.com", "+91-9000000056", "Other")
ONLY_OTHER_OPP = "b1f1b1f1-0000-4000-8000-000000000056"


def lookup_mapping(tmp_path: Path, lead_field: str, column: str, extra: str = "") -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "activity_event: {value: 201}\n"
        f'opportunity_id:\n  lookup: {{lead_field: {lead_field}, column: "{column}", opportunity_type: 12000{extra}}}\n'
        + FIELDS,
        encoding="utf-8",
    )
    return path


def row(column: str, value: str, pan: str = "ABCDE1234F") -> dict[str, str]:
    return {column: value, "Owner Email": OWNER, "PAN": pan}


def run(input_path: Path, mapping: Path, env: dict[str, str], command: str = "run") -> tuple[int, dict, str]:
    summary = input_path.with_suffix(".summary.json")
    extra = ["--no-progress"] if command == "run" else []
    result = run_cli(
        command, input_path, "--mapping", mapping, "--rate-limit", FAST_LIMIT, "--summary-json", summary, *extra,
        env=env,
    )  # fmt: skip
    return result.code, json.loads(summary.read_text()) if summary.exists() else {}, result.output


def lookups(sandbox: Sandbox, path: str = OPPORTUNITIES_BY_LEAD_FIELD_PATH) -> list[dict]:
    return [json.loads(r.body_bytes) for r in sandbox.request_log if r.path == path]


def posted(sandbox: Sandbox) -> list[tuple[str, str]]:
    return sorted((a.opportunity_id, a.fields.get("mx_Custom_1", "")) for a in sandbox.activities())


def flagged(workbook: Path) -> set[tuple[int, str, str]]:
    """(source row, stage, header) of each highlighted cell of the Errors sheet."""
    sheet = openpyxl.load_workbook(workbook)["Errors"]
    header = [cell.value for cell in sheet[1]]
    return {
        (line[0].value, line[1].value, header[cell.column - 1])
        for line in sheet.iter_rows(min_row=2)
        for cell in line
        if cell.comment is not None
    }


def test_a_sheet_keyed_by_email_posts_to_each_leads_opportunity_with_one_lookup_per_value(
    tmp_path, sandbox, env
):
    rows = [
        row("Customer Email", "customer1@example.com", "AAAAA0001A"),
        row("Customer Email", " Customer1@Example.com", "AAAAA0002A"),  # the same lead, written otherwise
        row("Customer Email", "customer2@example.com", "AAAAA0003A"),
    ]
    sheet = write_csv(tmp_path / "by-email.csv", rows)
    code, summary, output = run(sheet, lookup_mapping(tmp_path, "EmailAddress", "Customer Email"), env)
    assert code == 0, output
    assert summary["rows_posted"] == 3
    assert posted(sandbox) == [(OPP[0], "AAAAA0001A"), (OPP[0], "AAAAA0002A"), (OPP[1], "AAAAA0003A")]
    asked = lookups(sandbox)
    assert [body["Parameter"]["LookupValue"] for body in asked] == [
        "customer1@example.com",
        "customer2@example.com",
    ]
    assert all(body["Sorting"] == {"ColumnName": "CreatedOn", "Direction": "1"} for body in asked)
    assert summary["calls"] == 2 + 2  # two look-ups, two opportunities to post to


def test_a_sheet_keyed_by_mobile_in_several_written_forms_posts_to_the_right_opportunities(
    tmp_path, sandbox, env
):
    forms = [
        "9000000003",
        "90000 00003",
        "090000-00003",
        "+91 90000 00003",
        "0091-9000000003",
        "919000000003",
    ]
    rows = [row("Mobile No", form, f"AAAAA{n:04d}A") for n, form in enumerate(forms)]
    rows.append(row("Mobile No", "(900) 000-0004", "BBBBB0001B"))
    sheet = write_csv(tmp_path / "by-mobile.csv", rows)
    code, summary, output = run(sheet, lookup_mapping(tmp_path, "Mobile", "Mobile No"), env)
    assert code == 0, output
    assert summary["rows_posted"] == 7
    by_opportunity = {opp for opp, _pan in posted(sandbox)}
    assert by_opportunity == {OPP[2], OPP[3]}
    assert len([a for a in sandbox.activities() if a.opportunity_id == OPP[2]]) == 6
    assert [b["Parameter"]["LookupValue"] for b in lookups(sandbox)] == ["+91-9000000003", "+91-9000000004"]


@pytest.fixture
def account_sandbox():
    account = Account(
        leads=[*DEFAULT_LEADS, ONLY_OTHER],
        opportunity_records=[
            *DEFAULT_OPPORTUNITY_RECORDS,
            Opportunity(ONLY_OTHER_OPP, ONLY_OTHER.id, 12001, "Other type", "2024-01-01 00:00:00"),
        ],
        opportunities={*DEFAULT_OPPORTUNITIES, ONLY_OTHER_OPP},
    )
    with Sandbox(account, rate_limit=(50, 1.0)) as server:
        yield server


def failing_sheet(tmp_path: Path) -> Path:
    rows = [
        row("Customer Email", "customer5@example.com"),  # row 2: found
        row("Customer Email", "nobody@example.com"),  # row 3: no lead
        row("Customer Email", "customer55@example.com"),  # row 4: a lead without any opportunity
        row("Customer Email", "other.type@example.com"),  # row 5: a lead without one of type 12000
        row("Customer Email", "customer46@example.com"),  # row 6: a lead with two of type 12000
        row("Customer Email", "not-an-email"),  # row 7: never looked up
        row("Customer Email", "nobody@example.com"),  # row 8: the same value, no second call
    ]
    return write_csv(tmp_path / "outcomes.csv", rows)


def test_each_failing_outcome_lands_in_the_workbook_at_stage_lookup_with_its_cell(
    tmp_path, account_sandbox, env
):
    env = {**env, "LSQ_HOST": account_sandbox.url}
    sheet = failing_sheet(tmp_path)
    code, summary, output = run(sheet, lookup_mapping(tmp_path, "EmailAddress", "Customer Email"), env)
    assert code == 1, output
    assert summary["rows_posted"] == 1
    assert summary["rows_failed"] == 6
    assert posted(account_sandbox) == [(OPP[4], "ABCDE1234F")]
    assert len(lookups(account_sandbox)) == 5  # the distinct valid values
    workbook = tmp_path / "outcomes.errors.xlsx"
    errors = {r["Source Row"]: (r["Error Stage"], r["Error"]) for r in error_rows(workbook)}
    assert errors[3][0] == "lookup"
    assert "no lead with EmailAddress 'nobody@example.com'" in errors[3][1]
    assert "no lead with EmailAddress 'customer55@example.com'" in errors[4][1]
    assert errors[5] == (
        "lookup",
        "Customer Email: the lead with EmailAddress 'other.type@example.com' has no opportunity of type 12000",
    )
    assert errors[6][0] == "lookup"
    assert "2 opportunities of type 12000" in errors[6][1]
    assert OPP[90] in errors[6][1]
    assert OPP[91] in errors[6][1]
    assert errors[7][0] == "validation"
    assert errors[8] == errors[3]
    assert flagged(workbook) == {
        *((n, "lookup", "Customer Email") for n in (3, 4, 5, 6, 8)),
        (7, "validation", "Customer Email"),
    }


def test_a_rerun_makes_no_lookup_and_pick_newest_takes_the_newest(tmp_path, account_sandbox, env):
    env = {**env, "LSQ_HOST": account_sandbox.url}
    sheet = failing_sheet(tmp_path)
    mapping = lookup_mapping(tmp_path, "EmailAddress", "Customer Email")
    run(sheet, mapping, env)
    first = len(lookups(account_sandbox))
    code, summary, output = run(sheet, mapping, env)
    assert code == 1, output
    assert len(lookups(account_sandbox)) == first  # every answer came from the cache
    assert summary["rows_skipped"] == 1  # the row posted before, by the journal
    newest = lookup_mapping(tmp_path, "EmailAddress", "Customer Email", ", pick: newest")
    code, summary, output = run(sheet, newest, env)
    assert len(lookups(account_sandbox)) == first  # pick: newest decides among the kept answers
    assert summary["rows_posted"] == 1
    newest_of_two = max(DEFAULT_OPPORTUNITY_RECORDS[90:92], key=lambda o: o.created_on).id
    assert (newest_of_two, "ABCDE1234F") in posted(account_sandbox)


def test_validate_online_makes_the_lookups_and_offline_says_they_need_online(tmp_path, account_sandbox, env):
    env = {**env, "LSQ_HOST": account_sandbox.url}
    sheet = failing_sheet(tmp_path)
    mapping = lookup_mapping(tmp_path, "EmailAddress", "Customer Email")
    result = run_cli("validate", sheet, "--mapping", mapping, env=env)
    assert result.code == 1, result.output
    assert "looked up in the account only with --online" in result.err
    assert "in 10 calls" in result.out  # 5 look-ups (one per distinct value), at most 5 calls to post
    assert lookups(account_sandbox) == []
    result = run_cli("validate", sheet, "--mapping", mapping, "--online", env=env)
    assert result.code == 1, result.output
    assert "1 valid, 6 invalid" in result.out
    assert len(lookups(account_sandbox)) == 5
    assert account_sandbox.activities() == []
    stages = {r["Source Row"]: r["Error Stage"] for r in error_rows(tmp_path / "outcomes.errors.xlsx")}
    assert stages == {3: "lookup", 4: "lookup", 5: "lookup", 6: "lookup", 7: "validation", 8: "lookup"}
    code, summary, output = run(sheet, mapping, env)  # the run finds the look-ups kept by validate
    assert code == 1, output
    assert summary["rows_posted"] == 1
    assert len(lookups(account_sandbox)) == 5


def test_plain_ids_with_an_opportunity_type_are_checked_in_one_bulk_call(tmp_path, sandbox, env):
    ghost = "40ccba04-baf8-533b-a52f-61d1f7728d28"
    rows = [
        {"Opportunity ID": opp, "Owner Email": OWNER, "PAN": "ABCDE1234F"}
        for opp in [OPP[0], OPP[1], ghost, ghost]
    ]
    rows.append({"Opportunity ID": OPP[50], "Owner Email": OWNER, "PAN": "ABCDE1234F"})  # type 12001
    mapping = tmp_path / "ids.yaml"
    mapping.write_text(
        'activity_event: {value: 201}\nopportunity_id: {column: "Opportunity ID", opportunity_type: 12000}\n'
        + FIELDS,
        encoding="utf-8",
    )
    code, summary, output = run(write_csv(tmp_path / "ids.csv", rows), mapping, env)
    assert code == 1, output
    assert len(lookups(sandbox, OPPORTUNITIES_BY_ID_PATH)) == 1
    assert summary["rows_posted"] == 2
    assert summary["calls"] == 1 + 2  # one bulk check; the unknown id cost no call to post
    assert {a.opportunity_id for a in sandbox.activities()} == {OPP[0], OPP[1]}
    assert flagged(tmp_path / "ids.errors.xlsx") == {(n, "lookup", "Opportunity ID") for n in (4, 5, 6)}


def test_the_runs_progress_events_count_the_lookups(tmp_path, sandbox):
    from importer.account import MetadataSettings
    from importer.client import Credentials
    from importer.events import Phase
    from importer.runner import ImportConfig, run_import
    from importer.throttle import RateLimit

    rows = [row("Customer Email", f"customer{n}@example.com") for n in (1, 2, 2, 3)]
    events = []
    config = ImportConfig(
        write_csv(tmp_path / "p.csv", rows),
        lookup_mapping(tmp_path, "EmailAddress", "Customer Email"),
        host=sandbox.url,
        credentials=Credentials(sandbox.access_key, sandbox.secret_key),
        rate_limit=RateLimit(50, 1.0),
        metadata=MetadataSettings(tmp_path / "cache"),
        on_progress=events.append,
    )
    result = run_import(config)
    assert result.rows_posted == 4
    assert result.calls == 3 + 3  # three look-ups, three opportunities
    looked = [e for e in events if e.phase == Phase.CHECKING and (e.message or "").startswith("Looking up")]
    assert [(e.calls_done, e.calls_planned, e.message) for e in looked] == [
        (n, 3, f"Looking up opportunities: {n} of 3") for n in (1, 2, 3)
    ]


def test_on_the_sample_the_bulk_id_check_saves_the_rejected_call(tmp_path, sandbox, env):
    from importer.client import BULK_ADD_PATH
    from tests.conftest import REPO

    mapping = (REPO / "importer" / "mappings" / "example.yaml").read_text(encoding="utf-8")
    checked = mapping.replace(
        'opportunity_id: {column: "Opportunity ID"}',
        'opportunity_id: {column: "Opportunity ID", opportunity_type: [12000, 12001]}',
    )
    assert checked != mapping
    (tmp_path / "checked.yaml").write_text(checked, encoding="utf-8")
    sheet = tmp_path / "activities.csv"
    sheet.write_bytes((REPO / "importer" / "sample_data" / "activities.csv").read_bytes())
    code, summary, output = run(sheet, tmp_path / "checked.yaml", env)
    assert code == 1, output
    assert summary["rows_posted"] == 190
    assert len(lookups(sandbox, OPPORTUNITIES_BY_ID_PATH)) == 1
    assert sum(r.path == BULK_ADD_PATH for r in sandbox.request_log) == 61  # 62 without the check
    stages = {r["Source Row"]: r["Error Stage"] for r in error_rows(tmp_path / "activities.errors.xlsx")}
    assert stages[167] == stages[188] == "lookup"


def test_a_lead_field_the_account_refuses_stops_the_run_before_sending(tmp_path, sandbox, env):
    sheet = write_csv(tmp_path / "bad-field.csv", [row("Customer Email", "customer1@example.com")])
    code, summary, output = run(sheet, lookup_mapping(tmp_path, "mx_Customer_Code", "Customer Email"), env)
    assert code == 3, output
    assert "LookupName" in summary["stop_reason"]
    assert summary["rows_not_sent"] == 1
    assert sandbox.activities() == []
