"""Every valid row exactly once, whatever happens: faults, crashes, reruns, grown files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import openpyxl
import pytest

from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS, Faults, Sandbox
from tests.conftest import run_cli
from tests.helpers import write_csv

HEADERS = ["Opportunity ID", "Owner Email", "Note", "PAN", "Amount"]
MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: "Opportunity ID"}
owner_email: {column: "Owner Email"}
note: {column: Note}
fields:
  mx_Custom_1: {column: PAN, required: true}
  mx_Custom_2: {column: Amount, type: number}
"""
FAST = "2000/1"


def make_rows(count: int, *, seed: int, bad_every: int = 0, duplicates: int = 0) -> list[dict[str, str]]:
    """`count` rows over many opportunities, some deliberately identical, some invalid."""
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        row = {
            "Opportunity ID": rng.choice(DEFAULT_OPPORTUNITIES[:80]),
            "Owner Email": rng.choice(DEFAULT_USERS),
            "Note": f"visit {n}",
            "PAN": f"ABCDE{n:04d}F",
            "Amount": f"{rng.randint(1, 99999)}.50",
        }
        if bad_every and n % bad_every == 0:
            row["Amount"] = "12,5x"
        rows.append(row)
    for _ in range(duplicates):  # identical rows are separate activities, never collapsed
        rows.append(dict(rows[rng.randrange(len(rows))]))
    rng.shuffle(rows)
    return rows


def expected_activities(rows: list[dict[str, str]]) -> Counter:
    return Counter((r["Opportunity ID"], r["PAN"], r["Note"]) for r in rows if r["Amount"] != "12,5x")


def stored_activities(sandbox: Sandbox) -> Counter:
    return Counter((a.opportunity_id, a.fields["mx_Custom_1"], a.note) for a in sandbox.activities())


def invalid_source_rows(rows: list[dict[str, str]]) -> list[int]:
    return [n for n, row in enumerate(rows, start=2) if row["Amount"] == "12,5x"]


def workbook_rows(path: Path) -> list[tuple[int, str]]:
    sheet = openpyxl.load_workbook(path)["Errors"]
    return [(row[0], row[1]) for row in sheet.iter_rows(min_row=2, values_only=True)]


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


def run(path: Path, mapping: Path, env: dict[str, str], *extra: str):
    summary = path.with_suffix(".summary.json")
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
        "--retries",
        "12",
        "--settle-time",
        "0",  # the sandbox's reads do not lag here (tests of read lag set their own)
        *extra,
        env=env,
    )
    result.summary = json.loads(summary.read_text()) if summary.exists() else None
    return result


@pytest.mark.parametrize("count_only", [False, True], ids=["per-row replies", "count-only replies"])
def test_faults_then_one_rerun_leave_every_valid_row_exactly_once(tmp_path, mapping, env, count_only):
    rows = make_rows(1100, seed=7, bad_every=37, duplicates=40)
    path = write_csv(tmp_path / "faulty.csv", rows)
    faults = Faults(
        seed=11,
        latency_ms=(0, 3),
        p_throttle=0.04,
        p_500_mx=0.03,
        p_500_before=0.03,
        p_500_after=0.04,
        p_drop_after=0.04,
        count_only=count_only,
    )
    with Sandbox(faults=faults, rate_limit=(4000, 1.0)) as sandbox:
        env = {**env, "LSQ_HOST": sandbox.url}
        first = run(path, mapping, env, "--concurrency", "4", "--batch-size", "10")
        assert first.code == 1, first.output
        assert first.summary["throttled"] > 0
        # rows left in doubt were looked up and settled in the same run: none stored twice
        assert not stored_activities(sandbox) - expected_activities(rows)
        assert "unknown" not in {stage for _row, stage in workbook_rows(tmp_path / "faulty.errors.xlsx")} or (
            first.summary["rows_unknown"] < 10
        )
        sandbox.faults = Faults()  # the network is back
        second = run(path, mapping, env, "--concurrency", "4", "--batch-size", "10")
        assert stored_activities(sandbox) == expected_activities(rows)  # exactly once: none lost, none twice
        assert second.code == 1, second.output
        assert second.summary["rows_skipped"] + second.summary["rows_posted"] == len(rows) - len(
            invalid_source_rows(rows)
        )
        assert workbook_rows(tmp_path / "faulty.errors.xlsx") == [
            (n, "validation") for n in invalid_source_rows(rows)
        ]


def test_rerun_of_a_finished_import_sends_nothing_and_a_grown_file_sends_only_new_rows(
    tmp_path, mapping, sandbox, env
):
    rows = make_rows(120, seed=3, duplicates=5)
    path = write_csv(tmp_path / "nightly.csv", rows)
    assert run(path, mapping, env).code == 0
    calls = sandbox.stats.bulk_calls
    again = run(path, mapping, env)
    assert again.code == 0, again.output
    assert (again.summary["rows_skipped"], again.summary["calls"], sandbox.stats.bulk_calls) == (
        125,
        0,
        calls,
    )
    grown = rows + make_rows(30, seed=4)[:30]
    write_csv(path, grown)
    third = run(path, mapping, env)
    assert (third.summary["rows_skipped"], third.summary["rows_posted"]) == (125, 30)
    assert stored_activities(sandbox) == expected_activities(grown)


def test_identical_rows_added_to_a_file_are_new_activities(tmp_path, mapping, sandbox, env):
    row = make_rows(1, seed=5)[0]
    path = write_csv(tmp_path / "same.csv", [row, row])
    run(path, mapping, env)
    write_csv(path, [row, row, row])
    result = run(path, mapping, env)
    assert (result.summary["rows_skipped"], result.summary["rows_posted"]) == (2, 1)
    assert len(sandbox.activities()) == 3


def test_resend_and_no_journal_send_again_on_purpose(tmp_path, mapping, sandbox, env):
    path = write_csv(tmp_path / "again.csv", make_rows(3, seed=1))
    run(path, mapping, env)
    assert run(path, mapping, env, "--resend").summary["rows_posted"] == 3
    assert run(path, mapping, env, "--no-journal").summary["rows_posted"] == 3
    assert len(sandbox.activities()) == 9


def test_retries_spent_leave_rows_pending_for_the_next_run(tmp_path, mapping, sandbox, env):
    path = write_csv(tmp_path / "busy.csv", make_rows(40, seed=9))
    sandbox.queue_faults(*["429"] * 2)  # a third refusal after two waits would be the daily cap
    first = run(path, mapping, env, "--retries", "1", "--concurrency", "1")
    assert first.code == 3, first.output
    assert "still throttled" in first.err
    assert first.summary["rows_not_sent"] > 0
    second = run(path, mapping, env)
    assert second.code == 0, second.output
    assert stored_activities(sandbox) == expected_activities(make_rows(40, seed=9))


def test_a_run_beside_another_open_on_the_same_ledger_goes_ahead(tmp_path, mapping, env):
    from importer.ledger import SqliteLedger

    path = write_csv(tmp_path / "busy.csv", make_rows(5, seed=2))
    ledger = tmp_path / "j.sqlite"
    with Sandbox(rate_limit=None) as sandbox:
        env = {**env, "LSQ_HOST": sandbox.url}
        with SqliteLedger.open(ledger, sandbox.url, "10001", environ=env):  # another run holds it open
            result = run(path, mapping, env, "--journal", str(ledger))
            assert result.code == 0, result.output  # runs on one account may work side by side
            assert len(sandbox.activities()) == 5
            calls = sandbox.stats.bulk_calls
        again = run(path, mapping, env, "--journal", str(ledger))
        assert again.code == 0, again.output
        assert sandbox.stats.bulk_calls == calls  # the rerun found every row in the ledger: no call
        assert len(sandbox.activities()) == 5


def test_a_batch_rejected_as_a_whole_is_split_until_the_bad_row_is_found(tmp_path, mapping, env):
    rows = make_rows(25, seed=6)
    for row in rows:
        row["Opportunity ID"] = DEFAULT_OPPORTUNITIES[0]
    rows[17]["Owner Email"] = "former.employee@example.com"  # only LeadSquared knows this one is bad
    path = write_csv(tmp_path / "split.csv", rows)
    with Sandbox(faults=Faults(row_errors="whole_batch"), rate_limit=None) as sandbox:
        result = run(path, mapping, {**env, "LSQ_HOST": sandbox.url})
        assert result.code == 1, result.output
        assert len(sandbox.activities()) == 24
        assert workbook_rows(tmp_path / "split.errors.xlsx") == [(19, "api")]
        assert sandbox.stats.bulk_calls <= 1 + 2 * 5  # one call, then a binary search: at most 2 per level


def test_an_unknown_opportunity_costs_one_call_not_a_split(tmp_path, mapping, sandbox, env):
    rows = make_rows(25, seed=8)
    for row in rows:
        row["Opportunity ID"] = "40ccba04-baf8-533b-a52f-61d1f7728d28"
    result = run(write_csv(tmp_path / "ghost.csv", rows), mapping, env)
    assert result.code == 1, result.output
    assert sandbox.stats.bulk_calls == 1
    assert result.summary["rows_failed"] == 25


def test_pattern_runs_each_file_and_archives_it(tmp_path, mapping, sandbox, env):
    incoming, archive = tmp_path / "incoming", tmp_path / "archive"
    incoming.mkdir()
    write_csv(incoming / "b.csv", make_rows(3, seed=1))
    bad = make_rows(3, seed=2)
    bad[0]["Amount"] = "12,5x"
    write_csv(incoming / "a.csv", bad)
    summary = tmp_path / "all.json"
    result = run_cli(
        "run",
        str(incoming / "*.csv"),
        "--mapping",
        mapping,
        "--rate-limit",
        FAST,
        "--archive",
        archive,
        "--summary-json",
        summary,
        "--no-progress",
        env=env,
    )
    assert result.code == 1, result.output
    assert list(incoming.iterdir()) == []
    names = sorted(p.name for p in archive.iterdir())
    assert [n.split(".")[0] for n in names] == ["a", "a", "b"]
    assert any(n.endswith(".errors.xlsx") for n in names)
    files = json.loads(summary.read_text())["files"]
    assert [Path(f["input"]).name for f in files] == ["a.csv", "b.csv"]
    assert [f["rows_posted"] for f in files] == [2, 3]
    assert result.out.index("a.csv") < result.out.index("b.csv")


def test_log_format_json_writes_one_object_per_line(tmp_path, mapping, sandbox, env):
    log_file = tmp_path / "run.log"
    path = write_csv(tmp_path / "j.csv", make_rows(3, seed=1))
    result = run(path, mapping, env, "--log-format", "json", "-v", "--log-file", str(log_file))
    assert result.code == 0, result.output
    (summary_line,) = result.out.splitlines()
    assert json.loads(summary_line)["rows_posted"] == 3
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert records
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)


def _kill_and_rerun(
    trial: int, tmp_path: Path, mapping: Path, base_env: dict[str, str], rng: random.Random
) -> tuple[Counter, Counter, bool]:
    rows = make_rows(150, seed=100 + trial, duplicates=6)
    path = write_csv(tmp_path / f"crash{trial}.csv", rows)
    journal = tmp_path / f"crash{trial}.sqlite"
    with Sandbox(faults=Faults(latency_ms=(1, 8), seed=trial), rate_limit=None) as sandbox:
        env = {**os.environ, **base_env, "LSQ_HOST": sandbox.url}
        command = [
            sys.executable,
            "-m",
            "importer",
            "run",
            str(path),
            "--mapping",
            str(mapping),
            "--rate-limit",
            "300/1",
            "--journal",
            str(journal),
            "--no-progress",
            "--batch-size",
            str(rng.choice([5, 10, 25])),
            "--settle-time",
            "0",  # the sandbox's reads do not lag: the rerun may trust a look-up at once
        ]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = rng.randint(1, 25)
        deadline = time.monotonic() + 30
        while sandbox.stats.bulk_calls < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.02))
        mid_run = process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait()
        mid_run = mid_run and sum(stored_activities(sandbox).values()) < sum(
            expected_activities(rows).values()
        )
        finish = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert finish.returncode == 0, finish.stdout + finish.stderr
        stored = stored_activities(sandbox)
    return stored - expected_activities(rows), expected_activities(rows) - stored, mid_run


def test_sigkill_at_random_moments_then_rerun_posts_every_row_exactly_once(tmp_path, mapping, env):
    rng = random.Random(2026)
    trials = 20
    duplicated = lost = killed_mid_run = 0
    for trial in range(trials):
        extra, missing, mid_run = _kill_and_rerun(trial, tmp_path, mapping, env, rng)
        duplicated += sum(extra.values())
        lost += sum(missing.values())
        killed_mid_run += mid_run
    assert (duplicated, lost) == (0, 0)
    assert killed_mid_run >= trials * 3 // 4  # the kills really landed while rows were being sent
