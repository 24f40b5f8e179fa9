"""What a person at a terminal sees while a run works: one bar of rows, messages on lines of their own.

The CLI's only front end for people at a terminal (the web page has its own). `ProgressBar` turns
the run's `Progress` events into a tqdm bar of rows posted and failed, whose clock ticks every
half second even while no call completes (a pause after a throttle, a slow answer); the time left
counts down from the run's own estimate at the rate limit in force. `TerminalHandler` prints log
messages (warnings, retries, Ctrl-C) as plain lines above the bar, never into it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm

from importer.events import Phase, Progress

__all__ = ["ProgressBar", "TerminalHandler", "plain_formatter"]

TICK_S = 0.5  # the bar's clock is redrawn at least this often
_BEFORE_SENDING = (Phase.READING, Phase.VALIDATING, Phase.CHECKING, Phase.RECONCILING)


class ProgressBar:
    """The run's `Progress` events as a bar of rows, with a clock that ticks and the time left.

    With no stream it draws nothing and only remembers the last event, which the signal handler
    reads. Messages of events before sending ("Checking keys on ...") are printed as lines.
    """

    def __init__(
        self, stream: TextIO | None, *, clock: Callable[[], float] = time.monotonic, tick: float = TICK_S
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._tick = tick
        self._bar: tqdm[Any] | None = None
        self._kind: str | None = None  # "rows" while sending, "look-ups" while finding opportunities
        self._lock = threading.RLock()
        self._started = 0.0
        self._event_at = 0.0
        self._said: str | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.last: Progress | None = None

    def __call__(self, event: Progress) -> None:
        with self._lock:
            self.last = event
            self._event_at = self._clock()
            if self._stream is None:
                return
            kind = _kind_of(event)
            if kind is None:
                self.close()
                self._say(event.message)
                return
            if kind != self._kind:
                self.close()
                self._open(kind, event)
            self._draw()

    @property
    def sending(self) -> bool:
        """True once the run has begun sending rows (it may have stopped since)."""
        return self.last is not None and self.last.phase not in _BEFORE_SENDING

    def close(self) -> None:
        """Take the bar off the screen (the lines printed above it stay)."""
        with self._lock:
            self._stop.set()
            if self._bar is not None:
                self._bar.close()
            self._bar, self._kind, self._ticker = None, None, None  # the clock sees the stop and ends

    def _say(self, message: str | None) -> None:
        if message and message != self._said and self._stream is not None:
            self._said = message
            _write_line(message, self._stream)

    def _open(self, kind: str, event: Progress) -> None:
        self._kind, self._started = kind, self._clock()
        self._bar = tqdm(
            total=max(1, _total(kind, event)),
            initial=min(_done(kind, event), max(1, _total(kind, event))),
            desc=_describe(kind, event, 0.0, event.seconds_left),
            file=self._stream,
            leave=False,
            dynamic_ncols=True,
            bar_format="{percentage:3.0f}%|{bar}| {desc}",
            mininterval=0,
        )
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_until_closed, daemon=True, name="progress-clock")
        self._ticker.start()

    def _tick_until_closed(self) -> None:
        stop = self._stop
        while not stop.wait(self._tick):
            with self._lock:
                if stop.is_set():
                    return
                self._draw()

    def _draw(self) -> None:
        event, bar = self.last, self._bar
        if event is None or bar is None or self._kind is None:
            return
        now = self._clock()
        bar.total = max(1, _total(self._kind, event))
        bar.n = min(_done(self._kind, event), bar.total)
        left = None if event.seconds_left is None else max(0.0, event.seconds_left - (now - self._event_at))
        bar.set_description_str(_describe(self._kind, event, now - self._started, left), refresh=False)
        bar.refresh()


def _kind_of(event: Progress) -> str | None:
    if event.phase in (Phase.SENDING, Phase.SETTLING):
        return "rows"
    if event.phase is Phase.CHECKING and event.calls_planned:
        return "look-ups"
    return None


def _total(kind: str, event: Progress) -> int:
    return event.rows_total if kind == "rows" else event.calls_planned


def _done(kind: str, event: Progress) -> int:
    if kind == "look-ups":
        return event.calls_done
    return (
        event.rows_posted + event.rows_failed + event.rows_skipped + event.rows_unknown + event.rows_not_sent
    )


def _describe(kind: str, event: Progress, elapsed: float, left: float | None) -> str:
    clock = f"{_interval(elapsed)} so far"
    if left is not None:
        clock += f", {_interval(left)} left at the rate limit"
    if kind == "look-ups":
        return f"looking up opportunities: {event.calls_done:,}/{event.calls_planned:,} calls [{clock}]"
    counts = f"posted {event.rows_posted:,}, failed {event.rows_failed:,}"
    if event.rows_skipped:
        counts += f", skipped {event.rows_skipped:,}"
    if event.rows_unknown:
        counts += f", unknown {event.rows_unknown:,}"
    return f"{_done(kind, event):,}/{event.rows_total:,} rows ({counts}) [{clock}]"


def _interval(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _write_line(text: str, stream: TextIO) -> None:
    """A line of its own, above any bar drawn on `stream` (the bar is redrawn below it)."""
    tqdm.write(text, file=stream)
    stream.flush()


class TerminalHandler(logging.Handler):
    """Log records as plain lines above the progress bar: never run into it, never a traceback."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self.setFormatter(plain_formatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write_line(self.format(record), self.stream)
        except Exception:  # a closed terminal must not stop an import
            self.handleError(record)


class _PlainFormatter(logging.Formatter):
    """The message alone; errors say so. Tracebacks go to --log-file, never to the person."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return f"error: {message}" if record.levelno >= logging.ERROR else message


def plain_formatter() -> logging.Formatter:
    return _PlainFormatter()
