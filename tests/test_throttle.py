from __future__ import annotations

import itertools
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from importer.errors import UsageError
from importer.throttle import (
    START_SPACING,
    AccountLimiter,
    DailyCapReached,
    RateLimit,
    RateLimiter,
    backoff_delay,
    limits_path,
    names_a_day,
)


class FakeClock:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def starts(limiter: RateLimiter, clock: FakeClock, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        limiter.acquire()
        times.append(clock.now)
    return times


def test_limiter_never_lets_more_than_n_calls_start_in_any_window():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(25, 5.0), margin=0.1, clock=clock, sleep=clock.sleep)
    times = starts(limiter, clock, 200)
    for i in range(len(times) - 25):
        assert times[i + 25] - times[i] >= 5.1 - 1e-9
    assert min(b - a for a, b in itertools.pairwise(times)) >= START_SPACING - 1e-9
    # ...and it is not slower than it must be: 200 calls need 7 full windows after the first
    # burst, whose 25 starts (and so every later window's) are START_SPACING apart.
    assert times[-1] - times[0] == pytest.approx(7 * 5.1 + 24 * START_SPACING)


def test_limiter_first_burst_waits_only_to_space_its_starts():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(5, 1.0), clock=clock, sleep=clock.sleep)
    starts(limiter, clock, 5)
    assert clock.slept == pytest.approx([START_SPACING] * 4)


def test_one_thread_at_a_time_waits_for_the_window():
    """Waiters queue behind one another instead of all waking at every slot to fight over it."""
    sleeping, most = 0, 0
    count = threading.Lock()

    def sleep(seconds: float) -> None:
        nonlocal sleeping, most
        with count:
            sleeping += 1
            most = max(most, sleeping)
        time.sleep(seconds)
        with count:
            sleeping -= 1

    limiter = RateLimiter(RateLimit(2, 0.1), margin=0.0, sleep=sleep)
    limiter.acquire()
    limiter.acquire()  # the window is full: every thread below has to wait
    began = threading.Barrier(6)

    def call() -> None:
        began.wait()
        limiter.acquire()

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert most == 1


def test_limiter_pause_holds_every_caller_for_a_window():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(25, 5.0), margin=0.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.pause()
    limiter.acquire()
    assert clock.now == pytest.approx(105.0)
    limiter.pause(2.5)  # a Retry-After of 2.5 s
    limiter.acquire()
    assert clock.now == pytest.approx(107.5)


@pytest.mark.parametrize(("text", "calls", "seconds"), [("25/5", 25, 5.0), (" 10 / 1.5 ", 10, 1.5)])
def test_rate_limit_parse(text, calls, seconds):
    assert RateLimit.parse(text) == RateLimit(calls, seconds)


@pytest.mark.parametrize("text", ["25", "0/5", "25/0", "a/b", "-1/5"])
def test_rate_limit_parse_rejects_nonsense(text):
    with pytest.raises(UsageError, match="--rate-limit"):
        RateLimit.parse(text)


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(1)
    delays = [backoff_delay(n, base=0.5, cap=8.0, rng=rng) for n in range(1, 9)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)


# --- AccountLimiter: one limiter per account, through a file in the state dir


def account_limiter(path, clock, limit=None, **options):
    limit = limit or RateLimit(5, 1.0)
    told: list[str] = []
    limiter = AccountLimiter(limit, margin=0.0, clock=clock, sleep=clock.sleep, tell=told.append, **options)
    limiter.attach(path)
    return limiter, told


def test_account_limiters_on_one_file_share_the_window(tmp_path):
    clock = FakeClock()
    path = limits_path(tmp_path, "api-in21.leadsquared.com", "10001")
    first, _ = account_limiter(path, clock)
    second, _ = account_limiter(path, clock)  # another process on the same account
    times = []
    for n in range(40):
        (first if n % 2 else second).acquire()
        times.append(clock.now)
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 1.0 - 1e-9  # never more than 5 in a window, counted together
    assert min(b - a for a, b in itertools.pairwise(times)) >= START_SPACING - 1e-9  # spaced together too
    assert times[-1] - times[0] == pytest.approx(7.0 + 4 * START_SPACING)  # ...and not slower


def test_account_limiter_counts_calls_made_before_it_knew_the_account(tmp_path):
    clock = FakeClock()
    limiter = AccountLimiter(RateLimit(2, 1.0), margin=0.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.acquire()  # the keys check, before the account is known
    limiter.attach(tmp_path / "a.sqlite")
    limiter.acquire()
    assert clock.now == pytest.approx(101.0)


def test_lower_to_is_told_once_used_at_once_and_remembered_for_the_next_run(tmp_path):
    clock = FakeClock()
    path = tmp_path / "a.sqlite"
    limiter, told = account_limiter(path, clock, RateLimit(25, 5.0))
    assert limiter.lower_to(RateLimit(10, 5.0), source="test")
    assert not limiter.lower_to(RateLimit(10, 5.0), source="test")  # the same again changes nothing
    assert limiter.limit == RateLimit(10, 5.0)
    assert told == ["LeadSquared allows this account 10 calls in 5 s; using that"]
    later, later_told = account_limiter(path, clock, RateLimit(25, 5.0))
    assert later.limit == RateLimit(10, 5.0)
    assert later_told == ["LeadSquared allows this account 10 calls in 5 s; using that"]


def test_an_explicit_limit_is_never_raised_and_not_replaced_by_memory(tmp_path):
    clock = FakeClock()
    path = tmp_path / "a.sqlite"
    limiter, _ = account_limiter(path, clock, RateLimit(25, 5.0))
    limiter.lower_to(RateLimit(10, 5.0), source="test")
    clock.now += 10
    strict, _ = account_limiter(path, clock, RateLimit(4, 5.0), explicit=True)
    strict.lower_to(RateLimit(10, 5.0), source="test")  # LeadSquared allows more: still 4
    assert strict.limit == RateLimit(4, 5.0)
    clock.now += 10
    upgraded, _ = account_limiter(path, clock, RateLimit(20, 5.0), explicit=True)
    assert upgraded.limit == RateLimit(20, 5.0)  # the user says the plan changed: memory does not win
    upgraded.lower_to(RateLimit(15, 5.0), source="test")  # ...until LeadSquared says otherwise in the run
    assert upgraded.limit == RateLimit(15, 5.0)


def test_daily_limit_stops_the_wait_and_is_remembered(tmp_path):
    clock = FakeClock()
    path = tmp_path / "a.sqlite"
    limiter, _ = account_limiter(path, clock, RateLimit(100, 1.0), daily_limit=3)
    starts(limiter, clock, 3)
    with pytest.raises(DailyCapReached, match="daily limit of 3 calls"):
        limiter.acquire()
    assert limiter.quota_left() == 0
    later, _ = account_limiter(path, clock, RateLimit(100, 1.0))  # no --daily-limit: remembered
    assert later.daily_limit == 3
    clock.now += 86_400  # the next day
    assert later.quota_left() == 3
    later.acquire()


def test_refusals_that_outlast_two_windows_are_the_daily_cap(tmp_path):
    clock = FakeClock()
    limiter, _ = account_limiter(tmp_path / "a.sqlite", clock, RateLimit(10, 5.0))
    for _ in range(2):
        limiter.acquire()
        limiter.pause()  # throttled, then a whole window of waiting
        limiter.pause()  # a second answer in flight during the same pause is not a new wave
    limiter.acquire()
    limiter.pause()  # refused a third time after waiting: the day is spent
    with pytest.raises(DailyCapReached, match="quota is spent"):
        limiter.acquire()
    assert limiter.daily_limit == 3  # the calls counted today become the remembered cap


def test_a_normal_answer_clears_the_refusals(tmp_path):
    clock = FakeClock()
    limiter, _ = account_limiter(tmp_path / "a.sqlite", clock, RateLimit(10, 5.0))
    for _ in range(5):
        limiter.acquire()
        limiter.pause()
        limiter.acquire()
        limiter.answered()
    limiter.acquire()  # five throttles, each cleared: no cap


def test_a_message_naming_the_day_is_the_cap_at_once(tmp_path):
    clock = FakeClock()
    limiter, _ = account_limiter(tmp_path / "a.sqlite", clock)
    assert names_a_day("API calls exceeded the daily limit of 500 calls for this account")
    assert not names_a_day("API calls exceeded the limit of 10 in 5 second(s)")
    limiter.day_spent()
    with pytest.raises(DailyCapReached):
        limiter.acquire()


@pytest.mark.parametrize(
    ("calls", "daily", "used", "text"),
    [
        (
            20_400,
            10_000,
            0,
            "this file needs 20,400 calls; at 10,000 a day it takes 3 nights; the ledger carries it over",
        ),
        (
            15_000,
            10_000,
            5_000,
            "this file needs 15,000 calls; at 10,000 a day it takes 2 nights (5,000 left today)",
        ),
        (900, 10_000, 0, None),
    ],
)
def test_plan_compares_calls_needed_with_the_quota_left(tmp_path, calls, daily, used, text):
    clock = FakeClock()
    limiter, _ = account_limiter(tmp_path / "a.sqlite", clock, RateLimit(10**6, 1.0), daily_limit=daily)
    starts(limiter, clock, used)
    plan = limiter.plan(calls)
    assert plan == text if text is None else plan.startswith(text)


def test_limits_path_is_one_file_per_host_and_org(tmp_path):
    a = limits_path(tmp_path, "API-in21.leadsquared.com", "10001")
    assert a == limits_path(tmp_path, "api-in21.leadsquared.com", "10001")
    assert a != limits_path(tmp_path, "api-in21.leadsquared.com", "10002")
    assert a.parent == tmp_path / "limits"


def test_a_shared_state_file_that_fails_mid_run_leaves_the_run_limited_in_memory(tmp_path, caplog):
    clock = FakeClock()
    path = tmp_path / "a.sqlite"
    limiter, _told = account_limiter(path, clock, RateLimit(5, 1.0))
    limiter.lower_to(RateLimit(2, 1.0), source="test")
    limiter._db.execute("PRAGMA query_only = 1")  # the file turns read-only (or the disk fills) mid-run
    times = starts(limiter, clock, 6)  # no sqlite3 error escapes to the sender's threads
    assert limiter.path is None
    assert "cannot be used" in caplog.text
    assert str(path) in caplog.text
    for i in range(len(times) - 2):
        assert times[i + 2] - times[i] >= 1.0 - 1e-9  # the limit LeadSquared named still holds
    limiter.pause(1.0)  # and a throttle, an answer and the close still work
    limiter.answered()
    limiter.close()


def test_a_second_thread_failing_on_the_same_file_goes_on_in_memory_too(tmp_path):
    """Two sender threads meet the full disk at once: the first falls back to memory, and the
    second, whose statement failed on the file before that, must not see its error raised."""
    clock = FakeClock()
    limiter, _told = account_limiter(tmp_path / "a.sqlite", clock, RateLimit(5, 1.0))
    limiter._db.execute("PRAGMA query_only = 1")
    starts(limiter, clock, 1)  # the first thread: falls back
    assert limiter.path is None
    tries = []

    def on_the_old_file() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return "counted in memory"

    assert limiter._shared(on_the_old_file) == "counted in memory"
    assert len(starts(limiter, clock, 3)) == 3


def test_a_state_file_that_cannot_be_opened_leaves_the_limiter_in_memory(caplog):
    clock = FakeClock()
    limiter = AccountLimiter(RateLimit(3, 1.0), margin=0.0, clock=clock, sleep=clock.sleep)
    limiter.attach(Path("/proc/self/limits/a.sqlite"))  # root may write anywhere else
    assert limiter.path is None
    assert "cannot be used" in caplog.text
    assert starts(limiter, clock, 4)[-1] == pytest.approx(101.0)


def test_seconds_for_counts_whole_windows_from_the_starts_in_the_window():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(25, 5.0), margin=0.0, clock=clock, sleep=clock.sleep)
    assert limiter.seconds_for(4) == 0.0  # an empty window: they leave at once
    went = starts(limiter, clock, 22)  # 22 calls just went, from t = 100
    clock.now += 3.0
    assert limiter.seconds_for(3) == 0.0  # 3 slots are still free
    # the rest wait for the window to turn: the 12th of them takes the slot of the 12th start, at 105
    assert limiter.seconds_for(15) == pytest.approx(went[11] + 5.0 - clock.now)
    assert limiter.seconds_for(15) == pytest.approx(2.0, abs=25 * START_SPACING)
    assert limiter.seconds_for(3 + 25 + 1) == pytest.approx(went[0] + 10.0 - clock.now)  # a window more
    limiter.lower_to(RateLimit(2, 1.0))  # LeadSquared named a lower limit: the clock follows it
    assert limiter.seconds_for(5) == pytest.approx(2.0)


def test_account_limiter_seconds_for_reads_the_shared_window(tmp_path):
    clock = FakeClock()
    path = tmp_path / "a.sqlite"
    first, _ = account_limiter(path, clock, RateLimit(5, 1.0))
    second, _ = account_limiter(path, clock, RateLimit(5, 1.0))
    went = starts(first, clock, 5)  # another run on the account took the whole window
    assert second.seconds_for(1) == pytest.approx(went[0] + 1.0 - clock.now)
    assert second.seconds_for(1) == pytest.approx(1.0 - 4 * START_SPACING)


# --- a call that had to open its connection first leaves late: it is counted from when it leaves


def test_a_call_leaving_late_is_counted_from_when_it_leaves():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(2, 1.0), margin=0.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()  # at 100: its connection takes 0.3 s to open
    clock.now += 0.3
    limiter.leaving_now()
    limiter.acquire()  # at 100.3, on a kept-alive connection
    limiter.acquire()  # the window is full: one second after the first call left, not its slot
    assert clock.now == pytest.approx(101.3)
    limiter.leaving_now()  # said twice, or for a call that never took a slot: nothing moves
    limiter.acquire()
    assert clock.now == pytest.approx(101.3 + START_SPACING)


def test_leaving_late_moves_only_the_calling_threads_start():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(2, 1.0), margin=0.0, clock=clock, sleep=clock.sleep)
    other = threading.Thread(target=limiter.acquire)
    other.start()
    other.join()  # another worker's call, at 100
    clock.now += 0.5
    limiter.leaving_now()  # this thread took no slot: the other's start stays
    limiter.acquire()
    limiter.acquire()
    assert clock.now == pytest.approx(101.0)


def test_account_limiters_count_a_late_call_from_when_it_left(tmp_path):
    clock = FakeClock()
    path = tmp_path / "a.sqlite"
    first, _ = account_limiter(path, clock, RateLimit(2, 1.0))
    second, _ = account_limiter(path, clock, RateLimit(2, 1.0))  # another run on the account
    first.acquire()
    clock.now += 0.3
    first.leaving_now()
    second.acquire()
    second.acquire()
    assert clock.now == pytest.approx(101.3)


def test_a_wall_clock_stepping_back_does_not_hold_the_account_back(tmp_path):
    clock = FakeClock()
    limiter, _ = account_limiter(tmp_path / "a.sqlite", clock, RateLimit(5, 1.0))
    limiter.acquire()  # at 100
    clock.now -= 10.0  # the wall clock is set back 10 s
    limiter.acquire()
    assert clock.now == pytest.approx(90.0)
