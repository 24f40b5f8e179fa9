"""The ledger: one record per LeadSquared account of every row ever sent there, so no row posts twice.

A row's identity is its content: a digest of its opportunity id and exact payload, plus its
occurrence among identical rows of the input (three identical rows are three activities). The
identity does not depend on the file's path, name or format, nor on the mapping's file name, so
every run on one account (CLI, Python, web page) shares one ledger:
`state_dir / "ledgers" / "<host>-<org id>.sqlite"`.

States move pending -> sending -> posted | failed | unknown; "sending" is committed before a
request leaves, so a crash leaves evidence of every request that may have been made. A posted
row keeps its activity id (when known), when, and the file and row it came from; a failed one
keeps when and why. Runs may overlap: a run claims its rows atomically (BEGIN IMMEDIATE) before
sending; another live run's claim is never sent, a dead run's claim is settled by look-up.

`Ledger` is the interface the rest of the importer uses; `SqliteLedger` is the embedded default.
Older versions kept one journal per input file under `state_dir / "journals"`; the first time an
account's ledger is created, the rows those journals hold for the same host are copied into it,
so upgrading never posts a row twice. The old files are left as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import resource
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from itertools import repeat
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import orjson
import pandas as pd

from importer.errors import ExitStatus, ImporterError, UsageError
from importer.gcpause import gc_paused
from importer.records import ActivityBody, PlannedRow

log = logging.getLogger(__name__)

STATE_DIR_ENV = "LSQ_IMPORT_STATE_DIR"
SCHEMA_VERSION = "2"
HEARTBEAT_S = 15.0  # a live run refreshes its claim this often
DEAD_AFTER_S = 120.0  # a claim whose heartbeat is older belongs to a dead run (other machines)


class RowState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    POSTED = "posted"
    FAILED = "failed"
    UNKNOWN = "unknown"


class RowKey(NamedTuple):
    """A row's identity: the digest of its content, and which of the identical rows it is.

    A NamedTuple: a rerun of a large file makes a million of them, five times faster than a
    frozen dataclass.
    """

    digest: str
    occurrence: int


class Origin(NamedTuple):
    """Where a row came from: the input's file name and the row number the spreadsheet shows."""

    file: str
    row: int


class Entry(NamedTuple):
    """What the ledger knows of one row (NamedTuples: a rerun reads a million of each)."""

    state: RowState
    activity_id: str | None = None
    posted_at: str | None = None
    origin: Origin | None = None
    failed_at: str | None = None
    message: str | None = None
    updated_at: str | None = None


class Claim(StrEnum):
    """What a run may do with a row it asked to claim."""

    SEND = "send"  # claimed: never sent, or rejected before
    CHECK = "check"  # claimed, but an earlier call may have created it: look it up first
    POSTED = "posted"  # already in LeadSquared: skip
    BUSY = "busy"  # another live run is sending it


@dataclass(frozen=True)
class Record:
    """One row's new state, as the sender writes it."""

    key: RowKey
    row: PlannedRow
    state: RowState
    activity_id: str | None = None
    message: str | None = None


class LedgerError(ImporterError):
    """The ledger file cannot be read or written (disk full, read-only, damaged)."""

    exit_status = ExitStatus.LEDGER_ERROR


class Ledger(Protocol):
    """What the importer needs of a ledger; SQLite now, a shared database later."""

    path: Path

    def claim(
        self,
        rows: list[tuple[RowKey, PlannedRow, Origin]],
        *,
        resend: bool = False,
        defer: bool = False,
    ) -> tuple[dict[RowKey, Claim], dict[RowKey, Entry]]: ...
    def claim_deferred(self, keys: Iterable[RowKey]) -> set[RowKey]: ...
    def unsettled_keys(self) -> np.ndarray: ...
    def defer(self, packed: np.ndarray, rows: list[PlannedRow], origins: MappingOf[int, Origin]) -> None: ...
    def entries(self, keys: Iterable[RowKey]) -> dict[RowKey, Entry]: ...
    def rows_held(self) -> int: ...
    def posted_among(self, packed: np.ndarray) -> tuple[np.ndarray, list[tuple[str | None, str]]] | None: ...
    def cached_keys(self, fingerprint: str, rows: int) -> np.ndarray | None: ...
    def cache_keys(self, fingerprint: str, packed: np.ndarray) -> None: ...
    def find_origins(self, origins: Iterable[tuple[str, Origin]]) -> dict[tuple[str, Origin], RowKey]: ...
    def record(self, records: list[Record]) -> None: ...
    def posted_on(self, opportunity_id: str, event: int) -> tuple[set[str], list[ActivityBody]]: ...
    def claimed_by_others(self, keys: Iterable[RowKey]) -> set[RowKey]: ...
    def close(self) -> None: ...


def content_digest(opportunity_id: str, body: ActivityBody) -> str:
    return hashlib.sha256(canonical_bytes(opportunity_id, body)).hexdigest()


def canonical_bytes(opportunity_id: str, body: ActivityBody) -> bytes:
    """The UTF-8 of json.dumps([opportunity_id, body], sort_keys=True, ensure_ascii=False,
    separators=(",", ":")): what a row's identity hashes. Any change to this text changes every
    row's identity, so every ledger already written would post its rows again.

    orjson writes the same bytes for what a body holds (text, integers, booleans, null, lists and
    objects with text keys), five times faster than the standard library (2 us a row instead of
    10: a million-row file's keys in two seconds). For anything it declines (an integer beyond 64
    bits, text that is not valid Unicode) the standard library decides, as it always did.
    """
    try:
        return orjson.dumps([opportunity_id, body], option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _CANONICAL.encode([opportunity_id, body]).encode("utf-8")


# json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":")) without building an encoder
# per call: the reference text of canonical_bytes.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


PACKED = np.dtype("S36")  # a key packed: its digest's 32 bytes, then its occurrence (4 bytes, little-endian)
_PACKED_SIZE = PACKED.itemsize


def packed_keys(rows: Iterable[PlannedRow]) -> np.ndarray:
    """`assign_keys` for a large file, packed in row order (an array of PACKED): no RowKey, no
    hex text per row, so a million rows can be matched against the ledger's posted rows at once."""
    rows = rows if isinstance(rows, list) else list(rows)
    dumps, sort, sha256 = orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.sha256
    with gc_paused():
        try:  # canonical_bytes, inline: a million calls
            digests = [sha256(dumps([row.opportunity_id, row.body], option=sort)).digest() for row in rows]
        except orjson.JSONEncodeError:
            digests = [sha256(canonical_bytes(row.opportunity_id, row.body)).digest() for row in rows]
    packed = np.zeros(len(rows), dtype=[("digest", "S32"), ("occurrence", "<u4")])
    packed["digest"] = np.frombuffer(b"".join(digests), dtype="S32")
    if len(set(digests)) < len(digests):  # identical rows: occurrences 0, 1, 2... in row order
        seen: dict[bytes, int] = {}
        occurrences = packed["occurrence"]
        for index, digest in enumerate(digests):
            occurrences[index] = seen.get(digest, 0)
            seen[digest] = occurrences[index] + 1
    return packed.view(PACKED).ravel()


def unpack_all(packed: np.ndarray) -> list[RowKey]:
    """`unpack` of each packed key, in order: the hex of all the digests made at once."""
    raw = np.ascontiguousarray(packed, dtype=PACKED).view(np.uint8).reshape(-1, _PACKED_SIZE)
    text = raw[:, :32].tobytes().hex()
    occurrences = raw[:, 32:].copy().view("<u4").ravel().tolist()
    digests = [text[at : at + 64] for at in range(0, len(text), 64)]
    return list(map(tuple.__new__, repeat(RowKey), zip(digests, occurrences, strict=True)))  # no frame a key


class LazyKeys(MappingOf[int, RowKey]):
    """The keys of rows by source row, each unpacked from `packed` when first asked for: a
    nightly file's 50,000 new rows make their RowKeys as their calls are made, not before the first."""

    def __init__(self, source_rows: list[int], packed: np.ndarray) -> None:
        self._position = dict(zip(source_rows, range(len(source_rows)), strict=True))
        self._packed = np.ascontiguousarray(packed, dtype=PACKED)
        self._made: dict[int, RowKey] = {}

    def __getitem__(self, source_row: int) -> RowKey:
        key = self._made.get(source_row)
        if key is None:
            key = self._made[source_row] = unpack(self._packed[self._position[source_row]])
        return key

    def __contains__(self, source_row: object) -> bool:
        return source_row in self._position

    def __iter__(self) -> Iterator[int]:
        return iter(self._position)

    def __len__(self) -> int:
        return len(self._position)


def assign_keys(rows: Iterable[PlannedRow]) -> dict[int, RowKey]:
    """The content key of each row, by source row; identical rows get occurrences 0, 1, 2..."""
    rows = list(rows)
    return {row.source_row: key for row, key in zip(rows, unpack_all(packed_keys(rows)), strict=True)}


def pack(key: RowKey) -> bytes:
    return bytes.fromhex(key.digest) + key.occurrence.to_bytes(4, "little")


def unpack(packed: bytes) -> RowKey:
    # numpy gives an S36 item back without its trailing zero bytes (an occurrence of 0 ends in four)
    whole = packed.ljust(_PACKED_SIZE, b"\x00")
    return RowKey(whole[:32].hex(), int.from_bytes(whole[32:], "little"))


def state_dir(environ: dict[str, str]) -> Path:
    if environ.get(STATE_DIR_ENV):
        return Path(environ[STATE_DIR_ENV])
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "lsq-import"


def account_name(base_url: str, org_id: str | None) -> str:
    """'https://API-in21.leadsquared.com/' + org 10001 -> 'api-in21.leadsquared.com-10001'."""
    host = base_url.split("://", 1)[-1].strip("/").lower().replace(":", "_")
    return f"{host}-{org_id}" if org_id else host


def default_ledger_path(base_url: str, org_id: str | None, environ: dict[str, str]) -> Path:
    """One ledger per account: normalised host and org id, under the user's state folder."""
    return state_dir(environ) / "ledgers" / f"{account_name(base_url, org_id)}.sqlite"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, pid INTEGER NOT NULL, hostname TEXT NOT NULL,
    process_started REAL, started_at TEXT NOT NULL, heartbeat REAL NOT NULL, finished INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rows (
    digest TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    opportunity_id TEXT NOT NULL,
    event INTEGER,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    activity_id TEXT,
    posted_at TEXT,
    source_file TEXT,
    source_row INTEGER,
    failed_at TEXT,
    message TEXT,
    claim_run TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (digest, occurrence)
);
CREATE INDEX IF NOT EXISTS rows_by_opportunity ON rows (opportunity_id, event);
CREATE INDEX IF NOT EXISTS rows_by_origin ON rows (source_file, source_row);
CREATE INDEX IF NOT EXISTS rows_by_claim ON rows (claim_run) WHERE claim_run IS NOT NULL;
-- the rows not posted (pending, sending, failed, unknown): usually few, read whole by a large file's claim
CREATE INDEX IF NOT EXISTS rows_unsettled ON rows (digest, occurrence) WHERE state != 'posted';
-- a row posted by a writer that does not keep posted_keys (a version before it) makes it untrusted:
-- it is rebuilt at the next open. `record` keeps the index and says so again in the same transaction.
CREATE TRIGGER IF NOT EXISTS rows_posted_unindexed AFTER UPDATE OF state ON rows
    WHEN new.state = 'posted' AND old.state != 'posted'
    BEGIN UPDATE meta SET value = '0' WHERE key = 'posted_index'; END;
CREATE TRIGGER IF NOT EXISTS rows_inserted_posted AFTER INSERT ON rows WHEN new.state = 'posted'
    BEGIN UPDATE meta SET value = '0' WHERE key = 'posted_index'; END;
-- the keys of the posted rows, packed (PACKED) in chunks with the file they came from and the day:
-- a rerun of a large file learns which of its rows are posted without reading the rows table
CREATE TABLE IF NOT EXISTS posted_keys (chunk INTEGER PRIMARY KEY, file TEXT, day TEXT NOT NULL, keys BLOB NOT NULL);
-- the prefixes (`_prefix`) of a large chunk's keys, in its sorted order: a nightly file's keys are
-- searched in 8 bytes a posted row, and only the few that match read whole
CREATE TABLE IF NOT EXISTS posted_prefixes (chunk INTEGER PRIMARY KEY, prefixes BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS posted_keys_deleted AFTER DELETE ON posted_keys
    BEGIN DELETE FROM posted_prefixes WHERE chunk = old.chunk; END;
-- the packed keys of a file's rows, by a fingerprint of everything they are made of (key_cache.py)
CREATE TABLE IF NOT EXISTS key_cache (fingerprint TEXT PRIMARY KEY, used_at TEXT NOT NULL, keys BLOB NOT NULL);
"""
POSTED_INDEX = "posted_index"  # meta: "1" while posted_keys holds every posted row (else rebuilt on open)
KEY_CACHE_ENTRIES = 8  # the files whose keys are kept
COMPACT_FROM_CHUNKS = 1000  # at close, chunks of posted keys are merged by file and day beyond this


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _now_precise() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _process_started(pid: int) -> float | None:
    """The start time of a process (clock ticks since boot, Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return float(stat.rsplit(")", 1)[1].split()[19])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SqliteLedger:
    """The ledger in one SQLite file (WAL), shared by the sender's threads and by concurrent runs."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.run_id = uuid.uuid4().hex
        self._db = connection
        self._lock = threading.Lock()
        self._closed = False
        self._stop_heartbeat = threading.Event()
        # claimed, written when sent, by packed key: the row, and where it came from (its own
        # origin, else that of its row in the file whose rows `defer` was given)
        self._deferred: dict[bytes, PlannedRow] = {}
        self._deferred_origin: dict[bytes, Origin] = {}
        self._deferred_file: MappingOf[int, Origin] | None = None

    @classmethod
    def open(
        cls,
        path: str | Path,
        base_url: str,
        org_id: str | None = None,
        *,
        environ: dict[str, str] | None = None,
    ) -> SqliteLedger:
        """Open (or create) the ledger at `path` for the account (host, org); register this run."""
        path = Path(path)
        try:
            created = not path.exists() and _create(path, account_name(base_url, org_id))
        except (OSError, sqlite3.Error) as exc:
            raise _trouble(path, exc) from None
        if path.is_file() and path.stat().st_size == 0:
            # a truncated ledger taken as new would post every row of its account again
            raise LedgerError(
                f"{path}: the ledger is empty (0 bytes), so it no longer knows which rows were sent. "
                "Restore it from a backup and run again; only if no import was ever made to this "
                "account from this machine, delete the file to start a new ledger"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise _trouble(path, exc) from None
        ledger = cls(path, connection)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process crash
            # a ledger grows by every row sent: a page cache that holds the key index of a million
            # rows, and the key lists of a large file's look-ups in memory, not in a temp file
            connection.execute("PRAGMA cache_size=-131072")  # KiB: 128 MiB at most, used as needed
            connection.execute("PRAGMA temp_store=MEMORY")
            connection.executescript(_SCHEMA)
            ledger._check_account(base_url, org_id)
            if created and environ is not None:
                ledger._adopt_journals(state_dir(environ) / "journals", base_url)
            ledger._index_posted()
            ledger._register()
        except sqlite3.Error as exc:
            connection.close()
            raise _trouble(path, exc) from None
        except ImporterError:
            connection.close()
            raise
        threading.Thread(target=ledger._beat, daemon=True, name="ledger-heartbeat").start()
        return ledger

    def close(self) -> None:
        """End this run: release its claims (rows left are anyone's), mark it finished."""
        self._stop_heartbeat.set()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error), self._transaction():
                self._db.execute("UPDATE rows SET claim_run = NULL WHERE claim_run = ?", (self.run_id,))
                self._db.execute("UPDATE runs SET finished = 1 WHERE run_id = ?", (self.run_id,))
            with contextlib.suppress(sqlite3.Error):
                self._compact_posted()
            self._db.close()

    def __enter__(self) -> SqliteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- opening

    def _check_account(self, base_url: str, org_id: str | None) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        account = account_name(base_url, org_id)
        if not meta:
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)", [("account", account), ("schema", SCHEMA_VERSION)]
                )
            return
        if meta.get("schema") != SCHEMA_VERSION or "account" not in meta:
            raise LedgerError(
                f"{self.path}: not an lsq-import ledger (an older journal?); give another --journal path"
            )
        if meta["account"] != account:
            raise UsageError(
                f"{self.path}: this ledger records imports to {meta['account']}, not {account}; "
                "use another --journal for another account"
            )

    def _adopt_journals(self, folder: Path, base_url: str) -> None:
        """Copy what the per-file journals of older versions know for this host into a new ledger."""
        if not folder.is_dir():
            return
        for journal in sorted(folder.glob("*.sqlite")):
            try:
                self._adopt(journal, base_url)
            except sqlite3.Error as exc:
                log.warning(
                    "%s: old journal not read (%s); its rows are looked up when sent again", journal, exc
                )

    def _adopt(self, journal: Path, base_url: str) -> None:
        self._db.execute("ATTACH DATABASE ? AS old", (f"file:{journal}?mode=ro",))
        try:
            host = self._db.execute("SELECT value FROM old.meta WHERE key = 'host'").fetchone()
            if host is None or host[0].lower().rstrip("/") != base_url.lower().rstrip("/"):
                return
            name = journal.stem.rsplit("-", 1)[0]
            with self._transaction():
                copied = self._db.execute(
                    "INSERT OR IGNORE INTO rows (digest, occurrence, opportunity_id, event, body, state, "
                    "activity_id, posted_at, source_file, source_row, message, updated_at) "
                    "SELECT digest, occurrence, opportunity_id, json_extract(body, '$.ActivityEvent'), body, "
                    "CASE state WHEN 'pending' THEN 'pending' WHEN 'failed' THEN 'failed' "
                    "WHEN 'posted' THEN 'posted' ELSE 'unknown' END, activity_id, "
                    "CASE state WHEN 'posted' THEN updated_at END, ?, source_row, message, updated_at "
                    "FROM old.rows",
                    (name,),
                ).rowcount
            log.info("%s: %d rows of the old journal copied into the ledger %s", journal, copied, self.path)
        finally:
            self._db.execute("DETACH DATABASE old")

    def _index_posted(self) -> None:
        """Fill posted_keys from the rows table, when it is new (an older ledger) or was dropped."""
        if self._meta(POSTED_INDEX) == "1":
            return
        with self._transaction():
            if self._meta(POSTED_INDEX) == "1":  # another run did it meanwhile
                return
            self._db.execute("DELETE FROM posted_keys")
            found = self._db.execute(
                "SELECT digest, occurrence, source_file, substr(coalesce(posted_at, updated_at), 1, 10) "
                "FROM rows WHERE state = 'posted'"
            )
            chunks: dict[tuple[str | None, str], bytearray] = {}
            for digest, occurrence, file, day in found:
                chunk = chunks.setdefault((file, day), bytearray())
                chunk += bytes.fromhex(digest)
                chunk += occurrence.to_bytes(4, "little")
            self._add_posted(chunks)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", (POSTED_INDEX,))

    def _compact_posted(self) -> None:
        """One chunk per file and day instead of one per call: what a rerun reads stays small."""
        if self._db.execute("SELECT count(*) FROM posted_keys").fetchone()[0] <= COMPACT_FROM_CHUNKS:
            return
        with self._transaction():
            chunks: dict[tuple[str | None, str], bytearray] = {}
            for file, day, keys in self._db.execute("SELECT file, day, keys FROM posted_keys ORDER BY chunk"):
                chunks.setdefault((file, day), bytearray()).extend(keys)
            self._db.execute("DELETE FROM posted_keys")
            self._add_posted(chunks)

    def _meta(self, key: str) -> str | None:
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if found is None else str(found[0])

    def _register(self) -> None:
        pid = os.getpid()
        with self._transaction():
            self._db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, 0)",
                (self.run_id, pid, socket.gethostname(), _process_started(pid), _now(), time.time()),
            )

    def _beat(self) -> None:
        while not self._stop_heartbeat.wait(HEARTBEAT_S):
            with self._lock:
                if self._closed:
                    return
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute(
                        "UPDATE runs SET heartbeat = ? WHERE run_id = ?", (time.time(), self.run_id)
                    )

    # --- reading

    def entries(self, keys: Iterable[RowKey]) -> dict[RowKey, Entry]:
        """What the ledger knows of each key it holds."""
        with self._guard():
            return {key: _entry(found) for key, found in self._rows_of(list(keys), _ENTRY_COLUMNS).items()}

    def _rows_of(self, keys: list[RowKey], columns: str) -> dict[RowKey, tuple[object, ...]]:
        """The given columns of the rows the ledger holds among `keys`, by key.

        A few keys against a large ledger: one indexed join on (digest, occurrence). Keys that are
        a large part of the ledger (a rerun of a big file): one sequential pass over the ledger,
        matched in memory, as a million index searches cost several times more.
        """
        held = self._db.execute("SELECT max(rowid) FROM rows").fetchone()[0] or 0
        if len(keys) * _SCAN_FROM_SHARE >= held:
            wanted = {key: key for key in keys}  # a (digest, occurrence) tuple finds the caller's key
            scan = self._db.execute(f"SELECT digest, occurrence, {columns} FROM rows")  # noqa: S608 - our own column list
            return {key: found[2:] for found in scan if (key := wanted.get(found[:2])) is not None}
        self._fill_wanted(keys)
        joined = self._db.execute(
            f"SELECT r.digest, r.occurrence, {columns} FROM temp.wanted w "  # noqa: S608 - our own column list
            "JOIN rows r ON r.digest = w.digest AND r.occurrence = w.occurrence"
        )
        return {RowKey(found[0], found[1]): found[2:] for found in joined}

    def rows_held(self) -> int:
        """About how many rows the ledger holds (its highest rowid): cheap, for choosing a plan."""
        with self._guard():
            return int(self._db.execute("SELECT max(rowid) FROM rows").fetchone()[0] or 0)

    def posted_among(self, packed: np.ndarray) -> tuple[np.ndarray, list[tuple[str | None, str]]] | None:
        """Which of these packed keys are posted: for each, the index of the (file, day) it was
        posted from in the list returned, or -1. None when the index of posted rows is not usable.

        One read of posted_keys: for a rerun of a large file, instead of a million rows read from
        the rows table. A large chunk is kept sorted with its keys' prefixes beside it, so a
        nightly file's 50,000 keys are searched in 8 MB, not sorted against 36. A key absent here
        may still be in the ledger (pending, failed): the caller claims those rows as usual.
        """
        with self._guard():
            self._db.execute("BEGIN")
            try:
                if self._meta(POSTED_INDEX) != "1":
                    return None
                return self._search_posted(np.ascontiguousarray(packed, dtype=PACKED))
            finally:
                self._db.execute("COMMIT")

    def _search_posted(self, wanted: np.ndarray) -> tuple[np.ndarray, list[tuple[str | None, str]]]:
        """posted_among's search, in its read transaction: chunk by chunk."""
        chunks = self._db.execute(
            "SELECT k.chunk, k.file, k.day, p.chunk IS NOT NULL, "
            "CASE WHEN p.chunk IS NULL AND length(k.keys) < ?1 THEN k.keys END "
            "FROM posted_keys k LEFT JOIN posted_prefixes p ON p.chunk = k.chunk",
            (_BLOB_READ_FROM,),
        ).fetchall()
        places: dict[tuple[str | None, str], int] = {}
        where = np.full(len(wanted), -1, dtype=np.int64)
        wanted_prefix = _prefix(wanted)
        loose: list[tuple[bytes, int]] = []
        for chunk, file, day, has_prefixes, small in chunks:
            owner = places.setdefault((file, day), len(places))
            if has_prefixes:
                found = self._search_chunk(chunk, wanted, wanted_prefix)
                where[(found >= 0) & (where < 0)] = owner
                continue
            # a small chunk, or one an older version wrote (unsorted): all of them merged and matched
            loose.append((small if small is not None else self._blob("posted_keys", "keys", chunk), owner))
        if loose:
            held = np.frombuffer(b"".join(keys for keys, _owner in loose), dtype=PACKED)
            owner_of_held = np.repeat(
                np.asarray([owner for _keys, owner in loose], dtype=np.int64),
                [len(keys) // _PACKED_SIZE for keys, _owner in loose],
            )
            position = key_positions(held, wanted)
            fill = (position >= 0) & (where < 0)
            where[fill] = owner_of_held[position[fill]]
        return where, list(places)

    def _search_chunk(self, chunk: int, wanted: np.ndarray, wanted_prefix: np.ndarray) -> np.ndarray:
        """`_positions_sorted` in a chunk with kept prefixes: its keys are read whole only when
        many match (a rerun), else just the few matching ones (a nightly file: usually none)."""
        prefix = np.frombuffer(self._blob("posted_prefixes", "prefixes", chunk), dtype="<u8")
        found = np.full(len(wanted), -1, dtype=np.int64)
        if not len(prefix):
            return found
        low, hit, shared = _prefix_hits(prefix, wanted_prefix)
        if len(shared) or len(hit) * _READ_WHOLE_FROM_SHARE >= len(prefix):
            held = np.frombuffer(self._blob("posted_keys", "keys", chunk), dtype=PACKED)
            return _positions_sorted(held, prefix, wanted, wanted_prefix)
        with self._db.blobopen("posted_keys", "keys", chunk, readonly=True) as blob:
            candidates = []
            for at in low[hit].tolist():
                blob.seek(at * _PACKED_SIZE)
                candidates.append(blob.read(_PACKED_SIZE))
        same = np.frombuffer(b"".join(candidates), dtype=PACKED) == wanted[hit]
        found[hit[same]] = low[hit[same]]
        return found

    def _blob(self, table: str, column: str, chunk: int) -> bytes:
        """A whole blob, read directly: twice the speed of a SELECT's copy (36 MB a million keys)."""
        with self._db.blobopen(table, column, chunk, readonly=True) as blob:
            return blob.read()

    def cached_keys(self, fingerprint: str, rows: int) -> np.ndarray | None:
        """The packed keys kept for this fingerprint (key_cache.py), if they are for `rows` rows."""
        with self._guard():
            found = self._db.execute(
                "SELECT keys FROM key_cache WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            if found is None or len(found[0]) != rows * _PACKED_SIZE:
                return None
            with self._transaction():
                self._db.execute(
                    "UPDATE key_cache SET used_at = ? WHERE fingerprint = ?", (_now_precise(), fingerprint)
                )
        return np.frombuffer(found[0], dtype=PACKED)

    def cache_keys(self, fingerprint: str, packed: np.ndarray) -> None:
        """Keep a file's packed keys under its fingerprint; only the latest few files are kept."""
        with self._guard(), self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO key_cache VALUES (?, ?, ?)",
                (fingerprint, _now_precise(), np.ascontiguousarray(packed, dtype=PACKED).tobytes()),
            )
            self._db.execute(
                "DELETE FROM key_cache WHERE fingerprint NOT IN "
                "(SELECT fingerprint FROM key_cache ORDER BY used_at DESC LIMIT ?)",
                (KEY_CACHE_ENTRIES,),
            )

    def find_origins(self, origins: Iterable[tuple[str, Origin]]) -> dict[tuple[str, Origin], RowKey]:
        """The key recorded for (digest, origin): how a re-fed error workbook finds its rows."""
        result: dict[tuple[str, Origin], RowKey] = {}
        with self._guard():
            for digest, origin in origins:
                hit = self._db.execute(
                    "SELECT occurrence FROM rows WHERE source_file = ? AND source_row = ? AND digest = ?",
                    (origin.file, origin.row, digest),
                ).fetchone()
                if hit is not None:
                    result[(digest, origin)] = RowKey(digest, hit[0])
        return result

    def posted_on(self, opportunity_id: str, event: int) -> tuple[set[str], list[ActivityBody]]:
        """Rows of one opportunity and event already posted: their activity ids, and the bodies of
        those posted without a known id (count-only replies), oldest first."""
        with self._guard():
            found = self._db.execute(
                "SELECT body, activity_id FROM rows WHERE opportunity_id = ? AND event = ? AND state = ? "
                "ORDER BY rowid",
                (opportunity_id, event, RowState.POSTED.value),
            ).fetchall()
        ids = {activity_id for _body, activity_id in found if activity_id}
        return ids, [json.loads(body) for body, activity_id in found if not activity_id]

    def claimed_by_others(self, keys: Iterable[RowKey]) -> set[RowKey]:
        """Which of `keys` a live other run still holds (and has not settled)."""
        with self._guard():
            self._fill_wanted(keys)
            found = self._db.execute(
                "SELECT r.digest, r.occurrence, r.claim_run FROM temp.wanted w JOIN rows r "
                "ON r.digest = w.digest AND r.occurrence = w.occurrence "
                "WHERE r.claim_run IS NOT NULL AND r.claim_run != ? AND r.state != 'posted'",
                (self.run_id,),
            ).fetchall()
            alive = self._alive({run for _d, _o, run in found})
        return {RowKey(d, o) for d, o, run in found if run in alive}

    # --- claiming and recording

    def claim(
        self,
        rows: list[tuple[RowKey, PlannedRow, Origin]],
        *,
        resend: bool = False,
        defer: bool = False,
    ) -> tuple[dict[RowKey, Claim], dict[RowKey, Entry]]:
        """Claim every row this run may send, in one transaction; say what may be done with each,
        and what the ledger knew of the rows it already held (read in the same pass).

        The rows the ledger holds are found by key alone (one indexed join); only the rows it does
        not hold yet have their payload written, so a rerun of a file writes no payloads at all.
        `defer`: those new rows are written when their call is about to be made (`claim_deferred`),
        not before the first call: a nightly file of 50,000 new rows starts sending at once.
        """
        now = _now()
        with self._guard(), self._transaction():
            existing = self._rows_of([key for key, _row, _origin in rows], f"claim_run, {_ENTRY_COLUMNS}")
            alive = self._alive(
                {str(found[0]) for found in existing.values() if found[0] not in (None, self.run_id)}
            )
            known = {key: _entry(found[1:]) for key, found in existing.items()}
            claims = {
                key: _claim_of(known[key].state, found[0], alive, resend=resend)  # type: ignore[arg-type]
                for key, found in existing.items()
            }
            new = [(key, row, origin) for key, row, origin in rows if key not in claims]
            if defer:
                for key, row, origin in new:
                    packed = pack(key)
                    self._deferred[packed] = row
                    self._deferred_origin[packed] = origin
            else:
                self._db.executemany(_INSERT_PENDING, (self._pending(item, now) for item in new))
            if resend and any(entry.state is RowState.POSTED for entry in known.values()):
                # posted rows sent again may end failed: posted_keys no longer says only the truth
                self._db.execute("DELETE FROM posted_keys")
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, '0')", (POSTED_INDEX,))
            taken = [(self.run_id, k.digest, k.occurrence) for k, c in claims.items() if c in _MINE]
            self._db.executemany("UPDATE rows SET claim_run = ? WHERE digest = ? AND occurrence = ?", taken)
        return {key: claims.get(key, Claim.SEND) for key, _row, _origin in rows}, known

    def unsettled_keys(self) -> np.ndarray:
        """The packed keys of every row the ledger holds not posted (pending, sending, failed,
        unknown): the rows of a partial index, usually few."""
        with self._guard():
            found = self._db.execute(
                "SELECT digest, occurrence FROM rows INDEXED BY rows_unsettled WHERE state != 'posted'"
            ).fetchall()
        return np.array([pack(RowKey(digest, occurrence)) for digest, occurrence in found], dtype=PACKED)

    def defer(self, packed: np.ndarray, rows: list[PlannedRow], origins: MappingOf[int, Origin]) -> None:
        """Claim rows the ledger does not hold (posted_among and unsettled_keys said so) without
        reading it: each is written just before its call (`claim_deferred`), and one another run
        wrote meanwhile, posted or not, is left to that run. A nightly file's 50,000 new rows cost
        a dictionary entry each under their packed key, not a search of a ledger of a million."""
        items = np.ascontiguousarray(packed, dtype=PACKED).view(f"V{_PACKED_SIZE}").tolist()  # whole bytes
        with self._guard():
            self._deferred.update(zip(items, rows, strict=True))
            if self._deferred_file is None or self._deferred_file is origins:
                self._deferred_file = origins
            else:  # rows of a second file: each keeps its own origin
                self._deferred_origin.update(
                    zip(items, (origins[row.source_row] for row in rows), strict=True)
                )

    def claim_deferred(self, keys: Iterable[RowKey]) -> set[RowKey]:
        """Write the deferred claims of these keys (a call's rows, just before it is made); returns
        the keys another run wrote first meanwhile: those rows are its to send, not this run's."""
        with self._guard():
            wanted = []
            for key in keys:
                packed = pack(key)
                row = self._deferred.pop(packed, None)
                if row is not None:
                    origin = self._deferred_origin.pop(packed, None)
                    if origin is None:
                        assert self._deferred_file is not None
                        origin = self._deferred_file[row.source_row]
                    wanted.append((key, row, origin))
            if not wanted:
                return set()
            now, lost = _now(), set()
            with self._transaction():
                for key, row, origin in wanted:
                    if (
                        self._db.execute(_INSERT_PENDING, self._pending((key, row, origin), now)).rowcount
                        == 0
                    ):
                        lost.add(key)
        return lost

    def _pending(self, item: tuple[RowKey, PlannedRow, Origin], now: str) -> tuple[object, ...]:
        key, row, origin = item
        return (
            key.digest,
            key.occurrence,
            row.opportunity_id,
            row.body.get("ActivityEvent"),
            json.dumps(row.body, ensure_ascii=False),
            origin.file,
            origin.row,
            self.run_id,
            now,
        )

    def record(self, records: list[Record]) -> None:
        """Write the state of several rows in one transaction."""
        now = _now()
        values = [
            (
                r.state.value,
                r.activity_id,
                now if r.state is RowState.POSTED else None,
                now if r.state is RowState.FAILED else None,
                r.message,
                None if r.state in (RowState.POSTED, RowState.FAILED) else self.run_id,
                now,
                r.key.digest,
                r.key.occurrence,
            )
            for r in records
        ]
        with self._guard():
            if self._closed:  # a worker abandoned by a second Ctrl-C answers after the run ended
                return
            with self._transaction():
                indexed = self._meta(POSTED_INDEX) == "1"
                self._db.executemany(
                    "UPDATE rows SET state = ?1, activity_id = COALESCE(?2, activity_id), "
                    "posted_at = COALESCE(?3, CASE WHEN ?1 = 'posted' THEN posted_at END), "
                    "failed_at = COALESCE(?4, failed_at), message = COALESCE(?5, message), "
                    "claim_run = ?6, updated_at = ?7 WHERE digest = ?8 AND occurrence = ?9",
                    values,
                )
                self._index_new_posts([r.key for r in records if r.state is RowState.POSTED], now[:10])
                if indexed:  # the trigger took these posts for an older writer's
                    self._db.execute("UPDATE meta SET value = '1' WHERE key = ?", (POSTED_INDEX,))

    # --- helpers

    def _index_new_posts(self, keys: list[RowKey], day: str) -> None:
        """Add rows just recorded posted to posted_keys, by the file each came from."""
        chunks: dict[tuple[str | None, str], bytearray] = {}
        for key in keys:
            found = self._db.execute(
                "SELECT source_file FROM rows WHERE digest = ? AND occurrence = ?", key
            ).fetchone()
            if found is not None:  # a key the ledger does not hold was not recorded
                chunks.setdefault((found[0], day), bytearray()).extend(pack(key))
        self._add_posted(chunks)

    def _add_posted(self, chunks: dict[tuple[str | None, str], bytearray]) -> None:
        """Each chunk written sorted by its keys' prefixes (`_prefix`): posted_among searches a
        large one as it is."""
        for (file, day), keys in chunks.items():
            ordered = _by_prefix(keys)
            chunk = self._db.execute(
                "INSERT INTO posted_keys (file, day, keys) VALUES (?, ?, ?)", (file, day, ordered)
            ).lastrowid
            if len(ordered) >= _SEARCH_FROM * _PACKED_SIZE:
                prefixes = _prefix(np.frombuffer(ordered, dtype=PACKED)).tobytes()
                self._db.execute("INSERT OR REPLACE INTO posted_prefixes VALUES (?, ?)", (chunk, prefixes))

    def _fill_wanted(self, keys: Iterable[RowKey]) -> None:
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (digest TEXT, occurrence INTEGER)")
        self._db.execute("DELETE FROM temp.wanted")
        self._db.executemany(
            "INSERT INTO temp.wanted VALUES (?, ?)", ((k.digest, k.occurrence) for k in keys)
        )

    def _alive(self, run_ids: set[str]) -> set[str]:
        """Which of these runs are still running: same machine by pid and start time, else heartbeat."""
        alive = set()
        here = socket.gethostname()
        for run_id in run_ids:
            found = self._db.execute(
                "SELECT pid, hostname, process_started, heartbeat, finished FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if found is None or found[4]:
                continue
            pid, host, started, heartbeat, _finished = found
            if host == here:
                if _pid_alive(pid) and (started is None or _process_started(pid) in (None, started)):
                    alive.add(run_id)
            elif time.time() - heartbeat < DEAD_AFTER_S:
                alive.add(run_id)
        return alive

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialise the threads, and turn any SQLite failure into one clear LedgerError."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise _trouble(self.path, exc) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            # after a full disk or an I/O error SQLite has rolled back already; a ROLLBACK then
            # fails ("no transaction is active") and would hide the error the user must see
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise


_MINE = (Claim.SEND, Claim.CHECK)
_INSERT_PENDING = (
    "INSERT OR IGNORE INTO rows (digest, occurrence, opportunity_id, event, body, state, "
    "source_file, source_row, claim_run, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)"
)


def _create(path: Path, account: str) -> bool:
    """Make a new ledger appear whole: built in a temp file beside it, then linked into place, so
    a run starting beside another never finds a half-made (0-byte) one. False: another run won."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    os.close(handle)
    temp = Path(name)
    try:
        db = sqlite3.connect(temp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # kept in the file's header
            db.executescript(_SCHEMA)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)", [("account", account), ("schema", SCHEMA_VERSION)]
            )
        finally:
            db.close()
        try:
            os.link(temp, path)  # atomic, and fails if the ledger exists by now
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: a narrow race instead of none
            if path.exists():
                return False
            os.replace(temp, path)
        return True
    finally:
        for leftover in (temp, temp.with_name(temp.name + "-wal"), temp.with_name(temp.name + "-shm")):
            leftover.unlink(missing_ok=True)


def key_positions(held: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each of `wanted` (packed keys), a position in `held` holding the same key, or -1.

    The smaller side is sorted by 8 bytes of each key (digest and occurrence mixed) and the other
    searched in it: a nightly file of 50,000 rows against a million posted sorts 50,000, not a
    million. Every match is confirmed on all 36 bytes; keys sharing those 8 bytes (a key posted
    twice, or by chance) are settled one by one.
    """
    found = np.full(len(wanted), -1, dtype=np.int64)
    if not len(held) or not len(wanted):
        return found
    if len(wanted) < len(held):
        held_at, wanted_at = _matches(wanted, held)  # wanted sorted, held searched
    else:
        wanted_at, held_at = _matches(held, wanted)
    found[wanted_at] = held_at
    return found


def _matches(small: np.ndarray, large: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i in large, j in small) of equal keys."""
    small_prefix, large_prefix = _prefix(small), _prefix(large)
    table = pd.Index(small_prefix)
    if table.is_unique:  # the usual case: a hash table of the small side, 10x a sorted search
        place = table.get_indexer(large_prefix)
        one = np.flatnonzero(place >= 0)
        same = small[place[one]] == large[one]
        return one[same], place[one[same]]
    order = np.argsort(small_prefix, kind="stable")
    small_prefix = small_prefix[order]
    low = np.searchsorted(small_prefix, large_prefix, "left")
    high = np.searchsorted(small_prefix, large_prefix, "right")
    one = np.flatnonzero(high - low == 1)
    place = order[low[one]]
    same = small[place] == large[one]
    large_at, small_at = [one[same]], [place[same]]
    for index in np.flatnonzero(high - low > 1).tolist():
        for place_ in order[low[index] : high[index]].tolist():
            if small[place_] == large[index]:  # every one: `wanted` may hold a key twice
                large_at.append(np.array([index]))
                small_at.append(np.array([place_]))
    return np.concatenate(large_at), np.concatenate(small_at)


def _prefix(packed: np.ndarray) -> np.ndarray:
    """8 bytes of each packed key: the digest's first 8, mixed with the occurrence."""
    keys = np.ascontiguousarray(packed, dtype=PACKED)
    count = len(keys)
    if not count:
        return np.zeros(0, dtype=np.uint64)
    # strided views of the keys' bytes: no copy of a million keys
    digest = np.ndarray((count,), dtype="<u8", buffer=keys, strides=(_PACKED_SIZE,))
    occurrence = np.ndarray((count,), dtype="<u4", buffer=keys, offset=32, strides=(_PACKED_SIZE,))
    mixed: np.ndarray = digest ^ (occurrence.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    return mixed


def _by_prefix(keys: bytes | bytearray) -> bytes:
    """Packed keys reordered by their prefixes."""
    packed = np.frombuffer(bytes(keys), dtype=PACKED)
    return packed[np.argsort(_prefix(packed), kind="stable")].tobytes()


def _prefix_hits(prefix: np.ndarray, wanted_prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In keys sorted by `prefix`: where each wanted prefix would sit (`low`), the wanted keys whose
    prefix is there (`hit`), and those of them whose prefix the next key shares too (`shared`)."""
    low = np.minimum(np.searchsorted(prefix, wanted_prefix, "left"), len(prefix) - 1)
    hit = np.flatnonzero(prefix[low] == wanted_prefix)
    after = np.minimum(low[hit] + 1, len(prefix) - 1)
    shared = hit[(after > low[hit]) & (prefix[after] == wanted_prefix[hit])]
    return low, hit, shared


def _positions_sorted(
    held: np.ndarray, prefix: np.ndarray, wanted: np.ndarray, wanted_prefix: np.ndarray
) -> np.ndarray:
    """`key_positions` in keys already sorted by `prefix` (theirs): one search per wanted key."""
    found = np.full(len(wanted), -1, dtype=np.int64)
    if not len(prefix):
        return found
    low, hit, shared = _prefix_hits(prefix, wanted_prefix)
    same = held[low[hit]] == wanted[hit]
    found[hit[same]] = low[hit[same]]
    for index in shared[found[shared] < 0].tolist():  # keys sharing a prefix: the run, one by one
        at = int(low[index])
        while at < len(prefix) and prefix[at] == wanted_prefix[index]:
            if held[at] == wanted[index]:
                found[index] = at
                break
            at += 1
    return found


_SEARCH_FROM = 4096  # keys: a chunk of posted_keys this large keeps its prefixes, to be searched alone
_READ_WHOLE_FROM_SHARE = 64  # keys matching 1/64 of a chunk's prefixes: read its keys whole
_BLOB_READ_FROM = 1 << 20  # bytes: a chunk of posted_keys this large is read with blobopen
_STATES = {state.value: state for state in RowState}  # RowState(text) costs a microsecond a row
_SCAN_FROM_SHARE = 8  # keys at least 1/8 of the ledger's rows: read it through rather than search it
_ENTRY_COLUMNS = "state, activity_id, posted_at, source_file, source_row, failed_at, message, updated_at"


def _entry(found: tuple[object, ...]) -> Entry:
    state, activity_id, posted_at, file, row, failed_at, message, updated = found
    return Entry(
        _STATES[state],  # type: ignore[index]
        activity_id,  # type: ignore[arg-type]
        posted_at,  # type: ignore[arg-type]
        Origin(file, row) if file is not None else None,  # type: ignore[arg-type]
        failed_at,  # type: ignore[arg-type]
        message,  # type: ignore[arg-type]
        updated,  # type: ignore[arg-type]
    )


def _claim_of(state: RowState, run: str | None, alive: set[str], *, resend: bool) -> Claim:
    if run is not None and run in alive:
        return Claim.BUSY
    if state is RowState.POSTED:
        return Claim.SEND if resend else Claim.POSTED
    if state in (RowState.SENDING, RowState.UNKNOWN):
        return Claim.SEND if resend else Claim.CHECK
    return Claim.SEND


def _file_size_limited() -> bool:
    return resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY


def _trouble(path: Path, exc: BaseException) -> LedgerError:
    text = str(exc).lower()
    if "full" in text or getattr(exc, "errno", None) == 28:
        advice = "the disk is full: free some space and run again"
    elif getattr(exc, "sqlite_errorname", None) == "SQLITE_IOERR_WRITE" and _file_size_limited():
        # write() gave EFBIG, which SQLite reports as a mere "disk I/O error"
        advice = "the file reached this process's file size limit (ulimit -f): raise the limit and run again"
    elif "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
        advice = (
            "the file or its folder is read-only: make it writable (or pass --journal PATH) and run again"
        )
    elif "malformed" in text or "not a database" in text:
        advice = "the file is damaged: restore it from a backup, or move it aside to start a new ledger"
    else:
        advice = "check the file and its folder, then run again"
    return LedgerError(
        f"{path}: the ledger cannot be used ({exc}); {advice}. Rows already sent stay recorded; "
        "the run stopped sending"
    )
