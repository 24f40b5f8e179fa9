"""Progress: the run's events, and the CLI's bar that knows the calls ahead and the time they take."""

from __future__ import annotations

import csv
import io
import threading

from importer.cli import ProgressBar
from importer.client import Credentials
from importer.errors import ExitStatus
from importer.events import CancelToken, Phase, Progress
from importer.runner import ImportConfig, run_import
from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS, Sandbox
from importer.throttle import RateLimit
from tests.helpers import error_rows, write_yaml

MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: Opportunity}
owner_email: {column: Owner}
fields:
  mx_Custom_1: {column: PAN, required: true}
"""


def _sixty_rows(tmp_path):
    source = tmp_path / "rows.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["Opportunity", "Owner", "PAN"])
        for n in range(60):  # 30 rows on each of two opportunities: 2 calls each
            writer.writerow([DEFAULT_OPPORTUNITIES[n % 2], DEFAULT_USERS[0], f"ABCDE{n:04d}F"])
    return source


def _config(sandbox, tmp_path, **extra):
    return ImportConfig(
        input_path=_sixty_rows(tmp_path),
        mapping_path=write_yaml(tmp_path, MAPPING),
        host=sandbox.url,
        credentials=Credentials(sandbox.access_key, sandbox.secret_key),
        use_journal=False,
        rate_limit=RateLimit(10, 100.0),  # room for the checks and the 4 calls at once; 102 s a window
        **extra,
    )


def test_progress_shows_rows_and_time_left_at_the_rate_limit(sandbox, tmp_path):
    shown = io.StringIO()
    bar = ProgressBar(shown)
    result = run_import(_config(sandbox, tmp_path, on_progress=bar))
    bar.close()
    assert result.rows_posted == 60
    screen = shown.getvalue()
    # the account and host are named before the bar, on a line of their own
    assert screen.startswith(f"Checking keys on {sandbox.url.removeprefix('http://')} ...\n")
    # 4 calls and the checks fit the 10 slots of the window (100 s): at the limit they leave at once
    # (test_throttle has the waits for whole windows that the time left is made of)
    assert (
        "  0%|          | 0/60 rows (posted 0, failed 0) [00:00 so far, 00:00 left at the rate limit]"
        in screen
    )
    assert "| 60/60 rows (posted 60, failed 0) [" in screen
    assert " calls" not in screen  # the bar counts rows, as the person's sheet does


def test_progress_clock_ticks_while_no_call_completes():
    now = [100.0]
    shown = io.StringIO()
    bar = ProgressBar(shown, clock=lambda: now[0], tick=0.01)
    bar(Progress(Phase.SENDING, rows_total=50, rows_posted=25, calls_planned=2, seconds_left=95.0))
    now[0] += 30  # half a minute with no answer: a throttle's pause, a slow call
    for _ in range(500):  # the clock thread redraws on its own; wait for it, at most a few seconds
        if "00:30 so far, 01:05 left" in shown.getvalue():
            break
        threading.Event().wait(0.01)
    bar.close()
    assert (
        "| 25/50 rows (posted 25, failed 0) [00:30 so far, 01:05 left at the rate limit]" in shown.getvalue()
    )


def test_progress_events_count_calls_and_rows_through_every_phase(sandbox, tmp_path):
    events: list[Progress] = []
    result = run_import(_config(sandbox, tmp_path, on_progress=events.append))
    assert result.rows_posted == 60
    phases = list(dict.fromkeys(event.phase for event in events))
    assert phases == [
        Phase.READING,
        Phase.VALIDATING,
        Phase.CHECKING,
        Phase.SENDING,
        Phase.REPORTING,
        Phase.FINISHED,
    ]
    sending = [event for event in events if event.phase is Phase.SENDING]
    assert [event.calls_done for event in sending] == [0, 1, 2, 3, 4]
    assert {event.calls_planned for event in sending} == {4}
    assert sending[0].seconds_left == 0.0  # 4 calls in a window with room: they leave at once
    assert sending[-1].rows_posted == 60
    assert sending[-1].seconds_left == 0
    assert events[-1].rows_total == 60
    assert events[-1].rows_posted == 60
    assert {event.input_path for event in events} == {tmp_path / "rows.csv"}


def test_cancel_token_before_the_run_sends_nothing_and_reports_every_row(sandbox, tmp_path):
    token = CancelToken()
    token.cancel()
    result = run_import(_config(sandbox, tmp_path, cancel=token))
    assert result.interrupted
    assert result.exit_status is ExitStatus.INTERRUPTED
    assert sandbox.stats.bulk_calls == 0
    assert result.rows_not_sent == 60
    assert [row["Error Stage"] for row in error_rows(tmp_path / "rows.errors.xlsx")] == ["not sent"] * 60


def test_cancel_token_while_sending_stops_starting_calls(sandbox, tmp_path):
    token = CancelToken()

    def cancel_after_first_call(event: Progress) -> None:
        if event.phase is Phase.SENDING and event.calls_done == 1:
            token.cancel()

    config = _config(sandbox, tmp_path, cancel=token, on_progress=cancel_after_first_call, concurrency=1)
    result = run_import(config)
    assert result.interrupted
    stored = len(sandbox.activities())
    assert stored == 25  # one worker: the first call (25 rows) went out, and no call after it
    assert result.rows_posted == stored
    assert result.rows_posted + result.rows_unknown + result.rows_not_sent == 60


def test_cancel_token_callbacks_run_on_each_cancel_until_removed():
    token = CancelToken()
    calls: list[bool] = []
    remove = token.add_callback(lambda: calls.append(token.urgent))
    assert not token.cancelled
    token.cancel()
    token.cancel()
    remove()
    token.cancel()
    assert calls == [False, True]
    assert token.cancelled
    assert token.urgent


def test_progress_time_left_follows_a_limit_learned_lower(tmp_path):
    source = tmp_path / "rows.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["Opportunity", "Owner", "PAN"])
        for n in range(12):  # batch size 1: 12 calls
            writer.writerow([DEFAULT_OPPORTUNITIES[n % 2], DEFAULT_USERS[0], f"ABCDE{n:04d}F"])
    events: list[Progress] = []
    with Sandbox(rate_limit=(4, 1.0)) as sandbox:  # the account allows 4 a second; the default is 5
        config = ImportConfig(
            input_path=source,
            mapping_path=write_yaml(tmp_path, MAPPING),
            host=sandbox.url,
            credentials=Credentials(sandbox.access_key, sandbox.secret_key),
            use_journal=False,
            batch_size=1,
            state_dir=tmp_path / "state",
            on_progress=events.append,
        )
        result = run_import(config)
    assert result.rows_posted == 12
    assert result.throttled >= 1  # LeadSquared named its limit while the rows were being sent
    left = [event.seconds_left for event in events if event.phase is Phase.SENDING]
    # at 25 calls per 5 s all 12 would leave at once; at the 4 a second learned mid-run they wait
    assert max(left) > 0.5
    assert max(left) < 3.5  # 12 calls at 4 a second, and the window's margin
