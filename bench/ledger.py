"""What the account ledger and the look-up of uncertain rows add to a run (issues 9 and 15).

Used by run.py: each measurement runs in a fresh process (`run.py --child ...`), so its peak RSS
is its own. Times are ratios to `validate` of the same file, measured in the same process.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from importer.key_cache import fingerprint
from importer.ledger import Origin, Record, RowState, SqliteLedger
from importer.loader import load_sheet
from importer.mapping import Mapping, load_mapping
from importer.planner import plan_batches
from importer.records import PlannedRow
from importer.resume import Lookup, claim_file, row_origins
from importer.throttle import RateLimit, RateLimiter
from importer.validate import validate_sheet

HOST = "https://api-in21.leadsquared.com"
ORG = "bench"


class _NoReads:
    """A reader that must not be called: no row of these measurements has an unknown outcome."""

    def activities_of_opportunity(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("a look-up was made: the ledger held a row of unknown outcome")


def _lookup() -> Lookup:
    return Lookup(_NoReads(), RateLimiter(RateLimit(25, 5.0)), settle_s=0.0)


def _validated(path: Path, mapping_path: Path) -> tuple[object, Mapping, list[PlannedRow], dict[str, float]]:
    """Load and validate (what `validate` does), then build the rows and plan (what `run` adds)."""
    times: dict[str, float] = {}
    started = time.perf_counter()
    sheet = load_sheet(path)
    mapping = load_mapping(mapping_path)
    validated = validate_sheet(sheet, mapping, mapping_path)
    times["validate"] = time.perf_counter() - started
    started = time.perf_counter()
    rows = validated.rows
    plan_batches(rows)
    times["rows"] = time.perf_counter() - started
    return sheet, mapping, rows, times


def build_ledger(path: Path, source: Path, mapping_path: Path) -> int:
    """A ledger holding every valid row of `source` as posted, as after its first run (which kept
    the file's keys in the ledger's key cache, as `run` does)."""
    sheet, mapping, rows, _ = _validated(source, mapping_path)
    path.unlink(missing_ok=True)
    with SqliteLedger.open(path, HOST, ORG) as ledger:
        origins = row_origins(sheet, source)  # type: ignore[arg-type]
        known = fingerprint(source, None, mapping, "", rows)
        keys, _ = claim_file(ledger, rows, origins, _lookup(), fingerprint=known)  # all new: all claimed
        for start in range(0, len(rows), 25):  # as the sender does: one call's rows at a time
            call = rows[start : start + 25]
            ledger.claim_deferred([keys[row.source_row] for row in call])
            ledger.record([Record(keys[row.source_row], row, RowState.POSTED, None, None) for row in call])
    return len(rows)


def measure(kind: str, source: Path, mapping_path: Path, ledger_path: Path, work: Path) -> dict[str, float]:
    """Validate `source`, then check it against a copy of the ledger as `run` does before sending."""
    copy = work / f"ledger-{kind}.sqlite"
    shutil.copyfile(ledger_path, copy)
    sheet, mapping, rows, times = _validated(source, mapping_path)
    known = fingerprint(source, None, mapping, "", rows)  # what `run` does (runner._resume)
    with contextlib.closing(sqlite3.connect(copy)) as db:  # did the first run keep this file's keys?
        times["cached"] = db.execute(
            "SELECT count(*) FROM key_cache WHERE fingerprint = ?", (known,)
        ).fetchone()[0]
    started = time.perf_counter()
    ledger = SqliteLedger.open(copy, HOST, ORG)
    origins: dict[int, Origin] = row_origins(sheet, source)  # type: ignore[arg-type]
    known = fingerprint(source, None, mapping, "", rows)  # again, timed: `run` makes it every time
    _keys, resumed = claim_file(ledger, rows, origins, _lookup(), fingerprint=known)
    times["ledger"] = time.perf_counter() - started  # the first call could leave now
    started = time.perf_counter()
    ledger.close()  # at the run's end: claims released, the write-ahead log folded into the file
    times["close"] = time.perf_counter() - started
    times["rows_total"] = len(rows)
    times["skipped"] = resumed.skipped
    times["to_send"] = len(resumed.to_send)
    copy.unlink()
    return times


def measure_lookup(activities: int) -> dict[str, object]:
    """Read calls to settle one uncertain row on an opportunity already holding `activities`."""
    from importer.client import Credentials, LsqClient  # noqa: PLC0415
    from importer.reconcile import fetch_activities  # noqa: PLC0415
    from importer.sandbox import Account, Sandbox  # noqa: PLC0415

    opportunity = "bench-opportunity"
    body = {"ActivityEvent": 201, "ActivityOwnerEmail": "asha.rao@example.com", "ActivityNote": "old"}
    result: dict[str, object] = {"activities": activities}
    with Sandbox(Account(opportunities={opportunity})) as sandbox:
        long_ago = datetime.now(UTC) - timedelta(days=30)
        for n in range(activities):
            when = (long_ago + timedelta(seconds=n)).strftime("%Y-%m-%d %H:%M:%S")
            sandbox.add_activity(opportunity, body, created_on=when)
        uncertain_call = datetime.now(UTC) - timedelta(seconds=2)
        sandbox.add_activity(opportunity, {**body, "ActivityNote": "the uncertain row"})
        client = LsqClient(sandbox.url, Credentials(sandbox.access_key, sandbox.secret_key))
        limiter = RateLimiter(RateLimit(25, 1.0))
        for case, since in (("since the uncertain call", uncertain_call), ("everything", None)):
            before = sandbox.stats.requests
            found = fetch_activities(client, limiter, opportunity, 201, since=since)
            result[case] = {
                "read_calls": sandbox.stats.requests - before,
                "found": len(found),
                "has_uncertain_row": any(item.note == "the uncertain row" for item in found),
            }
        client.close()
    return result
