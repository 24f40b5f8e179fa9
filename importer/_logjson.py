"""`--log-format json`: every line the CLI writes becomes one JSON object with a time.

A nightly job sends stdout and stderr to one file (`>> logs/lsq-import.jsonl 2>&1`) that a log
collector reads line by line. Log records, the CLI's own messages (`lsq-import: error: ...`), the
closing lines and the summary all pass through one `JsonLines` stream per output, each line
flushed as it is written, so the file holds nothing but JSON objects, in the order they happened.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

# "lsq-import: error: ..." and friends: the level in the object, the message without the prefix
_PREFIX = re.compile(r"^lsq-import(?: (?P<command>[a-z-]+))?: (?P<level>error|warning|note): ")
_LEVELS = {"error": "error", "warning": "warning", "note": "info"}


def _now(created: float | None = None) -> str:
    moment = datetime.now(UTC) if created is None else datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per log record, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _now(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, ensure_ascii=False, default=str)


def as_json_line(line: str) -> str:
    """`line` as one JSON object with a time: a JSON object gains one if it lacks it."""
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if isinstance(data, dict):
            if "time" in data:
                return line
            return json.dumps({"time": _now(), **data}, ensure_ascii=False, default=str)
    match = _PREFIX.match(line)
    level = _LEVELS[match.group("level")] if match else "info"
    message = line[match.end() :] if match else line
    if match and match.group("command"):
        message = f"{match.group('command')}: {message}"
    entry = {"time": _now(), "level": level, "logger": "lsq-import", "message": message}
    return json.dumps(entry, ensure_ascii=False)


class JsonLines:
    """A text stream that writes every complete line to `stream` as a JSON object, and flushes.

    It is not a terminal, so no progress bar is drawn on it; partial lines wait for their end.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._pending = (self._pending + text).split("\n")
            for line in lines:
                if line.strip():
                    self._stream.write(as_json_line(line.rstrip("\r")) + "\n")
            if lines:
                self._stream.flush()
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def finish(self) -> None:
        """Write a last line left without its newline."""
        self.write("\n" if self._pending else "")

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ...: those of the real stream
        return getattr(self._stream, name)
