"""The run journal: what was posted, so a rerun never posts a row twice and never loses one.

Each valid row gets a content key: a digest of its opportunity id and exact payload, plus its
occurrence among identical rows of the file (three identical rows are three activities). States
move pending -> sending -> posted | failed | unknown; "sending" is committed before a request
leaves, so a crash leaves evidence of every request that may have been made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from importer.errors import ImporterError, UsageError
from importer.gcpause import gc_paused
from importer.records import ActivityBody, PlannedRow

try:  # POSIX: an advisory lock the kernel drops when the process dies, even by SIGKILL
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STATE_DIR_ENV = "LSQ_IMPORT_STATE_DIR"
SCHEMA_VERSION = "1"


class RowState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    POSTED = "posted"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RowKey:
    digest: str
    occurrence: int


class JournalBusyError(ImporterError):
    """Another run holds the journal."""


def content_digest(opportunity_id: str, body: ActivityBody) -> str:
    canonical = json.dumps([opportunity_id, body], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def assign_keys(rows: Iterable[PlannedRow]) -> dict[int, RowKey]:
    """The content key of each row, by source row; identical rows get occurrences 0, 1, 2..."""
    seen: dict[str, int] = {}
    keys = {}
    with gc_paused():
        for row in rows:
            digest = content_digest(row.opportunity_id, row.body)
            occurrence = seen.get(digest, 0)
            seen[digest] = occurrence + 1
            keys[row.source_row] = RowKey(digest, occurrence)
    return keys


class KeysOnDemand(Mapping[int, RowKey]):
    """The keys `assign_keys` gives, each computed when first asked for (thread-safe).

    Against a journal that holds no rows nothing can be skipped, so a first run need not hash
    every row before its first call (about 10 µs a row: 10 s for a million); the sender asks for
    a row's key just before sending it, while it waits for the rate limit anyway. Occurrences are
    counted in the order keys are first asked for, which gives `assign_keys`' numbering: identical
    rows share their opportunity, whose rows the sender sends in input order.
    """

    def __init__(self, rows: Iterable[PlannedRow]) -> None:
        self._rows = {row.source_row: row for row in rows}
        self._keys: dict[int, RowKey] = {}
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def __getitem__(self, source_row: int) -> RowKey:
        with self._lock:
            key = self._keys.get(source_row)
            if key is None:
                row = self._rows[source_row]
                digest = content_digest(row.opportunity_id, row.body)
                key = self._keys[source_row] = RowKey(digest, self._seen.get(digest, 0))
                self._seen[digest] = key.occurrence + 1
            return key

    def __iter__(self) -> Iterator[int]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def default_journal_path(
    input_path: Path, mapping_path: Path, base_url: str, environ: dict[str, str]
) -> Path:
    """One journal per input file, mapping and host, under the user's state folder."""
    identity = "\n".join([str(Path(input_path).resolve()), str(Path(mapping_path).resolve()), base_url])
    name = f"{Path(input_path).stem}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}.sqlite"
    return state_dir(environ) / "journals" / name


def state_dir(environ: dict[str, str]) -> Path:
    if environ.get(STATE_DIR_ENV):
        return Path(environ[STATE_DIR_ENV])
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "lsq-import"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    digest TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    opportunity_id TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    activity_id TEXT,
    message TEXT,
    source_row INTEGER,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (digest, occurrence)
);
CREATE INDEX IF NOT EXISTS rows_by_state ON rows (state);
CREATE INDEX IF NOT EXISTS rows_by_opportunity ON rows (opportunity_id);
"""


class Journal:
    """A SQLite journal (WAL) shared by the sender's threads; one run at a time holds it."""

    def __init__(self, path: Path, connection: sqlite3.Connection, lock_file: object) -> None:
        self.path = path
        self._db = connection
        self._lock_file = lock_file
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, path: str | Path, base_url: str) -> Journal:
        """Open (or create) the journal at `path` for imports to `base_url`; refuse a busy one."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_file = _lock(path)
        except OSError as exc:
            raise UsageError(f"{path}: cannot open the journal ({exc.strerror})") from None
        try:
            connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process crash
                connection.executescript(_SCHEMA)
            except sqlite3.DatabaseError:
                connection.close()
                raise
        except sqlite3.DatabaseError as exc:
            lock_file.close()
            raise UsageError(f"{path}: not a usable lsq-import journal ({exc})") from None
        journal = cls(path, connection, lock_file)
        journal._check_host(base_url)
        return journal

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_host(self, base_url: str) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'host'").fetchone()
        if row is None:
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)", [("host", base_url), ("schema", SCHEMA_VERSION)]
                )
        elif row[0] != base_url:
            self.close()
            raise UsageError(
                f"{self.path}: this journal records imports to {row[0]}, not {base_url}; "
                "use another --journal for another account"
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def states(self, keys: Iterable[RowKey]) -> dict[RowKey, tuple[RowState, str | None]]:
        """The recorded state of each key that the journal knows (a join: journals grow nightly)."""
        with self._lock:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (digest TEXT, occurrence INTEGER)")
            self._db.execute("DELETE FROM wanted")
            self._db.executemany("INSERT INTO wanted VALUES (?, ?)", ((k.digest, k.occurrence) for k in keys))
            found = self._db.execute(
                "SELECT rows.digest, rows.occurrence, state, activity_id FROM wanted "
                "JOIN rows ON rows.digest = wanted.digest AND rows.occurrence = wanted.occurrence"
            ).fetchall()
        return {RowKey(d, o): (RowState(state), activity_id) for d, o, state, activity_id in found}

    def posted_on(self, opportunity_id: str, event: int) -> tuple[set[str], list[ActivityBody]]:
        """Rows of one opportunity and event already posted: their activity ids, and the bodies of
        those posted without a known id (count-only replies), oldest first."""
        with self._lock:
            found = self._db.execute(
                "SELECT body, activity_id FROM rows WHERE opportunity_id = ? AND state = ? ORDER BY rowid",
                (opportunity_id, RowState.POSTED.value),
            ).fetchall()
        ids, without_id = set(), []
        for body_text, activity_id in found:
            body = json.loads(body_text)
            if body.get("ActivityEvent") != event:
                continue
            if activity_id:
                ids.add(activity_id)
            else:
                without_id.append(body)
        return ids, without_id

    def record(self, rows: list[tuple[RowKey, PlannedRow, RowState, str | None, str | None]]) -> None:
        """Write the state of several rows in one transaction: (key, row, state, activity id, message)."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        values = [
            (
                key.digest,
                key.occurrence,
                row.opportunity_id,
                json.dumps(row.body, ensure_ascii=False),
                state.value,
                activity_id,
                message,
                row.source_row,
                now,
            )
            for key, row, state, activity_id, message in rows
        ]
        with self._lock:
            if self._closed:  # a worker abandoned by a second Ctrl-C answers after the run ended
                return
            self._record(values)

    def _record(self, values: list[tuple[object, ...]]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (digest, occurrence) DO UPDATE SET "
                "state = excluded.state, activity_id = COALESCE(excluded.activity_id, rows.activity_id), "
                "message = excluded.message, source_row = excluded.source_row, updated_at = excluded.updated_at",
                values,
            )

    def is_empty(self) -> bool:
        """Whether no run has recorded a row here yet (so no row can be skipped)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM rows LIMIT 1").fetchone() is None


def _lock(path: Path) -> object:
    lock_path = path.with_name(path.name + ".lock")
    handle = lock_path.open("a")
    if fcntl is None:  # pragma: no cover - no advisory locks: best effort
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise JournalBusyError(
            f"{path}: another lsq-import run is using this journal; wait for it to finish "
            "(two runs at once could post rows twice)"
        ) from None
    return handle
