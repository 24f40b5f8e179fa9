"""Throttling as LeadSquared does it, over loopback: learned limits, one limiter per account, daily caps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from importer.sandbox import Faults, Sandbox
from tests.conftest import REPO, run_cli
from tests.helpers import sandbox_env, write_csv
from tests.test_resilience import MAPPING, expected_activities, make_rows, stored_activities

TOLD = "LeadSquared allows this account 4 calls in 1 s; using that"


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


def environment(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    return sandbox_env(sandbox, tmp_path)


def run(path: Path | str, mapping: Path, env: dict[str, str], *extra: str):
    summary = Path(str(path).replace("*", "all")).with_suffix(".summary.json")
    result = run_cli(
        "run", path, "--mapping", mapping, "--summary-json", summary, "--no-progress", *extra, env=env
    )
    result.summary = json.loads(summary.read_text()) if summary.exists() else None
    return result


@pytest.mark.parametrize("status", [403, 429, 200])
def test_a_lower_real_limit_is_learned_from_the_message_and_remembered(tmp_path, mapping, status):
    rows = make_rows(16, seed=3)
    with Sandbox(rate_limit=(4, 1.0), faults=Faults(throttle_status=status)) as sandbox:
        env = environment(sandbox, tmp_path)
        first = run(write_csv(tmp_path / "a.csv", rows), mapping, env)  # the default limit, 25/5, is too fast
        assert first.code == 0, first.output
        assert first.summary["rows_failed"] == 0  # a throttle is never a rejection of the rows
        assert first.err.count(TOLD) == 1
        assert stored_activities(sandbox) == expected_activities(rows)
        # the first burst only (16 calls at once where 4 fit), then the learned limit holds: on a
        # loaded machine one straggler of the burst may reach the server after its refusals
        assert sandbox.stats.throttled <= 13
        before = sandbox.stats.throttled
        more = make_rows(8, seed=4)
        second = run(write_csv(tmp_path / "b.csv", more), mapping, env)  # a later run starts at 4/1
        assert second.code == 0, second.output
        assert TOLD in second.err
        assert sandbox.stats.throttled == before
        assert stored_activities(sandbox) == expected_activities(rows) + expected_activities(more)


def test_an_explicit_rate_limit_is_not_raised_by_what_leadsquared_allows(tmp_path, mapping):
    rows = make_rows(6, seed=5)
    with Sandbox(rate_limit=(4, 1.0), faults=Faults(throttle_status=403)) as sandbox:
        env = environment(sandbox, tmp_path)
        sandbox.queue_faults("429")  # a throttle names the account's limit, 4 in 1 s, above the user's 2/1
        result = run(write_csv(tmp_path / "a.csv", rows), mapping, env, "--rate-limit", "2/1")
        assert result.code == 0, result.output
        assert "LeadSquared allows" not in result.err
        assert stored_activities(sandbox) == expected_activities(rows)


def test_a_daily_cap_stops_the_run_at_once_and_leaves_the_rest_not_sent(tmp_path, mapping):
    rows = make_rows(30, seed=6)
    with Sandbox(rate_limit=(100, 1.0), daily_limit=12, faults=Faults(throttle_status=403)) as sandbox:
        env = environment(sandbox, tmp_path)
        path = write_csv(tmp_path / "a.csv", rows)
        first = run(path, mapping, env, "--rate-limit", "100/1", "--concurrency", "8")
        assert first.code == 3, first.output
        assert "quota is spent" in first.err
        assert "rows left are not sent" in first.err
        summary = first.summary
        assert summary["rows_failed"] == summary["rows_unknown"] == 0
        assert summary["rows_posted"] + summary["rows_not_sent"] == 30
        assert sum(stored_activities(sandbox).values()) == summary["rows_posted"]
        assert sandbox.stats.daily_refused <= 8  # the calls in flight when the cap came, not 8 retries each
        requests = sandbox.stats.requests
        again = run(path, mapping, env, "--rate-limit", "100/1")  # the same day: stops at the keys check
        assert again.code == 3, again.output
        assert "quota is spent" in again.err
        assert sandbox.stats.requests == requests + 1


def test_daily_limit_plans_the_nights_and_stops_at_the_quota(tmp_path, mapping):
    rows = make_rows(30, seed=7)
    with Sandbox(rate_limit=(100, 1.0)) as sandbox:
        env = environment(sandbox, tmp_path)
        path = write_csv(tmp_path / "a.csv", rows)
        first = run(path, mapping, env, "--rate-limit", "100/1", "--batch-size", "1", "--daily-limit", "12")
        assert first.code == 3, first.output
        assert "this file needs 30 calls; at 12 a day it takes 3 nights" in first.err
        assert "the ledger carries it over" in first.err
        assert sandbox.stats.daily_refused == 0
        assert sandbox.stats.throttled == 0
        assert sandbox.stats.requests <= 12  # our own count stopped it: the keys check counts too
        assert first.summary["rows_posted"] + first.summary["rows_not_sent"] == 30


def test_files_of_a_pattern_share_one_limiter(tmp_path, mapping):
    folder = tmp_path / "in"
    folder.mkdir()
    all_rows = []
    for n in range(4):
        rows = make_rows(6, seed=10 + n)
        all_rows += rows
        write_csv(folder / f"f{n}.csv", rows)
    with Sandbox(rate_limit=(5, 1.0)) as sandbox:
        env = environment(sandbox, tmp_path)
        result = run(str(folder / "*.csv"), mapping, env, "--rate-limit", "5/1")
        assert result.code == 0, result.output
        assert sandbox.stats.throttled == 0  # no burst at a file boundary: the window carries over
        assert sum(stored_activities(sandbox).values()) == len(all_rows)


def test_concurrent_processes_on_one_account_share_the_limit(tmp_path, mapping):
    """Four runs at once, each a process of its own, on one account: throttled at most 1% of calls."""
    with Sandbox(rate_limit=(10, 1.0)) as sandbox:
        env = {**os.environ, **environment(sandbox, tmp_path)}
        expected = expected_activities([])
        runs = []
        for n in range(4):
            rows = make_rows(10, seed=20 + n)
            expected += expected_activities(rows)
            path = write_csv(tmp_path / f"p{n}.csv", rows)
            command = [sys.executable, "-m", "importer", "run", str(path), "--mapping", str(mapping)]
            command += ["--rate-limit", "10/1", "--no-progress"]
            runs.append(subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True))
        finished = [(process, process.communicate(timeout=120)[1]) for process in runs]  # all, then judge
        for process, err in finished:
            assert process.returncode == 0, err
        assert stored_activities(sandbox) == expected
        assert sandbox.stats.throttled <= sandbox.stats.requests // 100
