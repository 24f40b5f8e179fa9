"""Exactly once, whatever happens to the file: one ledger per account, over loopback (issue 9).

Each scenario is one a user met: the file renamed, moved or re-exported, the mapping saved under
another name, the host typed another way, the ledger truncated, the error workbook fed back after
rows were left in doubt, reads that lag or come in another shape. Every test ends by checking what
the sandbox holds: every valid row exactly once.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest

from importer.endpoints import BULK_ADD_PATH
from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS, READ_SHAPES, Faults, Sandbox
from tests.conftest import REPO, run_cli
from tests.helpers import sandbox_env, write_csv

HEADERS = ["Opportunity ID", "Owner Email", "Note", "PAN", "Amount", "Visit Date"]
MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: "Opportunity ID"}
owner_email: {column: "Owner Email"}
note: {column: Note}
activity_datetime: {column: "Visit Date", format: "%d/%m/%Y %H:%M", timezone: "Asia/Kolkata"}
fields:
  mx_Custom_1: {column: PAN, required: true}
  mx_Custom_2: {column: Amount, type: number}
"""
BAD_AMOUNT = "12,5x"
FAST = "4000/1"


def make_rows(count: int, *, seed: int, bad_every: int = 0, start: int = 0) -> list[dict[str, str]]:
    """Rows over a few dozen opportunities, amounts written as a CSV export writes them ("12.50")."""
    rng = random.Random(seed)
    rows = []
    for n in range(start, start + count):
        rows.append(
            {
                "Opportunity ID": rng.choice(DEFAULT_OPPORTUNITIES[:40]),
                "Owner Email": rng.choice(DEFAULT_USERS),
                "Note": f"visit {n}",
                "PAN": f"ABCDE{n:05d}F",
                "Amount": BAD_AMOUNT if bad_every and n % bad_every == 0 else f"{rng.randint(1, 9999)}.50",
                "Visit Date": f"{1 + n % 28:02d}/11/2026 {9 + n % 8:02d}:{n % 60:02d}",
            }
        )
    return rows


def valid(rows: list[dict[str, str]]) -> Counter[tuple[str, str, str]]:
    return Counter((r["Opportunity ID"], r["PAN"], r["Note"]) for r in rows if r["Amount"] != BAD_AMOUNT)


def stored(sandbox: Sandbox) -> Counter[tuple[str, str, str]]:
    return Counter((a.opportunity_id, a.fields["mx_Custom_1"], a.note) for a in sandbox.activities())


def write_xlsx(path: Path, rows: list[dict[str, str]]) -> Path:
    """The same rows re-exported from Excel: amounts as numbers (12.5), dates as date cells."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADERS)
    for row in rows:
        amount: object = row["Amount"] if row["Amount"] == BAD_AMOUNT else float(row["Amount"])
        when = datetime.strptime(row["Visit Date"], "%d/%m/%Y %H:%M")
        sheet.append([row["Opportunity ID"], row["Owner Email"], row["Note"], row["PAN"], amount, when])
        sheet.cell(sheet.max_row, 6).number_format = "dd/mm/yyyy hh:mm"
    book.save(path)
    return path


def error_stages(path: Path) -> Counter[str]:
    sheet = openpyxl.load_workbook(path)["Errors"]
    header = [cell.value for cell in sheet[1]]
    column = header.index("Error Stage")
    return Counter(row[column] for row in sheet.iter_rows(min_row=2, values_only=True))


@pytest.fixture
def account(tmp_path: Path):
    with Sandbox(rate_limit=(4000, 1.0)) as sandbox:
        env = sandbox_env(sandbox, tmp_path)
        yield sandbox, env


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


def run(path: Path, mapping: Path, env: dict[str, str], *extra: str, settle: str = "0"):
    summary = path.parent / f"{path.name}.summary.json"
    result = run_cli(
        "run",
        path,
        "--mapping",
        mapping,
        "--rate-limit",
        FAST,
        "--summary-json",
        summary,
        "--no-progress",
        "--settle-time",
        settle,
        *extra,
        env=env,
    )
    result.summary = json.loads(summary.read_text()) if summary.exists() else None
    return result


# --- the same rows under another name, place, format, mapping name or host spelling


def _change(kind: str, tmp_path: Path, first: Path, mapping: Path, env: dict[str, str], rows):
    """The second night's input, mapping and environment after a user's change of `kind`."""
    if kind == "renamed":
        return shutil.copy(first, tmp_path / "visits-2026-12-02.csv"), mapping, env
    if kind == "moved":
        (tmp_path / "archive" / "nov").mkdir(parents=True)
        return Path(shutil.move(first, tmp_path / "archive" / "nov" / first.name)), mapping, env
    if kind == "mapping renamed":
        return first, Path(shutil.copy(mapping, tmp_path / "visits mapping (copy).yml")), env
    if kind == "re-exported as xlsx":
        return write_xlsx(tmp_path / "visits.xlsx", rows), mapping, env
    if kind == "host in another case":
        # the same host, written in capitals with a trailing slash: the same account, the same ledger
        port = env["LSQ_HOST"].rsplit(":", 1)[1]
        return first, mapping, {**env, "LSQ_HOST": f"HTTP://LocalHost:{port}/"}
    raise AssertionError(kind)


CHANGES = ["renamed", "moved", "mapping renamed", "re-exported as xlsx", "host in another case"]


@pytest.mark.parametrize("kind", CHANGES)
def test_the_same_rows_changed_by_a_user_are_not_posted_again(tmp_path, mapping, account, kind):
    sandbox, env = account
    if kind == "host in another case":  # an account whose API host has letters to write another way
        port = env["LSQ_HOST"].rsplit(":", 1)[1]
        sandbox.account.api_host = f"localhost:{port}"
        env = {**env, "LSQ_HOST": f"http://localhost:{port}"}
    rows = make_rows(200, seed=1, bad_every=20)
    first = write_csv(tmp_path / "visits.csv", rows)
    night_one = run(first, mapping, env)
    assert night_one.code == 1, night_one.output  # 10 rows fail validation
    assert stored(sandbox) == valid(rows)
    calls = sandbox.stats.bulk_calls

    path, mapping2, env2 = _change(kind, tmp_path, first, mapping, env, rows)
    night_two = run(path, mapping2, env2)

    assert stored(sandbox) == valid(rows)  # nothing posted twice
    assert sandbox.stats.bulk_calls == calls  # not one call: every valid row was known
    assert night_two.summary["rows_skipped"] == 190
    assert night_two.summary["rows_posted"] == 0
    assert night_two.summary["skipped_from"] == [{"file": "visits.csv", "posted_on": _today(), "rows": 190}]
    assert "190  from visits.csv on " + _today() in night_two.out
    assert "already in LeadSquared" in night_two.out


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_the_same_file_under_a_changed_mapping_is_keyed_afresh_not_from_the_key_cache(
    tmp_path, mapping, account
):
    # night two reads the same bytes, but its mapping makes other payloads (times in UTC, not IST):
    # other rows by content, so they are sent; keys kept from night one would have skipped them
    sandbox, env = account
    rows = make_rows(60, seed=4)
    first = write_csv(tmp_path / "visits.csv", rows)
    assert run(first, mapping, env).code == 0
    in_utc = tmp_path / "utc.yaml"
    in_utc.write_text(MAPPING.replace('"Asia/Kolkata"', '"UTC"'), encoding="utf-8")

    again = run(first, mapping, env)
    night_two = run(first, in_utc, env)

    assert again.summary["rows_skipped"] == 60
    assert again.summary["rows_posted"] == 0
    assert night_two.summary["rows_posted"] == 60, night_two.output
    times = Counter(a.activity_datetime[11:16] for a in sandbox.activities() if a.note == "visit 0")
    assert len(times) == 2  # one activity per payload: 09:00 IST sent as 03:30, then 09:00 UTC


def test_a_grown_export_under_a_new_name_sends_only_the_new_rows(tmp_path, mapping, account):
    sandbox, env = account
    rows = make_rows(120, seed=2)
    run(write_csv(tmp_path / "visits-2026-12-01.csv", rows), mapping, env)
    grown = rows + make_rows(30, seed=3, start=120)
    second = run(write_csv(tmp_path / "visits-2026-12-02.xlsx.csv", grown), mapping, env)
    assert second.code == 0, second.output
    assert (second.summary["rows_skipped"], second.summary["rows_posted"]) == (120, 30)
    assert stored(sandbox) == valid(grown)


# --- the ledger itself in trouble


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (b"", "the ledger is empty (0 bytes)"),
        (b"this is not a database, it was overwritten" * 100, "the file is damaged"),
    ],
    ids=["truncated to 0 bytes", "overwritten"],
)
def test_a_truncated_or_damaged_ledger_stops_the_run_instead_of_starting_afresh(
    tmp_path, mapping, account, damage, message
):
    sandbox, env = account
    rows = make_rows(60, seed=4)
    path = write_csv(tmp_path / "visits.csv", rows)
    assert run(path, mapping, env).code == 0
    (ledger,) = (tmp_path / "state" / "ledgers").glob("*.sqlite")
    for side in ledger.parent.glob(ledger.name + "-*"):  # -wal, -shm: gone with the file's content
        side.unlink()
    ledger.write_bytes(damage)
    calls = sandbox.stats.bulk_calls

    again = run(path, mapping, env)

    assert again.code == 4, again.output  # LEDGER_ERROR, documented in the README
    assert message in again.err
    assert str(ledger) in again.err
    assert "Traceback" not in again.err
    assert sandbox.stats.bulk_calls == calls  # nothing sent on a ledger that cannot be trusted
    assert stored(sandbox) == valid(rows)
    assert again.summary is not None  # the summary is written on this outcome too
    assert again.summary["rows_posted"] == 0


def test_no_journal_says_plainly_that_a_rerun_may_post_again(tmp_path, mapping, account):
    sandbox, env = account
    rows = make_rows(30, seed=5)
    result = run(write_csv(tmp_path / "visits.csv", rows), mapping, env, "--no-journal")
    assert result.code == 0, result.output
    assert "running this file again may post these rows again" in result.out
    assert "checks LeadSquared first" not in result.out + result.err
    assert not (tmp_path / "state" / "ledgers").exists()
    assert stored(sandbox) == valid(rows)


# --- rows left in doubt, then the error workbook fed back


def test_error_workbook_fed_back_after_rows_in_doubt_posts_nothing_twice(tmp_path, mapping, account):
    sandbox, env = account
    rows = make_rows(150, seed=6, bad_every=15)
    path = write_csv(tmp_path / "visits.csv", rows)
    # four calls store their rows and then fail; the look-ups that would settle them fail too
    sandbox.faults = Faults(reads_fail=True)
    sandbox.queue_faults("500_after", "drop_after", "200_null_after", "200_not_json_after")
    first = run(path, mapping, env, "--batch-size", "5", "--concurrency", "1")
    assert first.code == 1, first.output
    assert first.summary["rows_unknown"] > 0  # their look-up failed: in doubt, never sent blind
    assert not stored(sandbox) - valid(rows)
    workbook = tmp_path / "visits.errors.xlsx"
    stages = error_stages(workbook)
    assert stages["unknown"] == first.summary["rows_unknown"]
    assert stages["validation"] == 10

    # the user fixes the bad amounts in the workbook and feeds it back, as the README invites
    sandbox.faults = Faults()
    book = openpyxl.load_workbook(workbook)
    sheet = book["Errors"]
    header = [cell.value for cell in sheet[1]]
    amount = header.index("Amount") + 1
    for row in range(2, sheet.max_row + 1):
        if sheet.cell(row, amount).value == BAD_AMOUNT:
            sheet.cell(row, amount).value = "7.50"
    book.save(workbook)
    fixed = [{**r, "Amount": "7.50"} if r["Amount"] == BAD_AMOUNT else r for r in rows]

    second = run(workbook, mapping, env)
    assert second.code == 0, second.output
    assert stored(sandbox) == valid(fixed)  # the rows in doubt were found, not posted again
    assert not (tmp_path / "visits.errors.errors.xlsx").exists()

    third = run(path, mapping, env)  # and the original command once more: nothing twice
    assert stored(sandbox) == valid(fixed) + valid([r for r in rows if r["Amount"] == BAD_AMOUNT])
    assert third.summary["rows_posted"] == 0
    assert third.summary["rows_skipped"] == 140


def test_the_workbook_lists_rows_that_failed_in_an_earlier_run_and_when(tmp_path, mapping, account):
    sandbox, env = account
    rows = make_rows(40, seed=7, bad_every=10)
    path = write_csv(tmp_path / "visits.csv", rows)
    run(path, mapping, env)
    again = run(path, mapping, env)
    assert again.summary["rows_skipped"] == 36
    assert error_stages(tmp_path / "visits.errors.xlsx") == Counter({"validation": 4})
    assert stored(sandbox) == valid(rows)


# --- reconciliation: exact, two-way, with multiplicity


@pytest.mark.parametrize("order", [("500_after", "500_before"), ("500_before", "500_after")])
def test_a_row_with_an_empty_cell_is_not_matched_to_a_fuller_rows_activity(tmp_path, mapping, account, order):
    """Two rows alike but for one cell; only one of them was created before both calls failed."""
    sandbox, env = account
    base = make_rows(1, seed=8)[0]
    rows = [{**base, "Amount": ""}, {**base}]  # the first lacks the field the second carries
    path = write_csv(tmp_path / "visits.csv", rows)
    sandbox.queue_faults(*order)
    result = run(path, mapping, env, "--batch-size", "1", "--concurrency", "1")
    assert result.code == 0, result.output
    amounts = Counter(a.fields.get("mx_Custom_2") for a in sandbox.activities())
    assert amounts == Counter({None: 1, _amount(base): 1})
    assert result.summary["rows_unknown"] == 0


def _amount(row: dict[str, str]) -> str:
    return row["Amount"].rstrip("0").rstrip(".")


def test_identical_rows_in_doubt_are_matched_with_multiplicity(tmp_path, mapping, account):
    sandbox, env = account
    row = make_rows(1, seed=9)[0]
    rows = [row, dict(row), dict(row)]  # three identical rows: three activities
    path = write_csv(tmp_path / "visits.csv", rows)
    sandbox.queue_faults("500_after", "500_before", "drop_after")
    result = run(path, mapping, env, "--batch-size", "1", "--concurrency", "1")
    assert result.code == 0, result.output
    assert stored(sandbox) == valid(rows)
    assert sum(stored(sandbox).values()) == 3


# --- reads as LeadSquared gives them: lagging, in every shape


def test_rows_in_doubt_are_settled_after_the_read_lag_in_the_same_run(tmp_path, mapping, account):
    sandbox, env = account
    rows = make_rows(80, seed=10)
    path = write_csv(tmp_path / "visits.csv", rows)
    sandbox.faults = Faults(read_lag_s=1.5)
    sandbox.queue_faults("500_after", "drop_after", "500_after")
    result = run(path, mapping, env, "--concurrency", "1", settle="2")
    assert result.code == 0, result.output
    assert result.summary["rows_unknown"] == 0
    assert stored(sandbox) == valid(rows)


def test_a_rerun_straight_away_waits_out_the_read_lag_before_trusting_a_look_up(tmp_path, mapping, account):
    sandbox, env = account
    rows = make_rows(80, seed=11)
    path = write_csv(tmp_path / "visits.csv", rows)
    sandbox.faults = Faults(read_lag_s=1.5, reads_fail=True)
    sandbox.queue_faults("500_after", "drop_after")
    first = run(path, mapping, env, "--concurrency", "1", settle="0")
    assert first.summary["rows_unknown"] > 0
    sandbox.faults = Faults(read_lag_s=1.5)  # reads answer again, but lag the writes
    second = run(path, mapping, env, settle="2")
    assert second.code == 0, second.output
    assert second.summary["rows_unknown"] == 0
    assert stored(sandbox) == valid(rows)


@pytest.mark.parametrize("shape", [*READ_SHAPES, "mixed"])
def test_rows_in_doubt_are_recognised_in_every_read_shape(tmp_path, mapping, account, shape):
    sandbox, env = account
    rows = make_rows(60, seed=12)
    path = write_csv(tmp_path / "visits.csv", rows)
    sandbox.faults = Faults(read_shape=shape, seed=3)
    sandbox.queue_faults("500_after", "drop_after", "200_null_after", "200_not_json_after")
    result = run(path, mapping, env, "--concurrency", "1")
    assert result.code == 0, result.output
    assert result.summary["rows_unknown"] == 0
    assert stored(sandbox) == valid(rows)


# --- count-only replies


def test_count_only_rejections_are_failed_with_a_reason_not_unknown_for_ever(tmp_path, mapping, account):
    sandbox, env = account
    rows = make_rows(50, seed=13)
    for n in (3, 17, 30):
        rows[n]["Owner Email"] = f"left.the.company{n}@example.com"  # LeadSquared refuses these owners
    path = write_csv(tmp_path / "visits.csv", rows)
    sandbox.faults = Faults(count_only=True)
    first = run(path, mapping, env)
    assert first.code == 1, first.output
    assert first.summary["rows_unknown"] == 0
    stages = error_stages(tmp_path / "visits.errors.xlsx")
    assert stages == Counter({"api": 3})
    sheet = openpyxl.load_workbook(tmp_path / "visits.errors.xlsx")["Errors"]
    assert any("LeadSquared created none of these" in str(c.value) for r in sheet.iter_rows() for c in r)
    refused = {rows[n]["PAN"] for n in (3, 17, 30)}
    good = [r for r in rows if r["PAN"] not in refused]
    assert stored(sandbox) == valid(good)

    second = run(path, mapping, env)  # the next night: the refused rows are tried, nothing else
    assert second.summary["rows_unknown"] == 0
    assert second.summary["rows_skipped"] == 47
    assert second.summary["rows_failed"] == 3
    messages = [
        str(c.value)
        for r in openpyxl.load_workbook(tmp_path / "visits.errors.xlsx")["Errors"].iter_rows()
        for c in r
    ]
    assert sum(f"it failed in an earlier run too, on {_today()}" in m for m in messages) == 3  # in Error only
    header = [c.value for c in openpyxl.load_workbook(tmp_path / "visits.errors.xlsx")["Errors"][1]]
    assert "LeadSquared's message" not in header  # LeadSquared gave no words of its own: none are made up
    assert stored(sandbox) == valid(good)


# --- several runs on one account at once


def test_three_processes_on_overlapping_files_of_one_account_post_each_row_once(tmp_path, mapping, account):
    sandbox, env = account
    sandbox.faults = Faults(seed=5, latency_ms=(2, 8), p_500_after=0.03, p_drop_after=0.03)
    rows = make_rows(300, seed=14)
    parts = [rows[:200], rows[100:], rows[:100] + rows[200:]]  # every row in two of the files
    processes = []
    for n, part in enumerate(parts):
        path = write_csv(tmp_path / f"part{n}.csv", part)
        command = [sys.executable, "-m", "importer", "run", str(path), "--mapping", str(mapping)]
        command += ["--rate-limit", "400/1", "--no-progress", "--settle-time", "0", "--batch-size", "5"]
        command += ["--summary-json", str(tmp_path / f"part{n}.json")]
        processes.append(
            subprocess.Popen(command, env={**os.environ, **env}, cwd=REPO, stderr=subprocess.PIPE, text=True)
        )
    finished = [(process, process.communicate(timeout=180)[1]) for process in processes]  # all, then judge
    for process, err in finished:
        assert process.returncode == 0, err
    assert stored(sandbox) == valid(rows)
    summaries = [json.loads((tmp_path / f"part{n}.json").read_text()) for n in range(3)]
    assert all(s["rows_unknown"] == 0 for s in summaries)
    assert sum(s["rows_posted"] for s in summaries) == 300
    assert sum(s["rows_skipped"] for s in summaries) == 300  # each row's second file skipped it


# --- replies as CONTRACT.md lists them


def test_a_server_fault_in_a_200_leaves_rows_in_doubt_to_look_up_never_split_or_sent_twice(
    tmp_path, mapping, account
):
    sandbox, env = account
    rows = make_rows(300, seed=15)
    for n, row in enumerate(rows):  # 25 rows on each of 12 opportunities: 12 full calls
        row["Opportunity ID"] = DEFAULT_OPPORTUNITIES[n % 12]
    path = write_csv(tmp_path / "visits.csv", rows)
    # 8 calls answer 200 {"Status": "Error", "ExceptionType": "NullReferenceException"}: 4 after
    # storing their rows, 4 before storing anything
    sandbox.queue_faults(*["200_null_after", "200_null_before"] * 4)
    result = run(path, mapping, env, "--concurrency", "1")
    assert result.code == 0, result.output
    assert stored(sandbox) == valid(rows)
    assert result.summary["rows_unknown"] == 0
    sizes = Counter(
        len(json.loads(r.body_bytes)) for r in sandbox.request_log if r.path.endswith(BULK_ADD_PATH)
    )
    # no call was split in halves: the 100 rows LeadSquared did not store went again one by one
    assert sizes == Counter({25: 12, 1: 100})


def test_leadsquareds_own_words_reach_the_workbook(tmp_path, mapping, account):
    sandbox, env = account
    rows = make_rows(3, seed=16)
    for row in rows:
        row["Opportunity ID"] = DEFAULT_OPPORTUNITIES[0]
    path = write_csv(tmp_path / "visits.csv", rows)
    sandbox.queue_faults("200_invalid_lead")
    result = run(path, mapping, env)
    assert result.code == 1, result.output
    sheet = openpyxl.load_workbook(tmp_path / "visits.errors.xlsx")["Errors"]
    texts = " ".join(str(c.value) for r in sheet.iter_rows(min_row=2) for c in r)
    assert "Invalid lead ID" in texts
    assert "answered Status: Error" not in texts


def test_a_404_stops_the_run_as_a_wrong_host_or_path_and_a_rerun_finishes_it(tmp_path, mapping, account):
    sandbox, env = account
    rows = make_rows(100, seed=17)
    path = write_csv(tmp_path / "visits.csv", rows)
    sandbox.queue_faults("ok", "ok", "404")
    first = run(path, mapping, env, "--concurrency", "1")
    assert first.code == 3, first.output
    assert "the host or the API path is wrong" in first.err + first.out
    assert sandbox.stats.bulk_calls == 3  # stopped at once, not a 404 for every row
    assert first.summary["rows_failed"] == 0  # the rows were not rejected: they were never sent
    assert first.summary["rows_not_sent"] > 0
    second = run(path, mapping, env)
    assert second.code == 0, second.output
    assert stored(sandbox) == valid(rows)


def test_two_inputs_of_one_stem_never_share_a_workbook(tmp_path, mapping, account):
    sandbox, env = account
    rows = make_rows(20, seed=18, bad_every=5)
    first = run(write_csv(tmp_path / "visits.csv", rows), mapping, env)
    second_rows = make_rows(20, seed=19, bad_every=4, start=500)
    second = run(write_xlsx(tmp_path / "visits.xlsx", second_rows), mapping, env)
    assert (first.code, second.code) == (1, 1)
    books = sorted(p.name for p in tmp_path.glob("*.errors.xlsx"))
    assert books == ["visits.errors.xlsx", "visits.xlsx.errors.xlsx"]
    assert error_stages(tmp_path / "visits.errors.xlsx") == Counter({"validation": 4})
    assert error_stages(tmp_path / "visits.xlsx.errors.xlsx") == Counter({"validation": 5})
    assert stored(sandbox) == valid(rows) + valid(second_rows)
