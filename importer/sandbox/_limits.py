"""The account's rate limit (a sliding window) and its daily cap, on the injectable clock."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Verdict:
    """Why a call was refused, or that it was admitted (both fields None)."""

    throttled: str | None = None  # the rate-limit message
    daily: str | None = None  # the daily-cap message


class AccountLimits:
    """Counts one account's calls; not thread-safe on its own (the service holds its lock)."""

    def __init__(self, rate_limit: tuple[int, float] | None, daily_limit: int | None) -> None:
        self.rate_limit = rate_limit
        self.daily_limit = daily_limit
        self._window: deque[float] = deque()
        self._day: int | None = None
        self.used_today = 0

    def limit_message(self) -> str:
        limit, seconds = self.rate_limit or (25, 5.0)
        return f"API calls exceeded the limit of {limit} in {seconds:g} second(s)"

    def daily_message(self) -> str:
        return f"API calls exceeded the daily limit of {self.daily_limit} calls for this account"

    def admit(self, arrived: float) -> Verdict:
        """Count an arrival; a refusal says whether the window or the day's quota refused it."""
        if self.daily_limit is not None and self._spent(arrived):
            return Verdict(daily=self.daily_message())
        if self.rate_limit is not None and not self._in_window(arrived):
            return Verdict(throttled=self.limit_message())
        self.used_today += 1
        return Verdict()

    def _spent(self, arrived: float) -> bool:
        day = int(arrived // SECONDS_PER_DAY)
        if day != self._day:
            self._day, self.used_today = day, 0
        return self.daily_limit is not None and self.used_today >= self.daily_limit

    def _in_window(self, arrived: float) -> bool:
        assert self.rate_limit is not None
        limit, seconds = self.rate_limit
        while self._window and arrived - self._window[0] >= seconds:
            self._window.popleft()
        admitted = len(self._window) < limit
        self._window.append(arrived)  # throttled arrivals count too: the stricter reading
        return admitted
