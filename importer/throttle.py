"""Client-side rate limit and retry backoff.

LeadSquared counts calls by arrival time in a moving window (25 in 5 s by default, lower on some
plans). The limiter keeps the start times of recent calls and lets a call start only when fewer
than N started within the window plus a small margin, since the server's clock sees arrivals
shifted by network jitter. The clock and sleep are injected so tests run in milliseconds.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from importer.errors import UsageError

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class RateLimit:
    """At most `calls` calls in any `seconds` seconds."""

    calls: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Read 'N/S' as given to --rate-limit, e.g. '25/5'."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", text)
        if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
            raise UsageError(f"--rate-limit must look like 25/5 (calls/seconds), got '{text}'")
        return cls(int(match.group(1)), float(match.group(2)))

    def __str__(self) -> str:
        return f"{self.calls}/{self.seconds:g}"


class RateLimiter:
    """A moving-window limiter shared by every request of a run (thread-safe)."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        margin: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.limit = limit
        # Jitter between our send and the server's arrival stamp; 2% plus 20 ms keeps the
        # achieved rate above 95% of the limit while keeping 429s rare.
        self.window = limit.seconds + (margin if margin is not None else 0.02 * limit.seconds + 0.02)
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until a call may start, and count it as started."""
        while True:
            wait = self._try_acquire()
            if wait <= 0:
                return
            self._sleep(wait)

    def _try_acquire(self) -> float:
        with self._lock:
            now = self._clock()
            while self._starts and self._starts[0] <= now - self.window:
                self._starts.popleft()
            if self._paused_until > now:
                return self._paused_until - now
            if len(self._starts) < self.limit.calls:
                self._starts.append(now)
                return 0.0
            return self._starts[0] + self.window - now

    def pause(self, seconds: float | None = None) -> None:
        """Hold every caller back (after a 429): by default for a whole window."""
        with self._lock:
            until = self._clock() + (self.window if seconds is None else seconds)
            self._paused_until = max(self._paused_until, until)


def backoff_delay(
    attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter for the attempt-th retry (1-based)."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)
