"""The sender's last resort: an unexpected error while sending leaves its rows unknown, even when
the ledger cannot record them any more (a full disk fails both at once), and no thread dies."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from importer.ledger import LedgerError, Record, RowKey, RowState
from importer.planner import Batch
from importer.records import PlannedRow
from importer.sender import Sender
from importer.throttle import RateLimit, RateLimiter


class _BrokenLimiter(RateLimiter):
    def acquire(self) -> None:
        raise sqlite3.OperationalError("database or disk is full")  # what escaped the limiter once


class _FillingLedger:
    """Takes the claims and the 'sending' marks, then the disk is full."""

    path = Path("ledger.sqlite")

    def __init__(self) -> None:
        self.states: list[RowState] = []

    def claim_deferred(self, keys: list[RowKey]) -> set[RowKey]:
        return set()

    def record(self, records: list[Record]) -> None:
        if any(record.state is RowState.UNKNOWN for record in records):
            raise LedgerError(self.path, "the ledger cannot be used (database or disk is full)")
        self.states += [record.state for record in records]


def test_an_unexpected_error_with_a_full_ledger_leaves_the_rows_unknown_and_no_thread_dies(monkeypatch):
    escaped: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    rows = tuple(PlannedRow(n, "opp-1", {"ActivityEvent": 201}) for n in (2, 3))
    ledger = _FillingLedger()
    sender = Sender(
        client=None,  # type: ignore[arg-type]  # never reached: the limiter fails first
        limiter=_BrokenLimiter(RateLimit(25, 5.0)),
        journal=ledger,  # type: ignore[arg-type]
        keys={row.source_row: RowKey(f"digest-{row.source_row}", 0) for row in rows},
    )

    report = sender.send([Batch("opp-1", rows)])

    assert escaped == []
    assert ledger.states == [RowState.SENDING, RowState.SENDING]
    assert [row.source_row for row in report.uncertain] == [2, 3]
    assert "disk is full" in (report.ledger_problem or "")
    assert "OperationalError" in (report.stop_reason or "")
