from __future__ import annotations

import random

import pytest

from importer.errors import UsageError
from importer.throttle import RateLimit, RateLimiter, backoff_delay


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
    # ...and it is not slower than it must be: 200 calls need 7 full windows after the first burst.
    assert times[-1] - times[0] == pytest.approx(7 * 5.1)


def test_limiter_first_burst_does_not_wait():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(5, 1.0), clock=clock, sleep=clock.sleep)
    starts(limiter, clock, 5)
    assert clock.slept == []


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
