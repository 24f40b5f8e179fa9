"""Decide what a run must send, given what the journal says earlier runs did.

Rows posted before are skipped; rows whose earlier outcome is unknown (a timeout, a dropped
connection, a crash mid-call) are looked up in LeadSquared first and sent again only if they are
not there; everything else is sent.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from importer.client import LsqClient, ReadError
from importer.journal import Journal, RowKey, RowState
from importer.reconcile import assign, fetch_activities
from importer.records import PlannedRow, RowError, Stage
from importer.throttle import RateLimiter

log = logging.getLogger(__name__)


@dataclass
class Resume:
    to_send: list[PlannedRow] = field(default_factory=list)
    skipped: int = 0  # posted by an earlier run (including rows just confirmed in LeadSquared)
    confirmed: int = 0  # of those, rows whose outcome was unknown and that were found now
    errors: list[RowError] = field(default_factory=list)  # unknown rows that could not be checked


def resume(
    journal: Journal,
    rows: list[PlannedRow],
    keys: dict[int, RowKey],
    client: LsqClient,
    limiter: RateLimiter,
    *,
    resend: bool = False,
) -> Resume:
    """Split this run's valid rows into skipped, to check, and to send."""
    states = journal.states(keys.values())
    result = Resume()
    to_check: list[PlannedRow] = []
    for row in rows:
        state = states.get(keys[row.source_row], (RowState.PENDING, None))[0]
        if state is RowState.POSTED and not resend:
            result.skipped += 1
        elif state in (RowState.SENDING, RowState.UNKNOWN) and not resend:
            to_check.append(row)
        else:
            result.to_send.append(row)
    if to_check:
        log.info("%d rows have an unknown outcome from an earlier run: checking LeadSquared", len(to_check))
        _check(journal, to_check, keys=keys, client=client, limiter=limiter, result=result)
    result.to_send.sort(key=lambda row: row.source_row)
    return result


def _check(
    journal: Journal,
    rows: list[PlannedRow],
    *,
    keys: dict[int, RowKey],
    client: LsqClient,
    limiter: RateLimiter,
    result: Resume,
) -> None:
    groups: dict[tuple[str, int], list[PlannedRow]] = defaultdict(list)
    for row in rows:
        groups[(row.opportunity_id, row.body["ActivityEvent"])].append(row)
    for (opportunity_id, event), group in groups.items():
        taken, posted_without_id = journal.posted_on(opportunity_id, event)
        try:
            found = fetch_activities(client, limiter, opportunity_id, event)
        except ReadError as exc:
            message = (
                f"sent by an earlier run with an unknown outcome, and the check failed ({exc}); "
                "not sent again: check the opportunity in LeadSquared"
            )
            result.errors.extend(RowError(row.source_row, Stage.UNKNOWN, message) for row in group)
            continue
        matches = assign([row.body for row in group], found, taken, posted_without_id)
        confirmed = [
            (keys[row.source_row], row, RowState.POSTED, activity_id, "found in LeadSquared")
            for row, (hit, activity_id) in zip(group, matches, strict=True)
            if hit
        ]
        journal.record(confirmed)
        result.confirmed += len(confirmed)
        result.skipped += len(confirmed)
        result.to_send.extend(row for row, (hit, _) in zip(group, matches, strict=True) if not hit)
