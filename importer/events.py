"""What a run tells the caller while it works: progress events, and the token that cancels it.

The library reports; front ends present. The CLI turns `Progress` events into a tqdm bar and
installs the signal handlers that call `CancelToken.cancel()`; the web page turns the same events
into a live page and its Cancel button calls the same method. The library installs no signal
handlers of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = ["CancelToken", "Phase", "Progress", "ProgressCallback"]


class Phase(StrEnum):
    """The stage a run is in, in the order a run passes through them."""

    READING = "reading"
    VALIDATING = "validating"
    CHECKING = "checking"  # keys and the account
    RECONCILING = "reconciling"  # looking up rows of uncertain outcome
    SENDING = "sending"
    SETTLING = "settling"
    REPORTING = "reporting"
    FINISHED = "finished"


@dataclass(frozen=True)
class Progress:
    """One report of where a run stands; counts are totals so far, not increments."""

    phase: Phase
    input_path: Path | None = None
    rows_total: int = 0
    rows_posted: int = 0
    rows_failed: int = 0
    rows_skipped: int = 0
    rows_unknown: int = 0
    rows_not_sent: int = 0
    calls_done: int = 0
    calls_planned: int = 0
    seconds_left: float | None = None  # at the rate limit in force
    message: str | None = None  # one human line, e.g. "Checking keys on api-in21...: Asha Rao, org 10001"
    file_index: int = 0  # pattern runs: which file (0-based) of file_count
    file_count: int = 1


ProgressCallback = Callable[[Progress], None]
"""Called with each event; may be called from worker threads (the library serialises the calls
under a lock); must not raise."""


class CancelToken:
    """Held by the caller to stop a run; thread-safe, and safe to call from a signal handler.

    The first `cancel()` stops starting calls: rows not yet sent are reported as not sent, and the
    workbook and summary are written. The second also stops waiting for answers in flight (their
    rows become unknown). Before sending starts, a cancelled run sends nothing.
    """

    def __init__(self) -> None:
        self._count = 0
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.RLock()  # re-entrant: a signal may land while the main thread holds it

    def cancel(self) -> None:
        with self._lock:
            self._count += 1
            callbacks = list(self._callbacks)
        for fn in callbacks:
            fn()

    @property
    def cancelled(self) -> bool:
        return self._count >= 1

    @property
    def urgent(self) -> bool:
        """`cancel()` was called twice."""
        return self._count >= 2

    def add_callback(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call `fn` on each later `cancel()`; returns a function that removes it again."""
        with self._lock:
            self._callbacks.append(fn)

        def remove() -> None:
            with self._lock:
                if fn in self._callbacks:
                    self._callbacks.remove(fn)

        return remove
