"""The benchmark still runs: `bench/run.py --quick` on tiny inputs. Timing is checked by the bench itself."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_bench_quick_run_measures_everything_it_reports(tmp_path):
    figures = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "XLSX reading:" in result.stdout
    assert "achieved rate / limit" in result.stdout
    measured = json.loads(figures.read_text())
    assert {item["key"] for item in measured["validate"]} == {"csv", "xlsx", "read", "read-openpyxl"}
    assert all(item["seconds"] > 0 and item["peak_mb"] > 0 for item in measured["validate"])
    [send] = measured["send"]
    assert send["exit_code"] == 0
    assert send["posted"] == send["rows"]  # every row arrived, whatever was throttled
    assert send["calls"] >= send["minimum"]
    ledger = {item["kind"]: item for item in measured["ledger"]}
    assert set(ledger) == {"ledger-nightly", "ledger-rerun", "ledger-grown"}
    rerun, grown, nightly = ledger["ledger-rerun"], ledger["ledger-grown"], ledger["ledger-nightly"]
    assert rerun["skipped"] == rerun["rows_total"] > 0
    assert rerun["to_send"] == 0
    assert rerun["cached"] == 1  # the first run's keys, from the ledger's key cache
    assert grown["cached"] == 0  # a changed file: its keys computed
    assert grown["skipped"] == rerun["rows_total"]
    assert grown["to_send"] == nightly["to_send"] == nightly["rows_total"] > 0
    narrow = measured["lookup"]["since the uncertain call"]
    assert narrow["read_calls"] == 1
    assert narrow["has_uncertain_row"]
    assert measured["stages"]["bare_read"] > 0
    assert measured["stages"]["in_process"] > 0
