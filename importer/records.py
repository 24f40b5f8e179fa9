"""The records that flow between stages: a loaded sheet, a planned row, a row error."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple, TypedDict

import pandas as pd


class Stage(StrEnum):
    """Where a row failed; shown in the error workbook's `Error Stage` column."""

    VALIDATION = "validation"  # never sent: fix the cell and re-upload
    LOOKUP = "lookup"  # never sent: the lead's value found no single opportunity (importer.lookup)
    API = "api"  # sent and rejected by LeadSquared
    UNKNOWN = "unknown"  # sent, but whether it was created is not known: check before re-sending
    NOT_SENT = "not sent"  # valid, but the run stopped before sending it (401, Ctrl-C, retries spent)


@dataclass(frozen=True)
class RowError:
    """One problem with one input row; `column` names the spreadsheet column when there is one."""

    source_row: int
    stage: Stage
    message: str
    column: str | None = None


# What lsq-import adds to a message, never LeadSquared's own words (the workbook keeps those apart).
EARLIER_FAILURE = " (it failed in an earlier run too, on {day})"


@dataclass
class Sheet:
    """A spreadsheet read as text: every cell is the string the user sees ('' when empty).

    `frame` has one column per header, in file order, all values `str`. `source_rows[i]` is the
    row number the spreadsheet shows for frame row i (header = row 1); fully blank rows are
    already dropped, so the numbers may have gaps.
    """

    path: Path
    headers: list[str]
    frame: pd.DataFrame
    source_rows: list[int]
    sheet_name: str | None = None
    notes: list[str] = field(default_factory=list)  # things the loader wants the user to know
    # cells whose text is not their real value (a formula never calculated, an error like #N/A,
    # bytes that are not text): header -> {source row: why}; a row using such a cell fails
    cell_problems: dict[str, dict[int, str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.source_rows)


class FieldValue(TypedDict):
    SchemaName: str
    Value: str


class ActivityBody(TypedDict, total=False):
    """One object of the bulk endpoint's JSON array (docs/leadsquared-api.md)."""

    ActivityEvent: int
    ActivityOwnerEmail: str
    ActivityNote: str
    ActivityDateTime: str
    Fields: list[FieldValue]
    ValidateDropDownOptions: bool


class PlannedRow(NamedTuple):
    """A valid input row turned into the activity that will be posted.

    A NamedTuple rather than a frozen dataclass: a large sheet makes a million of them, and a
    frozen dataclass takes five times as long to build (a second per million rows).
    """

    source_row: int
    opportunity_id: str
    body: ActivityBody
