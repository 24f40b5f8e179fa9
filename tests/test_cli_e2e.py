"""End-to-end: the real CLI against the sandbox over loopback HTTP, checked as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS, Faults
from tests.conftest import FAST_LIMIT, REPO, run_cli
from tests.helpers import error_rows, write_csv

OPP = DEFAULT_OPPORTUNITIES
OWNER = DEFAULT_USERS[0]
HEADERS = ["Opportunity ID", "Owner Email", "Note", "PAN", "Amount", "Channel", "Reference"]
MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: "Opportunity ID"}
owner_email: {column: "Owner Email"}
note: {column: Note}
fields:
  mx_Custom_1: {column: PAN, required: true}
  mx_Custom_2: {column: Amount, type: number}
  mx_Custom_4: {column: Channel}
  mx_Custom_5: {column: Reference}
"""


def good(opp: str = OPP[0], **cells: str) -> dict[str, str]:
    row = {
        "Opportunity ID": opp,
        "Owner Email": OWNER,
        "Note": "PAN copy received",
        "PAN": "ABCDE1234F",
        "Amount": "2500",
        "Channel": "Branch",
        "Reference": "000417",
    }
    row.update(cells)
    return row


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


def run(input_path: Path, mapping: Path, env: dict[str, str], *extra: str | Path):
    summary = input_path.with_suffix(".summary.json")
    result = run_cli(
        "run",
        input_path,
        "--mapping",
        mapping,
        "--rate-limit",
        FAST_LIMIT,
        "--summary-json",
        summary,
        "--no-progress",
        "--settle-time",
        "0",  # the sandbox's reads do not lag here: a look-up may be trusted at once
        *extra,
        env=env,
    )
    result.summary = json.loads(summary.read_text()) if summary.exists() else None
    return result


def stored_pans(sandbox, opportunity_id: str | None = None) -> list[str]:
    return [a.fields.get("mx_Custom_1") for a in sandbox.activities(opportunity_id)]


def test_run_csv_happy_path_posts_every_row_once(tmp_path, mapping, sandbox, env):
    rows = [good(OPP[i % 3], PAN=f"ABCDE{i:04d}F") for i in range(10)]
    result = run(write_csv(tmp_path / "visits.csv", rows), mapping, env)
    assert result.code == 0, result.output
    assert sorted(stored_pans(sandbox)) == sorted(r["PAN"] for r in rows)
    assert result.summary["rows_posted"] == 10
    assert result.summary["calls"] == 3
    assert result.summary["error_report"] is None
    assert not (tmp_path / "visits.errors.xlsx").exists()
    stored = sandbox.activities(OPP[0])[0]
    assert (stored.event, stored.owner_email, stored.note) == (201, OWNER, "PAN copy received")
    assert stored.fields == {
        "mx_Custom_1": "ABCDE0000F",
        "mx_Custom_2": "2500",
        "mx_Custom_4": "Branch",
        "mx_Custom_5": "000417",
    }


def test_run_30_rows_on_one_opportunity_take_two_calls(tmp_path, mapping, sandbox, env):
    rows = [good(PAN=f"ABCDE{i:04d}F") for i in range(30)]
    result = run(write_csv(tmp_path / "many.csv", rows), mapping, env)
    assert result.code == 0, result.output
    assert sandbox.stats.bulk_calls == 2
    assert stored_pans(sandbox, OPP[0]) == [r["PAN"] for r in rows]  # input order kept


def test_run_bad_rows_come_back_in_the_workbook_with_their_source_row(tmp_path, mapping, sandbox, env):
    rows = [
        good(PAN="P0"),
        good(Amount="12,5x"),
        good(PAN="P2"),
        good(**{"Owner Email": "former.employee@example.com"}),
        good(Channel="Walk-in"),
        good(PAN=""),
        good(PAN="P6"),
    ]
    result = run(write_csv(tmp_path / "mixed.csv", rows), mapping, env)
    assert result.code == 1, result.output
    assert sorted(stored_pans(sandbox)) == ["P0", "P2", "P6"]
    errors = {row["Source Row"]: row for row in error_rows(tmp_path / "mixed.errors.xlsx")}
    assert sorted(errors) == [3, 5, 6, 7]
    assert errors[3]["Error Stage"] == "validation"
    assert "not a number: '12,5x'" in errors[3]["Error"]
    assert errors[5]["Error Stage"] == "api"
    assert errors[6]["Error Stage"] == "validation"  # not an option of the dropdown: found before sending
    assert "mx_Custom_4" in errors[6]["Error"]
    assert errors[7]["Error Stage"] == "validation"
    assert errors[3]["Amount"] == "12,5x"  # the original text, ready to fix
    assert errors[6]["Reference"] == "000417"
    assert result.summary["rows_failed"] == 4
    assert result.summary["rows_posted"] == 3


def test_run_recovers_from_429(tmp_path, mapping, sandbox, env):
    sandbox.queue_faults("429", "429")
    result = run(write_csv(tmp_path / "t.csv", [good(), good(OPP[1])]), mapping, env)
    assert result.code == 0, result.output
    assert len(sandbox.activities()) == 2
    assert result.summary["throttled"] == 2
    assert result.summary["calls"] == 4


def test_run_mx_500_is_not_retried(tmp_path, mapping, sandbox, env):
    sandbox.queue_faults("500_mx")
    result = run(write_csv(tmp_path / "t.csv", [good(), good(OPP[1])]), mapping, env)
    assert result.code == 1, result.output
    assert sandbox.stats.bulk_calls == 2  # the rejected call was not sent again
    (stored,) = sandbox.activities()  # the calls run in parallel: either may have drawn the fault
    (row,) = error_rows(tmp_path / "t.errors.xlsx")
    assert row["Opportunity ID"] != stored.opportunity_id
    assert row["Error Stage"] == "api"
    assert "Exception" not in row["Error"]  # plain words; LeadSquared's own in a column of their own
    assert row["LeadSquared's message"].startswith("MX")


@pytest.mark.parametrize("fault", ["500_after", "drop_after"])
def test_run_ambiguous_failure_is_settled_in_the_same_run_and_never_resent(
    tmp_path, mapping, sandbox, env, fault
):
    sandbox.queue_faults(fault)
    result = run(write_csv(tmp_path / "t.csv", [good(PAN="P1"), good(PAN="P2")]), mapping, env)
    assert result.code == 0, result.output
    assert sandbox.stats.bulk_calls == 1  # found by the look-up, so not sent again
    assert stored_pans(sandbox) == ["P1", "P2"]  # stored once, never twice
    assert not (tmp_path / "t.errors.xlsx").exists()
    assert result.summary["rows_unknown"] == 0
    assert result.summary["rows_posted"] == 2


def test_run_count_only_dialect(tmp_path, mapping, sandbox, env):
    sandbox.faults = Faults(count_only=True)
    rows = [
        good(PAN="P1"),
        good(PAN="P2"),
        good(OPP[1], PAN="P3"),
        good(OPP[1], **{"Owner Email": "former.employee@example.com"}),
    ]
    result = run(write_csv(tmp_path / "t.csv", rows), mapping, env)
    assert result.code == 1, result.output
    assert sorted(stored_pans(sandbox)) == ["P1", "P2", "P3"]
    # the second call's count (1 of 2) is settled by a look-up: P3 found, the other sent alone and refused
    assert result.summary["rows_posted"] == 3
    assert result.summary["rows_unknown"] == 0
    failed = error_rows(tmp_path / "t.errors.xlsx")
    assert [(r["Source Row"], r["Error Stage"]) for r in failed] == [(5, "api")]


def test_run_401_stops_at_once_with_exit_3(tmp_path, mapping, sandbox, env):
    bad_env = {**env, "LSQ_SECRET_KEY": "wrong"}
    result = run(write_csv(tmp_path / "t.csv", [good(), good(OPP[1])]), mapping, bad_env)
    assert result.code == 3, result.output
    assert "refused the API keys" in result.err
    assert sandbox.activities() == []
    assert sandbox.stats.bulk_calls == 0  # the pre-flight check (UserByAccessKey.Get) stops the run first
    assert [r.path for r in sandbox.request_log] == ["/v2/Authentication.svc/UserByAccessKey.Get"]
    rows = error_rows(tmp_path / "t.errors.xlsx")  # every valid row is reported as not sent
    assert [(r["Source Row"], r["Error Stage"]) for r in rows] == [(2, "not sent"), (3, "not sent")]
    assert result.summary["rows_not_sent"] == 2
    assert result.summary["exit_code"] == 3
    assert "Traceback" not in result.err


def test_run_formula_like_and_leading_zero_values_round_trip(tmp_path, mapping, sandbox, env):
    formula = '=HYPERLINK("http://example.com","docs")'
    rows = [good(Note=formula, Reference="00123"), good(Note="+1-2", Reference="0042", Amount="x")]
    result = run(write_csv(tmp_path / "t.csv", rows), mapping, env)
    assert result.code == 1, result.output
    (stored,) = sandbox.activities()
    assert stored.note == formula
    assert stored.fields["mx_Custom_5"] == "00123"
    workbook = openpyxl.load_workbook(tmp_path / "t.errors.xlsx")
    (row,) = error_rows(tmp_path / "t.errors.xlsx")
    assert (row["Note"], row["Reference"]) == ("+1-2", "0042")
    assert all(cell.data_type != "f" for line in workbook["Errors"].iter_rows() for cell in line)


@pytest.mark.parametrize(
    ("encoding", "delimiter"),
    [("cp1252", ","), ("utf-16", "\t"), ("utf-8-sig", ";"), ("utf-8", "\t")],
)
def test_run_reads_csv_dialects(tmp_path, mapping, sandbox, env, encoding, delimiter):
    rows = [good(Note="Café, €500 reçu"), good(OPP[1], Note="naïve")]
    result = run(write_csv(tmp_path / "t.csv", rows, delimiter=delimiter, encoding=encoding), mapping, env)
    assert result.code == 0, result.output
    assert sorted(a.note for a in sandbox.activities()) == ["Café, €500 reçu", "naïve"]


def test_run_xlsx_with_real_date_cells(tmp_path, sandbox, env):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Opportunity ID", "Owner Email", "When", "PAN", "Due"])
    sheet.append([OPP[0], OWNER, datetime(2024, 3, 26, 19, 45), "ABCDE1234F", datetime(2024, 3, 31)])
    sheet["C2"].number_format = "dd/mm/yyyy hh:mm"
    sheet["E2"].number_format = "dd/mm/yyyy"
    workbook.save(tmp_path / "dates.xlsx")
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        'activity_event: {value: 201}\nopportunity_id: {column: "Opportunity ID"}\nowner_email: {column: "Owner Email"}\n'
        'activity_datetime: {column: When, format: "%d/%m/%Y %H:%M", timezone: Asia/Kolkata}\n'
        "fields:\n  mx_Custom_1: {column: PAN}\n  mx_Custom_3: {column: Due, type: date, format: '%d/%m/%Y'}\n"
    )
    result = run(tmp_path / "dates.xlsx", mapping, env)
    assert result.code == 0, result.output
    (stored,) = sandbox.activities()
    assert stored.activity_datetime == "2024-03-26 14:15:00"
    assert stored.fields["mx_Custom_3"] in {"2024-03-31", "2024-03-31 00:00:00"}


def test_run_sample_xlsx_and_csv_give_the_same_outcome(tmp_path, sandbox, env):
    mapping = REPO / "importer" / "mappings" / "example.yaml"
    outcomes = []
    for name in ("activities.csv", "activities.xlsx"):
        sandbox.reset()
        errors = tmp_path / f"{name}.errors.xlsx"
        result = run_cli(
            "run",
            REPO / "importer" / "sample_data" / name,
            "--mapping",
            mapping,
            "--rate-limit",
            FAST_LIMIT,
            "--errors",
            errors,
            "--journal",
            tmp_path / f"{name}.ledger.sqlite",  # a ledger of its own: the sandbox was emptied for this file
            "--no-progress",
            env=env,
        )
        assert result.code == 1, result.output
        rows = error_rows(errors)
        outcomes.append(
            (len(sandbox.activities()), sorted((r["Source Row"], r["Error Stage"]) for r in rows))
        )
    assert outcomes[0] == outcomes[1]
    stored, failures = outcomes[0]
    assert stored == 190
    assert failures == sorted(
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


def test_run_fixed_error_workbook_can_be_fed_back(tmp_path, mapping, sandbox, env):
    rows = [good(PAN="P1"), good(PAN="P2", Amount="12,5x"), good(OPP[1], PAN="P3", Channel="Walk-in")]
    run(write_csv(tmp_path / "t.csv", rows), mapping, env)
    workbook_path = tmp_path / "t.errors.xlsx"
    workbook = openpyxl.load_workbook(workbook_path)
    sheet = workbook["Errors"]
    header = [cell.value for cell in sheet[1]]
    sheet.cell(row=2, column=header.index("Amount") + 1).value = "12.5"
    sheet.cell(row=3, column=header.index("Channel") + 1).value = "Online"
    workbook.save(tmp_path / "fixed.xlsx")
    result = run(tmp_path / "fixed.xlsx", mapping, env)
    assert result.code == 0, result.output
    assert sorted(stored_pans(sandbox)) == ["P1", "P2", "P3"]


def test_validate_sends_nothing_and_reports_rows_and_calls(tmp_path, mapping, sandbox, env):
    rows = [good(PAN=f"P{i}") for i in range(30)] + [good(OPP[1], Amount="abc")]
    path = write_csv(tmp_path / "v.csv", rows)
    result = run_cli("validate", path, "--mapping", mapping, env=env)
    assert result.code == 1, result.output
    assert "31 rows, 30 valid, 1 invalid" in result.out
    assert "in 2 calls" in result.out
    assert sandbox.stats.requests == 0
    assert [r["Source Row"] for r in error_rows(tmp_path / "v.errors.xlsx")] == [32]


@pytest.mark.parametrize(
    ("mapping_text", "message"),
    [
        ("activity_event: {value: 201}\n", "missing key 'opportunity_id'"),
        (MAPPING.replace("column: Amount", "column: Amout"), "did you mean 'Amount'?"),
        (MAPPING + "colour: red\n", "unknown key 'colour'"),
    ],
)
def test_run_bad_mapping_exits_2_and_sends_nothing(tmp_path, sandbox, env, mapping_text, message):
    mapping = tmp_path / "bad.yaml"
    mapping.write_text(mapping_text)
    result = run(write_csv(tmp_path / "t.csv", [good()]), mapping, env)
    assert result.code == 2, result.output
    assert message in result.err
    assert str(mapping) in result.err
    assert "Traceback" not in result.err
    assert sandbox.stats.requests == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"LSQ_SECRET_KEY": ""}, "LSQ_SECRET_KEY not set"),
        ({"LSQ_HOST": "http://api.leadsquared.com"}, "plain http is allowed only for a local sandbox"),
        ({"LSQ_HOST": ""}, "no host"),
    ],
)
def test_run_bad_environment_exits_2_and_sends_nothing(tmp_path, mapping, sandbox, env, change, message):
    result = run(write_csv(tmp_path / "t.csv", [good()]), mapping, {**env, **change})
    assert result.code == 2, result.output
    assert message in result.err
    assert sandbox.stats.requests == 0


def test_run_unwritable_errors_path_is_refused_before_sending(tmp_path, mapping, sandbox, env):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run(
        write_csv(tmp_path / "t.csv", [good(Amount="x"), good()]),
        mapping,
        env,
        "--errors",
        blocker / "errors.xlsx",
    )
    assert result.code == 2, result.output
    assert sandbox.stats.requests == 0


def test_run_missing_input_file_exits_2(tmp_path, mapping, env):
    result = run(tmp_path / "nope.csv", mapping, env)
    assert result.code == 2, result.output
    assert "nope.csv" in result.err


def test_demo_imports_the_sample_and_writes_a_workbook(tmp_path):
    errors = tmp_path / "demo.errors.xlsx"
    result = run_cli("demo", "--errors", errors, "--no-progress")
    assert result.code == 0, result.output
    assert "posted        190" in result.out
    assert "The sandbox now holds 190 activities." in result.out
    assert len(error_rows(errors)) == 10
    # a throwaway ledger of its own: no word of --no-journal, which the user never typed
    assert "--no-journal" not in result.out + result.err
    assert "No ledger was kept" not in result.out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_sending_reports_and_exits_130(tmp_path, mapping, sandbox, env, signum):
    sandbox.faults = Faults(latency_ms=(40, 40))
    rows = [good(OPP[i], PAN=f"P{i}") for i in range(60)]
    path = write_csv(tmp_path / "big.csv", rows)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "importer",
            "run",
            str(path),
            "--mapping",
            str(mapping),
            "--rate-limit",
            "10/1",
            "--summary-json",
            str(tmp_path / "s.json"),
            "--no-progress",
        ],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while sandbox.stats.bulk_calls < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, out + err
    assert "Traceback" not in err
    summary = json.loads((tmp_path / "s.json").read_text())
    stored = len(sandbox.activities())
    assert 5 <= stored < 60
    assert summary["rows_posted"] + summary["rows_unknown"] >= stored
    assert summary["rows_posted"] + summary["rows_unknown"] + summary["rows_not_sent"] == 60
    reported = error_rows(tmp_path / "big.errors.xlsx")
    assert len(reported) == 60 - summary["rows_posted"]
    assert {r["Error Stage"] for r in reported} <= {"not sent", "unknown"}
    # the same command again finishes the import: every row once, none twice
    sandbox.faults = Faults()
    again = run_cli("run", path, "--mapping", mapping, "--no-progress", "--settle-time", "0", env=env)
    assert again.code == 0, again.output
    assert Counter(a.fields["mx_Custom_1"] for a in sandbox.activities()) == Counter(
        f"P{i}" for i in range(60)
    )


def test_run_unreachable_host_exits_3_and_reports_rows_not_sent(tmp_path, mapping, env):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(
        write_csv(tmp_path / "t.csv", [good(), good(OPP[1])]),
        mapping,
        {**env, "LSQ_HOST": f"http://127.0.0.1:{port}"},
        "--retries",
        "1",
    )
    assert result.code == 3, result.output
    assert f"cannot reach http://127.0.0.1:{port}" in result.err  # the pre-flight check, before any row
    assert "Traceback" not in result.err
    rows = error_rows(tmp_path / "t.errors.xlsx")
    assert [(r["Source Row"], r["Error Stage"]) for r in rows] == [(2, "not sent"), (3, "not sent")]
    assert result.summary["rows_not_sent"] == 2


def test_sandbox_command_serves_and_prints_its_url_and_keys():
    process = subprocess.Popen(
        [sys.executable, "-m", "importer", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        url = first.split(" at ")[1].split(" ")[0]
        exports = process.stdout.readline() + process.stdout.readline()
        assert f"LSQ_HOST={url}" in exports
        assert "LSQ_ACCESS_KEY=" in exports
        import requests

        from importer.sandbox import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY

        answer = requests.get(
            f"{url}/v2/Authentication.svc/UserByAccessKey.Get",
            timeout=5,
            headers={"x-LSQ-AccessKey": SANDBOX_ACCESS_KEY, "x-LSQ-SecretKey": SANDBOX_SECRET_KEY},
        )
        assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "sandbox stopped" in out


def test_ctrl_c_before_the_first_call_sends_nothing_and_reports_every_row(
    tmp_path, mapping, sandbox, env, monkeypatch
):
    from importer import runner

    rows = [good(OPP[i], PAN=f"P{i}") for i in range(3)]
    real_preflight = runner.preflight

    def preflight_then_ctrl_c(*args, **kwargs):  # Ctrl-C lands during the checks, before any call
        checked = real_preflight(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return checked

    monkeypatch.setattr(runner, "preflight", preflight_then_ctrl_c)
    result = run(write_csv(tmp_path / "t.csv", rows), mapping, env)
    assert result.code == 130, result.output
    assert sandbox.stats.bulk_calls == 0
    assert [r["Error Stage"] for r in error_rows(tmp_path / "t.errors.xlsx")] == ["not sent"] * 3
    assert result.summary["rows_not_sent"] == 3


def test_run_api_rejections_highlight_the_cell_at_fault(tmp_path, mapping, sandbox, env):
    ghost = "40ccba04-baf8-533b-a52f-61d1f7728d28"  # well-formed, but not in the account
    rows = [good(ghost), good(**{"Owner Email": "former.employee@example.com"}), good(OPP[1])]
    result = run(write_csv(tmp_path / "t.csv", rows), mapping, env)
    assert result.code == 1, result.output
    sheet = openpyxl.load_workbook(tmp_path / "t.errors.xlsx")["Errors"]
    header = [cell.value for cell in sheet[1]]
    flagged = {
        (line[0].value, header[cell.column - 1])
        for line in sheet.iter_rows(min_row=2)
        for cell in line
        if cell.comment is not None
    }
    assert flagged == {(2, "Opportunity ID"), (3, "Owner Email")}
