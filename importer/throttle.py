"""Client-side rate limit and retry backoff.

LeadSquared counts calls by arrival time in a moving window (25 in 5 s by default, lower on some
plans). The limiter keeps the start times of recent calls and lets a call start only when fewer
than N started within the window plus a small margin, since the server's clock sees arrivals
shifted by network jitter. The clock and sleep are injected so tests run in milliseconds.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import random
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from importer.errors import ApiUnusableError, UsageError

log = logging.getLogger(__name__)
_T = TypeVar("_T")

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
        self.window = _window(limit, margin)
        self._margin = margin
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._day_spent = False
        self._lock = threading.Lock()
        self._turn = threading.Lock()
        self._mine = threading.local()  # the start this thread took last, until its call leaves

    def acquire(self) -> None:
        """Block until a call may start, and count it as started.

        One thread of the process waits for the window at a time, the others queue behind it: all
        of them polling woke together at every slot and fought over the lock and the shared file
        (11 tries a call at 25/1, 2.4 ms each, against 1.9 and 0.1 ms now). Two starts are at least
        `START_SPACING` apart: a window's calls recorded at one instant still leave one after another,
        so the server saw the last of them up to 25 ms after its slot.
        """
        with self._turn:
            while True:
                wait = self._try_acquire()
                if wait <= 0:
                    return
                self._sleep(wait)

    def _try_acquire(self) -> float:
        with self._lock:
            if self._day_spent:
                raise DailyCapReached(_cap_message(None, None, self._clock()))
            now = self._clock()
            while self._starts and self._starts[0] <= now - self.window:
                self._starts.popleft()
            if self._paused_until > now:
                return self._paused_until - now
            if len(self._starts) >= self.limit.calls:
                return self._starts[0] + self.window - now
            if self._starts and self._starts[-1] + START_SPACING > now:
                return self._starts[-1] + START_SPACING - now
            self._starts.append(now)
            self._mine.start = now
            return 0.0

    def leaving_now(self) -> None:
        """The call this thread took its last slot for leaves only now: it had to open a connection
        first (a TLS handshake is one or two round trips). Count it from now, so the call N after it
        keeps its distance from the arrival the server sees, not from the slot."""
        with self._lock:
            start, self._mine.start = getattr(self._mine, "start", None), None
            if start is None or start not in self._starts:  # no slot, or it has left the window
                return
            self._starts.remove(start)
            self._starts.append(max(self._clock(), self._starts[-1] if self._starts else start))

    def seconds_for(self, calls: int) -> float:
        """When the last of `calls` more calls may start, at the limit in force, from the starts
        already in its window: 15 calls left at 25 per 5 s, 22 of them just gone, wait for the
        next window; 4 calls in an empty window leave at once."""
        if calls <= 0:
            return 0.0
        now = self._clock()
        calls_per_window, window = self.limit.calls, self.window
        past = sorted(at for at in self._recent_starts(now) if at > now - window)[-calls_per_window:]
        free = calls_per_window - len(past)
        if calls <= free:
            return 0.0
        cycle = past + [now] * free  # the slots repeat every window, in this order
        waiting = calls - free
        starts_at = cycle[(waiting - 1) % calls_per_window] + window * ((waiting - 1) // calls_per_window + 1)
        return max(0.0, starts_at - now)

    def _recent_starts(self, now: float) -> list[float]:
        with self._lock:
            return list(self._starts)

    def pause(self, seconds: float | None = None) -> None:
        """Hold every caller back (after a 429): by default for a whole window."""
        with self._lock:
            until = self._clock() + (self.window if seconds is None else seconds)
            self._paused_until = max(self._paused_until, until)

    def lower_to(self, limit: RateLimit, *, source: str = "LeadSquared") -> bool:
        """Use `limit` for the rest of the run if it is stricter than the one in force."""
        with self._lock:
            if not _stricter(limit, self.limit):
                return False
            log.info("rate limit now %s (from %s)", limit, source)
            self.limit, self.window = limit, _window(limit, self._margin)
            return True

    def day_spent(self) -> None:
        """LeadSquared said the day's quota is spent: the next wait raises DailyCapReached."""
        with self._lock:
            self._day_spent = True

    def answered(self) -> None:
        """A call was answered normally (the account limiter uses this to tell a daily cap)."""

    def quota_left(self) -> int | None:
        """Calls left today, when a daily cap is known (never, for a limiter of one process)."""
        return None

    def plan(self, calls: int, *, carried_over: bool = True) -> str | None:
        """What a daily cap means for a run of `calls` calls (none is known here)."""
        return None


def backoff_delay(
    attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter for the attempt-th retry (1-based)."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


# --- One limiter per account, shared by every process on this machine ----------------------------

_LIMIT_MESSAGE = re.compile(r"exceeded the limit of\s+(\d+)\s+in\s+(\d+(?:\.\d+)?)\s+second", re.IGNORECASE)
_DAY = 86_400.0
START_SPACING = 0.002  # between two starts: a window's calls leave one at a time, not all stamped at once
_WIDENING = 0.05  # of the window, added to the margin per throttled answer (at most a quarter window)
_NARROWING = 0.998  # per call: 350 calls without a throttle take back half of the widening
_CAP_WAVES = 3  # refusals each after a full window's wait, before a throttle counts as the daily cap
_SCHEMA = """
CREATE TABLE IF NOT EXISTS starts (at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS starts_at ON starts (at);
CREATE TABLE IF NOT EXISTS account (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


def limit_in(message: str | None) -> RateLimit | None:
    """The limit LeadSquared names in "API calls exceeded the limit of 10 in 5 second(s)", if any."""
    match = _LIMIT_MESSAGE.search(message or "")
    if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
        return None
    return RateLimit(int(match.group(1)), float(match.group(2)))


def names_a_day(message: str | None) -> bool:
    """Whether a refusal speaks of a daily quota rather than the window ("daily limit", "per day")."""
    return bool(re.search(r"\b(daily|per day|a day|today)\b", message or "", re.IGNORECASE))


def limits_path(state_dir: Path, host: str, org: str | None) -> Path:
    """Where the shared limiter of one account lives: one SQLite file per host and org."""
    return Path(state_dir) / "limits" / f"{_safe(host.lower())}-{_safe(org or 'unknown-org')}.sqlite"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text)


class DailyCapReached(ApiUnusableError):
    """The account's calls for the day are spent: stop, and leave the rest for the next run."""

    @classmethod
    def said(cls, refusal: str, *, clock: Clock = time.time) -> DailyCapReached:
        """LeadSquared's own refusal (e.g. of the keys check), told in words."""
        return cls(f"{_cap_message(None, None, clock())} (LeadSquared said: {refusal})")


class AccountLimiter(RateLimiter):
    """The rate limit and daily quota of one account, shared through a SQLite file in the state dir.

    Every process on the account (pattern runs, concurrent runs, the web page's jobs) opens the same
    file; each start is a row, inserted only inside BEGIN IMMEDIATE, so SQLite's own file locking
    makes the count-and-insert atomic across processes, on every platform, with no new dependency.
    Threads of one process share one connection under a lock. The file also remembers what
    LeadSquared told about the account: the limit named in its throttle message and the daily cap.
    Until `attach` names the account the state is in memory (the keys check runs before the
    account is known).
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        explicit: bool = False,
        daily_limit: int | None = None,
        margin: float | None = None,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        tell: Callable[[str], None] = log.warning,
    ) -> None:
        super().__init__(limit, margin=margin, clock=clock, sleep=sleep)
        self.configured = limit
        self._explicit = explicit  # an explicit --rate-limit is never raised, and not replaced by memory
        self._daily_flag = daily_limit
        self._margin = margin
        self._tell = tell
        self._told: set[RateLimit] = set()
        self._started = clock()
        self._db = self._connect(":memory:")
        self._neighbours: dict[Path, sqlite3.Connection] = {}
        self.path: Path | None = None
        self._fell_back = False  # the shared file failed mid-run: this run counts in memory
        if daily_limit is not None:
            self._put("daily_limit", daily_limit)

    # --- the state file

    def expect(self, state_dir: Path, host: str) -> None:
        """Before the account is known (the keys check), also take a slot on every account of `host`.

        The keys check of the next file of a pattern, or of a run started beside others, must not
        burst into an account's full window; any account this machine used on the host may be it.
        """
        folder = Path(state_dir) / "limits"
        for path in sorted(folder.glob(f"{_safe(host.lower())}-*.sqlite")) if folder.is_dir() else []:
            self._neighbours[path] = self._connect(str(path))

    def attach(self, path: Path) -> None:
        """Share the state of the account whose file this is; calls counted so far go with it."""
        with self._lock:
            known = self._neighbours.pop(path, None)
            now = self._clock()
            recent = self._db.execute("SELECT at FROM starts WHERE at > ?", (now - 60,)).fetchall()
            calls = self._calls_today(now)
            memory = self._db
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = known or self._connect(str(path))
                self._db = db
                with _immediate(db):
                    if known is None:  # its slots were taken in the file already
                        db.executemany("INSERT INTO starts (at) VALUES (?)", recent)
                    for _ in range(calls):
                        self._count_call(now)
                    if self._daily_flag is not None:
                        self._put("daily_limit", self._daily_flag)
            except (OSError, sqlite3.Error) as exc:
                if self._db is not memory:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.close()
                self._db = memory
                log.warning(
                    "%s: the rate limit shared by this account's runs cannot be used (%s); this run "
                    "keeps its own count, so runs beside it may be throttled",
                    path,
                    exc,
                )
            else:
                memory.close()
                self.path = path
            self._close_neighbours()
            self._refresh_limit(now)

    def close(self) -> None:
        with self._lock:
            self._close_neighbours()
            with contextlib.suppress(sqlite3.Error):
                self._db.close()

    def _shared(self, action: Callable[..., _T], *args: Any) -> _T:
        """Run `action` on the account's state; if the shared file fails (disk full, damaged), go on
        with this run's own state in memory, said once: the limit is advice, the ledger is the record."""
        try:
            return action(*args)
        except sqlite3.Error as exc:
            if not self._fall_back(exc):
                raise
            return action(*args)

    def _fall_back(self, exc: sqlite3.Error) -> bool:
        with self._lock:
            if self._fell_back:  # another sender thread met the same failure first: go on in memory
                return True
            if self.path is None:
                return False
            self._fell_back = True
            log.warning(
                "%s: the rate limit shared by this account's runs cannot be used (%s); this run keeps "
                "its own count of %s, so runs beside it may be throttled",
                self.path,
                exc,
                self.limit,
            )
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._close_neighbours()
            self._db, self.path = self._connect(":memory:"), None
            if self.limit != self.configured:  # what LeadSquared told stays in force
                self._put("learned_calls", self.limit.calls)
                self._put("learned_seconds", self.limit.seconds)
                self._put("learned_at", self._clock())
            if self._daily_flag is not None:
                self._put("daily_limit", self._daily_flag)
            return True

    def _close_neighbours(self) -> None:
        for db in self._neighbours.values():
            db.close()
        self._neighbours.clear()

    @staticmethod
    def _connect(where: str) -> sqlite3.Connection:
        db = sqlite3.connect(where, timeout=30.0, isolation_level=None, check_same_thread=False)
        if where != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "PRAGMA synchronous=OFF"
        )  # the state is advice: losing the last calls to a crash is harmless
        db.executescript(_SCHEMA)
        return db

    def _get(self, key: str) -> float | None:
        return _get(self._db, key)

    def _put(self, key: str, value: float | None) -> None:
        _put(self._db, key, value)

    # --- what is in force

    @property
    def daily_limit(self) -> int | None:
        """The calls a day this account may make: --daily-limit, else the value remembered."""
        with self._lock:
            value = self._get("daily_limit")
        return None if value is None else int(value)

    def quota_left(self) -> int | None:
        """Calls left today on this machine's count, or None when no daily cap is known."""
        with self._lock:
            now = self._clock()
            value = self._get("daily_limit")
            if value is None:
                return None
            if self._get("capped_day") == _day(now):
                return 0
            return max(0, int(value) - self._calls_today(now))

    def _calls_today(self, now: float) -> int:
        return int(self._get("day_calls") or 0) if self._get("day") == _day(now) else 0

    def _refresh_limit(self, now: float) -> None:
        """Take the learned limit when it is stricter (for an explicit limit: only if learned in this run)."""
        calls, seconds, learned_at = (
            self._get(k) for k in ("learned_calls", "learned_seconds", "learned_at")
        )
        limit = self.configured
        if calls is not None and seconds is not None and learned_at is not None:
            learned = RateLimit(int(calls), seconds)
            if (not self._explicit or learned_at >= self._started) and _stricter(learned, limit):
                limit = learned
        self.limit = limit
        self.window = _window(limit, self._margin) + (self._get("extra_margin") or 0.0)
        if limit != self.configured and limit not in self._told:
            self._told.add(limit)
            self._tell(
                f"LeadSquared allows this account {limit.calls} calls in {limit.seconds:g} s; using that"
            )

    # --- the interface the sender uses

    def lower_to(self, limit: RateLimit, *, source: str = "LeadSquared") -> bool:
        """Use `limit` from now on if it is stricter, and remember it for the account's later runs."""
        return self._shared(self._lower_to, limit, source)

    def _lower_to(self, limit: RateLimit, source: str) -> bool:
        with self._lock:
            now = self._clock()
            with _immediate(self._db):
                self._put("learned_calls", limit.calls)
                self._put("learned_seconds", limit.seconds)
                self._put("learned_at", now)
            before = self.limit
            self._refresh_limit(now)
            if self.limit != before:
                log.info("rate limit now %s (from %s)", self.limit, source)
            return self.limit != before

    def acquire(self) -> None:
        """Block until a call may start on the account (raises DailyCapReached), and count it."""
        super().acquire()
        with self._lock:
            neighbours = list(self._neighbours.items())
        for path, db in neighbours:
            try:
                while (wait := self._take_slot_in(db)) > 0:
                    self._sleep(wait)
            except sqlite3.Error:  # another account's file: advice only, never worth stopping for
                with self._lock, contextlib.suppress(sqlite3.Error):
                    self._neighbours.pop(path, db).close()

    def _try_acquire(self) -> float:
        return self._shared(self._try_acquire_here)

    def _try_acquire_here(self) -> float:
        with self._lock, _immediate(self._db):
            now = self._clock()
            self._refresh_limit(now)
            self._check_quota(now)
            wait = self._take_slot(self._db, now)
            if wait <= 0:
                (row,) = self._db.execute("SELECT last_insert_rowid()").fetchone()
                self._mine.start = (self._db, row)
                self._count_call(now)
                extra = self._get("extra_margin")
                if extra:  # the widened margin slowly narrows again, call by call
                    self._put("extra_margin", extra * _NARROWING if extra > 0.001 else None)
            return wait

    def leaving_now(self) -> None:
        """The call this thread took its last slot for leaves only now (see RateLimiter): its start
        on the account moves to now, for every run sharing the account."""
        self._shared(self._leaving_now)

    def _leaving_now(self) -> None:
        with self._lock:
            mine, self._mine.start = getattr(self._mine, "start", None), None
            if mine is None or mine[0] is not self._db:  # no slot, or taken before the file was attached
                return
            with _immediate(self._db):
                self._db.execute(
                    "UPDATE starts SET at = MAX(at, ?) WHERE rowid = ?", (self._clock(), mine[1])
                )

    def _recent_starts(self, now: float) -> list[float]:
        with self._lock, contextlib.suppress(sqlite3.Error):  # advice for the clock: never worth failing
            rows = self._db.execute("SELECT at FROM starts WHERE at > ?", (now - self.window,)).fetchall()
            return [float(at) for (at,) in rows]
        return []

    def _take_slot_in(self, db: sqlite3.Connection) -> float:
        with self._lock, _immediate(db):
            return self._take_slot(db, self._clock())

    def _take_slot(self, db: sqlite3.Connection, now: float) -> float:
        """0 and a start recorded when the window has room, else the seconds until it has."""
        paused = _get(db, "paused_until") or 0.0
        if paused > now:
            return paused - now
        row = db.execute(
            "SELECT at FROM starts WHERE at > ? ORDER BY at DESC LIMIT 1 OFFSET ?",
            (now - self.window, self.limit.calls - 1),
        ).fetchone()
        if row is not None:  # the window is full: wait until its oldest start leaves it
            return max(float(row[0]) + self.window - now, 0.001)
        (latest,) = db.execute("SELECT MAX(at) FROM starts").fetchone()
        # a start stamped ahead of this clock (the wall clock stepped back) is no reason to wait
        if latest is not None and float(latest) <= now < float(latest) + START_SPACING:
            return float(latest) + START_SPACING - now
        db.execute("INSERT INTO starts (at) VALUES (?)", (now,))
        db.execute("DELETE FROM starts WHERE at < ?", (now - 60,))
        return 0.0

    def _check_quota(self, now: float) -> None:
        daily = self._get("daily_limit")
        today = self._calls_today(now)
        if self._get("capped_day") == _day(now) or (daily is not None and today >= daily):
            raise DailyCapReached(_cap_message(today, daily, now))

    def _count_call(self, now: float) -> None:
        if self._get("day") != _day(now):
            self._put("day", _day(now))
            self._put("day_calls", 0)
        self._put("day_calls", (self._get("day_calls") or 0) + 1)

    def pause(self, seconds: float | None = None) -> None:
        """A throttled answer: hold every caller on the account back for a window.

        Refusals that outlast the waits are the daily cap: refused, a window of silence, refused
        again, another window, and refused a third time means the quota is spent, not the rate.
        """
        self._shared(self._pause, seconds)

    def _pause(self, seconds: float | None) -> None:
        with self._lock, _immediate(self._db):
            now = self._clock()
            paused = self._get("paused_until") or 0.0
            waves = 1 if self._get("refused_since") is None else int(self._get("refusals") or 1)
            if self._get("refused_since") is None:
                self._put("refused_since", now)
            elif now >= paused:  # refused again after a whole pause: a new wave, not a late answer
                waves += 1
            self._put("refusals", waves)
            if now >= paused:  # once per throttling, not per answer in flight when it came
                self._widen_margin()
            self._put("paused_until", max(paused, now + (self.window if seconds is None else seconds)))
            if waves >= _CAP_WAVES:
                self._spend_day(now)
                log.warning(
                    "LeadSquared still refuses calls after waiting out the limit: the day's quota is spent"
                )

    def day_spent(self) -> None:
        """LeadSquared said the day's quota is spent: every run on the account stops for today."""
        self._shared(self._spend_today)

    def _spend_today(self) -> None:
        with self._lock, _immediate(self._db):
            self._spend_day(self._clock())

    def _spend_day(self, now: float) -> None:
        self._put("capped_day", _day(now))
        if self._daily_flag is None:  # remembered for the plan of the next runs
            self._put("daily_limit", self._calls_today(now))

    def _widen_margin(self) -> None:
        """Refused at a limit we keep: the server saw our starts more bunched than the margin allows
        (a busy machine, several processes); widen it for every run on the account."""
        extra = (self._get("extra_margin") or 0.0) + _WIDENING * self.limit.seconds
        self._put("extra_margin", min(extra, 0.25 * self.limit.seconds))

    def answered(self) -> None:
        """A call was answered normally: any refusal has cleared."""
        self._shared(self._answered)

    def _answered(self) -> None:
        with self._lock:
            if self._get("refused_since") is not None:
                with _immediate(self._db):
                    self._put("refused_since", None)
                    self._put("refusals", None)

    def plan(self, calls: int, *, carried_over: bool = True) -> str | None:
        """What the daily cap means for a run of `calls` calls, or None when it fits (or no cap is known)."""
        daily, left = self.daily_limit, self.quota_left()
        if daily is None or left is None or calls <= left:
            return None
        nights = math.ceil((calls - left) / daily) + (1 if left else 0) if daily else 0
        carry = "the ledger carries it over" if carried_over else "without a ledger, rerun with the rows left"
        today = f"{left:,} left today" if left < daily else ""
        text = f"this file needs {calls:,} calls; at {daily:,} a day it takes {nights} nights"
        return f"{text} ({today}); {carry}" if today else f"{text}; {carry}"


def _get(db: sqlite3.Connection, key: str) -> float | None:
    row = db.execute("SELECT value FROM account WHERE key = ?", (key,)).fetchone()
    return None if row is None else float(row[0])


def _put(db: sqlite3.Connection, key: str, value: float | None) -> None:
    if value is None:
        db.execute("DELETE FROM account WHERE key = ?", (key,))
    else:
        db.execute("INSERT OR REPLACE INTO account (key, value) VALUES (?, ?)", (key, value))


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken before reading, so a count and its insert are one step."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite has rolled back already after a full disk or an I/O error
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def _day(now: float) -> float:
    """The day (UTC) a wall-clock time falls in, as a number: LeadSquared's day is assumed UTC."""
    return float(int(now // _DAY))


def _stricter(a: RateLimit, b: RateLimit) -> bool:
    return a.calls / a.seconds < b.calls / b.seconds or (
        a.calls <= b.calls and a.seconds >= b.seconds and a != b
    )


def _window(limit: RateLimit, margin: float | None) -> float:
    # Jitter between our slot and the server's arrival stamp. Measured on a 2-core machine over
    # loopback, with one thread at a time waiting for a slot and starts 2 ms apart (acquire): at
    # most 9 ms idle, 12 ms with both cores busy with other work, where the first requests of a run
    # also open their connections. 15 ms plus 0.5% covers that and keeps 25/1 at 0.975-0.977 of the
    # ceiling (25/5 at 0.991); a throttle widens it for every run on the account (below).
    return limit.seconds + (margin if margin is not None else 0.005 * limit.seconds + 0.015)


def _cap_message(today: int | None, daily: float | None, now: float) -> str:
    reset = datetime.datetime.fromtimestamp((_day(now) + 1) * _DAY, datetime.UTC)
    hours = (reset.timestamp() - now) / 3600
    quota = f"the daily limit of {int(daily):,} calls" if daily is not None else "its calls for the day"
    made = f" ({today:,} made from this machine today)" if today is not None else ""
    return (
        f"this account has used {quota}{made}: the day's quota is spent, so the rows left are not sent; "
        f"run again after {reset:%H:%M} UTC (in about {hours:.0f} h) to send them"
    )
