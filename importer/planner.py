"""Group valid rows by opportunity and cut them into calls of at most 25 activities."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from importer.gcpause import gc_paused
from importer.records import PlannedRow

MAX_BATCH = 25  # the endpoint's documented limit of activities per call


@dataclass(frozen=True)
class Batch:
    """One call: activities for a single opportunity, in input order."""

    opportunity_id: str
    rows: tuple[PlannedRow, ...]

    def __len__(self) -> int:
        return len(self.rows)


def plan_batches(rows: Iterable[PlannedRow], batch_size: int = MAX_BATCH) -> list[Batch]:
    """Batches in order of each opportunity's first row; rows keep input order within one."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch size must be between 1 and {MAX_BATCH}, got {batch_size}")
    groups: dict[str, list[PlannedRow]] = {}
    with gc_paused():
        for row in rows:
            groups.setdefault(row.opportunity_id, []).append(row)
        return [
            Batch(opportunity_id, tuple(group[start : start + batch_size]))
            for opportunity_id, group in groups.items()
            for start in range(0, len(group), batch_size)
        ]
