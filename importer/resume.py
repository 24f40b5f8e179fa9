"""Decide what a run must send, given the ledger, and settle uncertain rows before the run ends.

`resume` claims this run's rows in the account's ledger: rows already in LeadSquared are skipped
(and told: from which files, on which dates), rows another live run is sending are left to it,
rows whose earlier outcome is unknown are looked up first, everything else is sent.

`settle` runs after sending: rows left uncertain by a timeout, a dropped connection, a 5xx, a
server fault or a count-only partial are looked up once the settle time has passed (LeadSquared's
reads may lag its writes), and the absent ones are sent again one at a time. A row stays unknown
only when its look-up itself failed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from importer.client import ReadError
from importer.ledger import (
    Claim,
    Entry,
    LazyKeys,
    Ledger,
    Origin,
    Record,
    RowKey,
    RowState,
    assign_keys,
    key_positions,
    packed_keys,
    unpack_all,
)
from importer.reconcile import Reader, assign, fetch_activities
from importer.records import PlannedRow, RowError, Sheet, Stage
from importer.throttle import RateLimiter, Sleep

log = logging.getLogger(__name__)

DEFAULT_SETTLE_S = 30.0  # how long LeadSquared's reads may lag its writes before "not found" is trusted
SETTLE_ROUNDS = 3  # look up, send the absent ones again one at a time, look up again...
BUSY_WAIT_S = 600.0  # how long a run waits at its end for rows another live run is sending
SENT_BY_ANOTHER_RUN = (
    "not sent: another lsq-import run on this account was sending this row and has not settled it; "
    "the next run checks it"
)
INDEX_FROM_SHARE = 64  # rows at least 1/64 of the ledger's: matched against posted_keys at once


@dataclass
class Resume:
    to_send: list[PlannedRow] = field(default_factory=list)
    skipped: int = 0  # in LeadSquared already (including rows just confirmed there)
    confirmed: int = 0  # of those, rows whose outcome was unknown and that were found now
    errors: list[RowError] = field(default_factory=list)  # unknown rows that could not be checked
    skipped_from: Counter[tuple[str, str]] = field(default_factory=Counter)  # (file, day) -> rows
    busy: list[PlannedRow] = field(default_factory=list)  # another live run is sending these
    failed_before: dict[int, str] = field(default_factory=dict)  # source row -> when it failed before


@dataclass
class Settled:
    """What `settle` learnt of the rows left uncertain."""

    found: list[tuple[PlannedRow, str | None]] = field(default_factory=list)  # created after all
    still_unknown: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class Lookup:
    """What a look-up needs: the reader, the limiter, the settle time and the clock."""

    client: Reader
    limiter: RateLimiter
    settle_s: float = DEFAULT_SETTLE_S
    sleep: Sleep = time.sleep
    clock: Callable[[], float] = time.time


def claim_file(
    ledger: Ledger,
    rows: list[PlannedRow],
    origins: Mapping[int, Origin],
    lookup: Lookup,
    *,
    resend: bool = False,
    fingerprint: str | None = None,
) -> tuple[Mapping[int, RowKey], Resume]:
    """Key this file's rows and claim them (`resume`); returns the keys of the rows not skipped.

    A large file (a rerun of a big export) takes the fast road: its keys from the ledger's key
    cache when the fingerprint (importer.key_cache) is known, else computed packed; the rows
    already posted are found at once in posted_keys and skipped without a RowKey each; only the
    rest is claimed row by row. A re-fed error workbook, rows of several files and --resend take
    the road of `row_keys` and `resume` for every row.
    """
    packed = ledger.cached_keys(fingerprint, len(rows)) if fingerprint else None
    if packed is None:
        packed = packed_keys(rows)
        if fingerprint:
            ledger.cache_keys(fingerprint, packed)
    index = None
    if not resend and not _refed(rows, origins) and len(rows) * INDEX_FROM_SHARE >= ledger.rows_held():
        index = ledger.posted_among(packed)
    if index is None:
        keys = row_keys(
            rows,
            origins,
            ledger,
            {row.source_row: key for row, key in zip(rows, unpack_all(packed), strict=True)},
        )
        return keys, resume(ledger, rows, keys, origins, lookup, resend=resend, defer=True)
    place, places = index
    left = np.flatnonzero(place < 0)
    rest = [rows[i] for i in left.tolist()]
    rest_packed = packed[left]
    source_rows = [row.source_row for row in rest]
    lazy = LazyKeys(source_rows, rest_packed)
    unsettled = ledger.unsettled_keys()  # usually none: the rest are new to the ledger
    held = key_positions(unsettled, rest_packed) >= 0
    fresh_at = np.flatnonzero(~held)
    fresh = rest if len(fresh_at) == len(rest) else [rest[i] for i in fresh_at.tolist()]
    ledger.defer(rest_packed[fresh_at], fresh, origins)
    result = resume(
        ledger, [rest[i] for i in np.flatnonzero(held).tolist()], lazy, origins, lookup, defer=True
    )
    in_order = bool(np.all(np.diff(np.asarray(source_rows, dtype=np.int64)) > 0))
    if result.to_send or not in_order:
        result.to_send = sorted(fresh + result.to_send, key=lambda row: row.source_row)
    else:
        result.to_send = fresh
    counts = np.bincount(place[place >= 0], minlength=len(places)).tolist()
    result.skipped += len(rows) - len(rest)
    for (file, day), count in zip(places, counts, strict=True):
        if count:
            result.skipped_from[(file or "an earlier run", day)] += count
    return lazy, result


def resume(
    ledger: Ledger,
    rows: list[PlannedRow],
    keys: Mapping[int, RowKey],
    origins: Mapping[int, Origin],
    lookup: Lookup,
    *,
    resend: bool = False,
    defer: bool = False,
) -> Resume:
    """Claim this run's valid rows; split them into skipped, busy elsewhere, to check, and to send.

    `defer`: rows new to the ledger are written when the sender is about to send them (see
    `Ledger.claim`); the sender then leaves any another run wrote first to it.
    """
    claims, known = ledger.claim(
        [(keys[row.source_row], row, origins[row.source_row]) for row in rows],
        resend=resend,
        defer=defer,
    )
    result = Resume()
    to_check: list[PlannedRow] = []
    for row in rows:
        key = keys[row.source_row]
        claim, entry = claims[key], known.get(key)
        if entry is not None and entry.failed_at and entry.state is RowState.FAILED:
            result.failed_before[row.source_row] = entry.failed_at
        if claim is Claim.POSTED:
            result.skipped += 1
            result.skipped_from[_provenance(entry)] += 1
        elif claim is Claim.BUSY:
            result.busy.append(row)
        elif claim is Claim.CHECK:
            to_check.append(row)
        else:
            result.to_send.append(row)
    if to_check:
        log.info("%d rows have an unknown outcome from an earlier run: checking LeadSquared", len(to_check))
        times = _times(known.get(keys[row.source_row]) for row in to_check)
        settled = look_up(
            ledger,
            to_check,
            keys,
            lookup,
            since=min(times, default=None),
            last=max(times, default=None),
            label="sent by an earlier run",
        )
        result.confirmed = len(settled.found)
        result.skipped += len(settled.found)
        if settled.found:
            result.skipped_from[("this account's ledger (confirmed in LeadSquared now)", _today())] += len(
                settled.found
            )
        found = {row.source_row for row, _ in settled.found}
        unknown = {error.source_row for error in settled.still_unknown}
        result.errors.extend(settled.still_unknown)
        result.to_send.extend(row for row in to_check if row.source_row not in found | unknown)
    result.to_send.sort(key=lambda row: row.source_row)
    return result


def look_up(
    ledger: Ledger,
    rows: list[PlannedRow],
    keys: Mapping[int, RowKey],
    lookup: Lookup,
    *,
    since: datetime | None,
    last: datetime | None,
    label: str,
) -> Settled:
    """Look each row up in LeadSquared; record the ones found as posted.

    `since` is when the first uncertain call may have started (older activities are not read),
    `last` when the last one ended: the look-up waits until the settle time has passed since then.
    """
    _wait_for_reads(last, lookup)
    settled = Settled()
    groups: dict[tuple[str, int], list[PlannedRow]] = defaultdict(list)
    for row in rows:
        groups[(row.opportunity_id, row.body["ActivityEvent"])].append(row)
    for (opportunity_id, event), group in groups.items():
        taken, posted_without_id = ledger.posted_on(opportunity_id, event)
        try:
            found = fetch_activities(lookup.client, lookup.limiter, opportunity_id, event, since=since)
        except ReadError as exc:
            message = (
                f"{label}, outcome unknown, and the look-up failed ({exc}); not sent again: "
                "the next run looks it up again"
            )
            settled.still_unknown.extend(RowError(row.source_row, Stage.UNKNOWN, message) for row in group)
            continue
        matched = assign([row.body for row in group], found, taken, posted_without_id)
        hits = [(row, activity_id) for row, (hit, activity_id) in zip(group, matched, strict=True) if hit]
        ledger.record(
            [
                Record(keys[row.source_row], row, RowState.POSTED, activity_id, "found in LeadSquared")
                for row, activity_id in hits
            ]
        )
        settled.found.extend(hits)
    return settled


def settle(
    ledger: Ledger,
    uncertain: list[PlannedRow],
    keys: Mapping[int, RowKey],
    lookup: Lookup,
    send_one_by_one: Callable[[list[PlannedRow]], tuple[list[tuple[PlannedRow, str | None]], list[RowError]]],
    *,
    since: datetime,
    last: datetime,
    may_send: Callable[[], bool] = lambda: True,
) -> tuple[list[tuple[PlannedRow, str | None]], list[RowError]]:
    """Settle rows this run left uncertain: look up, send the absent ones again alone, repeat.

    Returns (rows now known posted, with their ids; errors of the rows still not posted).
    """
    posted: list[tuple[PlannedRow, str | None]] = []
    errors: list[RowError] = []
    for _round in range(SETTLE_ROUNDS):
        if not uncertain:
            break
        log.info("%d rows of uncertain outcome: looking them up in LeadSquared", len(uncertain))
        settled = look_up(ledger, uncertain, keys, lookup, since=since, last=last, label="sent")
        posted.extend(settled.found)
        errors.extend(settled.still_unknown)
        done = {row.source_row for row, _ in settled.found} | {e.source_row for e in settled.still_unknown}
        absent = [row for row in uncertain if row.source_row not in done]
        if not absent or not may_send():
            errors.extend(_not_created(absent))
            return posted, errors
        since = datetime.now(UTC)
        sent, failed = send_one_by_one(absent)
        last = datetime.now(UTC)
        posted.extend(sent)
        uncertain_now = {e.source_row for e in failed if e.stage is Stage.UNKNOWN}
        errors.extend(e for e in failed if e.stage is not Stage.UNKNOWN)
        uncertain = [row for row in absent if row.source_row in uncertain_now]
    errors.extend(
        RowError(
            row.source_row,
            Stage.UNKNOWN,
            "outcome still unknown after sending it again alone; the next run looks it up again",
        )
        for row in uncertain
    )
    return posted, errors


def wait_for_others(
    ledger: Ledger,
    rows: list[PlannedRow],
    keys: Mapping[int, RowKey],
    *,
    sleep: Sleep = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    timeout: float = BUSY_WAIT_S,
) -> tuple[int, list[RowError]]:
    """Wait while other live runs send rows of this file; returns (rows they posted, rows left)."""
    deadline = clock() + timeout
    pending = list(rows)
    while pending and clock() < deadline:
        busy = ledger.claimed_by_others(keys[row.source_row] for row in pending)
        if not busy:
            break
        pending = [row for row in pending if keys[row.source_row] in busy]
        sleep(1.0)
    entries = ledger.entries(keys[row.source_row] for row in rows)
    posted = sum(1 for row in rows if _state(entries, keys[row.source_row]) is RowState.POSTED)
    left = [
        RowError(row.source_row, Stage.NOT_SENT, SENT_BY_ANOTHER_RUN)
        for row in rows
        if _state(entries, keys[row.source_row]) is not RowState.POSTED
    ]
    return posted, left


def _state(entries: Mapping[RowKey, Entry], key: RowKey) -> RowState | None:
    entry = entries.get(key)
    return entry.state if entry else None


def _not_created(rows: Iterable[PlannedRow]) -> list[RowError]:
    return [
        RowError(row.source_row, Stage.NOT_SENT, "not sent: not found in LeadSquared; the next run sends it")
        for row in rows
    ]


def _wait_for_reads(since: datetime | None, lookup: Lookup) -> None:
    """Reads may lag writes: wait until `settle_s` has passed since the uncertain call."""
    if since is None:
        return
    ready = since.timestamp() + lookup.settle_s
    delay = ready - lookup.clock()
    if delay > 0:
        log.info("waiting %.0f s for LeadSquared's reads to catch up before looking rows up", delay)
        lookup.sleep(delay)


def _times(entries: Iterable[Entry | None]) -> list[datetime]:
    return [datetime.fromisoformat(e.updated_at) for e in entries if e is not None and e.updated_at]


def _provenance(entry: Entry | None) -> tuple[str, str]:
    if entry is None:
        return ("an earlier run", "")
    name = entry.origin.file if entry.origin else "an earlier run"
    return (name, (entry.posted_at or entry.updated_at or "")[:10])


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


SOURCE_FILE_HEADER = "Source File"
SOURCE_ROW_HEADER = "Source Row"


class FileOrigins(Mapping[int, Origin]):
    """The rows of one file, each from itself: its Origin made when asked for, not a million
    of them made (and a second spent) before the first call of a large file's run."""

    def __init__(self, file: str, source_rows: list[int]) -> None:
        self.file = file
        self._source_rows = source_rows
        self._rows: frozenset[int] | None = None

    def __getitem__(self, row: int) -> Origin:
        if row not in self:
            raise KeyError(row)
        return Origin(self.file, row)

    def __contains__(self, row: object) -> bool:
        if self._rows is None:
            self._rows = frozenset(self._source_rows)
        return row in self._rows

    def __iter__(self) -> Iterator[int]:
        return iter(self._source_rows)

    def __len__(self) -> int:
        return len(self._source_rows)


def row_origins(sheet: Sheet, input_path: Path) -> Mapping[int, Origin]:
    """Where each row came from: this file, or for a re-fed error workbook the original file and row."""
    if SOURCE_FILE_HEADER not in sheet.headers or SOURCE_ROW_HEADER not in sheet.headers:
        return FileOrigins(input_path.name, sheet.source_rows)
    own = {row: Origin(input_path.name, row) for row in sheet.source_rows}
    files = sheet.frame.iloc[:, sheet.headers.index(SOURCE_FILE_HEADER)].tolist()
    numbers = sheet.frame.iloc[:, sheet.headers.index(SOURCE_ROW_HEADER)].tolist()
    for row, file, number in zip(sheet.source_rows, files, numbers, strict=True):
        text = str(number).strip()
        if str(file).strip() and text.isdigit():
            own[row] = Origin(str(file).strip(), int(text))
    return own


def _refed(rows: list[PlannedRow], origins: Mapping[int, Origin]) -> bool:
    """Whether some row came from elsewhere: a re-fed error workbook, or rows of several files."""
    if isinstance(origins, FileOrigins):
        return False
    if len({origin.file for origin in origins.values()}) > 1:
        return True
    return any(origins[row.source_row].row != row.source_row for row in rows)


def row_keys(
    rows: list[PlannedRow],
    origins: Mapping[int, Origin],
    ledger: Ledger,
    keys: dict[int, RowKey] | None = None,
) -> dict[int, RowKey]:
    """Each row's ledger key: its content and occurrence, or for a re-fed workbook row the key its
    original row was recorded under (found by digest, file and row), so it is never posted twice.
    `keys`: the content keys (`assign_keys`), when already made."""
    keys = assign_keys(rows) if keys is None else keys
    if isinstance(origins, FileOrigins):  # every row from itself: none was recorded elsewhere
        return keys
    several_files = len({origin.file for origin in origins.values()}) > 1  # once: not once per row
    wanted = [
        (keys[row.source_row].digest, origins[row.source_row])
        for row in rows
        if several_files or origins[row.source_row].row != row.source_row
    ]
    if not wanted:
        return keys
    found = ledger.find_origins(wanted)
    used = set(found.values())
    for row in rows:
        key = keys[row.source_row]
        hit = found.get((key.digest, origins[row.source_row]))
        if hit is not None:
            keys[row.source_row] = hit
            continue
        occurrence = key.occurrence
        while RowKey(key.digest, occurrence) in used:  # taken by a row found by its origin
            occurrence += 1
        keys[row.source_row] = RowKey(key.digest, occurrence)
        used.add(keys[row.source_row])
    return keys
