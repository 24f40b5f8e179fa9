"""The error workbook: every failed input row with its errors, ready to fix in Excel and re-import.

Sheet `Errors` comes first, so the importer reads it back. It has `Source Row`, `Error Stage` and
`Error`, then the original columns with the original text. A cell an error names is filled light
red and carries the message as a comment. Sheet `Summary` counts rows per stage and per message.

It is written with openpyxl in write-only mode, and each text is stored as faithfully as a cell
allows, so a user can fix cells in Excel and feed the workbook straight back:

- every text cell is forced to text (never a formula, whatever it starts with) and Text-formatted,
  so leading zeros stay and a user's edit in Excel stays text too;
- control characters (CR included, which XML would read back as LF), whitespace-only text and a
  literal `_xHHHH_` are stored with Excel's own `_xHHHH_` escape, which Excel and python-calamine
  (the loader) decode back to the original text;
- characters no xlsx can hold (lone surrogates, U+FFFE, U+FFFF) are replaced with U+FFFD, and the
  row's `Error` says so;
- text over Excel's cell limit keeps its first 32,767 characters (UTF-16 units, as Excel counts),
  and the row's `Error` says so.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell as ExcelCell
from openpyxl.comments import Comment
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

from importer.atomic import create_temp_file, reason, write_atomically
from importer.errors import OutputError
from importer.records import RowError, Sheet, Stage

ERRORS_SHEET = "Errors"
SUMMARY_SHEET = "Summary"
LEAD_HEADERS = ("Source Row", "Error Stage", "Error")
SOURCE_FILE_HEADER = "Source File"  # last column: the original file of a row (re-fed workbooks keep it)
COMMENT_AUTHOR = "lsq-import"

MAX_CELL_CHARS = 32_767  # Excel's limit, in UTF-16 code units
MAX_SHEET_ROWS = 1_048_576
MAX_COLUMN_WIDTH = 60
MAX_SUMMARY_MESSAGES = 1000
MIN_COLUMN_WIDTH = 8
REPLACEMENT = "\ufffd"

# Indexes into the cellXfs of _STYLES_XML.
NUMBER, TEXT, FLAGGED, BOLD_TEXT, BOLD_NUMBER = range(5)

# Characters no XML file can hold, even escaped: replaced, and the row's Error says so.
_UNSTORABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")
# What OOXML stores as an `_xHHHH_` escape (Excel and calamine decode it): control characters
# (CR included: XML would read it back as LF) and a literal `_` that starts an escape-like run.
_NEEDS_ESCAPE = re.compile("_(?=x[0-9A-Fa-f]{4}_)|[\x00-\x08\x0b-\x1f]")

Cell = tuple[str | int, int]  # (value, style)


def write_error_workbook(
    path: str | Path,
    sheet: Sheet,
    errors: Iterable[RowError],
    origins: Mapping[int, tuple[str, int]] | None = None,
) -> Path:
    """Write the failed rows of `sheet` to an .xlsx at `path`, atomically; return the path.

    With `origins` (source row -> original file name and row), `Source Row` is the row of the
    original file and a last column `Source File` names it, so a re-fed workbook keeps both.
    """
    target = Path(path)
    by_row = _group_by_row(errors)
    columns = _original_columns(sheet.headers)
    rows = _failed_rows(sheet, by_row, columns)
    if len(rows) + 1 > MAX_SHEET_ROWS:
        raise OutputError(f"{target}: {len(rows):,} failed rows do not fit in one Excel sheet")
    header = [*LEAD_HEADERS, *(_excel_text(sheet.headers[i])[0] for i in columns)]
    if origins is not None:
        header.append(SOURCE_FILE_HEADER)
        for row in rows:
            file, row.source_row = origins.get(row.source_row, ("", row.source_row))
            row.values.append(_excel_text(file)[0])
    sheets = [_errors_sheet(header, rows), _summary_sheet(sheet, rows, by_row)]
    write_atomically(target, lambda file: _write_workbook(file, sheets), "the error workbook")
    return target


def check_writable(path: str | Path) -> None:
    """Raise OutputError now if the workbook could not be written to `path` later."""
    target = Path(path)
    if not target.parent.is_dir():
        raise OutputError(f"{target}: cannot write here, {target.parent} is not an existing folder")
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give a file name for the error workbook")
    try:
        create_temp_file(target).unlink()
        if target.exists():
            with target.open("r+b"):  # fails when read-only or (on Windows) open in Excel
                pass
    except OSError as error:
        raise OutputError(f"{target}: cannot write the error workbook: {reason(error)}") from error


# What the workbook says.


@dataclass
class _FailedRow:
    """One row of the Errors sheet."""

    source_row: int
    stage: str
    error: str
    values: list[str]
    comments: dict[int, str] = field(default_factory=dict)  # index into values -> comment text


def _group_by_row(errors: Iterable[RowError]) -> dict[int, list[RowError]]:
    """The errors of each source row in the order given, rows in source order."""
    by_row: dict[int, list[RowError]] = defaultdict(list)
    for error in errors:
        by_row[error.source_row].append(error)
    return dict(sorted(by_row.items()))


def _original_columns(headers: Sequence[str]) -> list[int]:
    """Positions of the input columns to copy.

    When the input is itself an error workbook (it has all three lead columns), those get
    replaced by fresh ones rather than repeated with stale text.
    """
    if set(LEAD_HEADERS) <= set(headers):
        ours = {*LEAD_HEADERS, SOURCE_FILE_HEADER}
        return [i for i, header in enumerate(headers) if header not in ours]
    return list(range(len(headers)))


def _failed_rows(sheet: Sheet, by_row: dict[int, list[RowError]], columns: list[int]) -> list[_FailedRow]:
    names = [sheet.headers[i] for i in columns]
    position: dict[str, int] = {}  # header -> index into the copied values; the first one wins
    for n, name in enumerate(names):
        position.setdefault(name, n)
    originals = _original_values(sheet, list(by_row), columns)
    return [
        _failed_row(row, errors, values, names, position)
        for (row, errors), values in zip(by_row.items(), originals, strict=True)
    ]


def _original_values(sheet: Sheet, source_rows: list[int], columns: list[int]) -> list[list[object]]:
    """The input cells of each source row; blank when the sheet does not hold the row."""
    index = {row: i for i, row in enumerate(sheet.source_rows)}
    found = [index.get(row) for row in source_rows]
    block = sheet.frame.iloc[[i for i in found if i is not None], columns]
    present = iter(block.to_numpy(dtype=object).tolist())
    return [next(present) if i is not None else [""] * len(columns) for i in found]


def _failed_row(
    source_row: int,
    errors: list[RowError],
    raw: list[object],
    names: list[str],
    position: dict[str, int],
) -> _FailedRow:
    values, notes = _stored_values(raw, names)
    comments: dict[int, list[str]] = defaultdict(list)
    for error in errors:
        if error.column in position:
            comments[position[error.column]].append(_excel_text(error.message)[0])
    return _FailedRow(
        source_row=source_row,
        stage=Stage(errors[0].stage).value,
        error=_excel_text("; ".join([*map(_describe, errors), *notes]))[0],
        values=values,
        comments={i: "\n".join(messages) for i, messages in comments.items()},
    )


def _stored_values(raw: list[object], names: list[str]) -> tuple[list[str], list[str]]:
    """A row's cells as Excel can hold them, and a note for each cell that had to change."""
    values = [value if isinstance(value, str) else _as_text(value) for value in raw]
    longest = max(map(len, values), default=0)
    if longest <= MAX_CELL_CHARS // 2 and not _UNSTORABLE.search("".join(values)):
        return values, []  # nearly every row: one check for the whole row
    stored, notes = [], []
    for name, value in zip(names, values, strict=True):
        text, changes = _excel_text(value)
        stored.append(text)
        notes += [f"{name}: {change}" for change in changes]
    return stored, notes


def _describe(error: RowError) -> str:
    return f"{error.column}: {error.message}" if error.column else error.message


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None or bool(pd.isna(cast(Any, value))) else str(value)


def _excel_text(text: str) -> tuple[str, list[str]]:
    """The text as an Excel cell can hold it, and what had to change to get there."""
    changes = []
    text, replaced = _UNSTORABLE.subn(REPLACEMENT, text)
    if replaced:
        changes.append(f"{replaced} character(s) that Excel cannot store were replaced with '{REPLACEMENT}'")
    if len(text) > MAX_CELL_CHARS // 2:  # UTF-16 takes at most two units a character
        encoded = text.encode("utf-16-le")
        if len(encoded) > 2 * MAX_CELL_CHARS:
            # "ignore" drops the half of a surrogate pair the cut may leave behind
            text = encoded[: 2 * MAX_CELL_CHARS].decode("utf-16-le", "ignore")
            changes.append(
                f"cut to the first {MAX_CELL_CHARS:,} characters (Excel's limit for a cell); "
                f"the full text had {len(encoded) // 2:,}"
            )
    return text, changes


def _summary_rows(
    sheet: Sheet, rows: list[_FailedRow], by_row: dict[int, list[RowError]]
) -> Iterator[list[Cell]]:
    """Rows per stage, then rows per distinct message, most frequent first."""
    per_stage = Counter(row.stage for row in rows)
    per_message: Counter[tuple[str, str]] = Counter()
    for errors in by_row.values():  # a message counts once per row
        per_message.update({(_describe(e), Stage(e.stage).value): 1 for e in errors})
    source = f"{sheet.path}, sheet {sheet.sheet_name}" if sheet.sheet_name else str(sheet.path)
    yield [("Input file", BOLD_TEXT), (_excel_text(source)[0], TEXT)]
    yield []
    yield [("Error Stage", BOLD_TEXT), ("Rows", BOLD_TEXT)]
    for stage in Stage:
        yield [(stage.value, TEXT), (per_stage[stage.value], NUMBER)]
    yield [("Total", BOLD_TEXT), (len(rows), BOLD_NUMBER)]
    yield []
    yield [("Error", BOLD_TEXT), ("Error Stage", BOLD_TEXT), ("Rows", BOLD_TEXT)]
    common = per_message.most_common()
    for (message, stage_name), count in common[:MAX_SUMMARY_MESSAGES]:
        yield [(_excel_text(message)[0], TEXT), (stage_name, TEXT), (count, NUMBER)]
    if rest := common[MAX_SUMMARY_MESSAGES:]:  # messages quote the bad value, so many are unique
        others = f"... {len(rest):,} more distinct messages, each on fewer rows"
        yield [(others, TEXT), ("", TEXT), (sum(count for _, count in rest), NUMBER)]
    yield [("Total", BOLD_TEXT), ("", TEXT), (per_message.total(), BOLD_NUMBER)]


def _errors_sheet(header: list[str], rows: list[_FailedRow]) -> _SheetPart:
    def cells() -> Iterator[list[Cell]]:
        yield [(name, BOLD_TEXT) for name in header]
        for row in rows:
            lead: list[Cell] = [(row.source_row, NUMBER), (row.stage, TEXT), (row.error, TEXT)]
            flagged = row.comments
            yield lead + [(v, FLAGGED if i in flagged else TEXT) for i, v in enumerate(row.values)]

    comments = [
        (line, len(LEAD_HEADERS) + i + 1, text)
        for line, row in enumerate(rows, start=2)
        for i, text in sorted(row.comments.items())
    ]
    return _SheetPart(
        ERRORS_SHEET, cells(), len(rows) + 1, _errors_widths(header, rows), comments, frozen=True
    )


def _errors_widths(header: list[str], rows: list[_FailedRow]) -> list[float]:
    longest = [len(name) + 3 for name in header]  # room for the autofilter button
    if rows:
        columns = [
            [str(rows[-1].source_row)],
            [row.stage for row in rows],
            [row.error for row in rows],
            *zip(*(row.values for row in rows), strict=True),
        ]
        longest = [max(itertools.chain([n], map(len, c))) for n, c in zip(longest, columns, strict=True)]
    return [_width(n) for n in longest]


def _summary_sheet(sheet: Sheet, rows: list[_FailedRow], by_row: dict[int, list[RowError]]) -> _SheetPart:
    cells = list(_summary_rows(sheet, rows, by_row))
    longest = [0] * max(map(len, cells))
    for line in cells:
        for i, (value, _style) in enumerate(line):
            longest[i] = max(longest[i], len(str(value)))
    widths = [_width(n) for n in longest]
    return _SheetPart(SUMMARY_SHEET, iter(cells), len(cells), widths, [], frozen=False)


def _width(characters: int) -> float:
    """A column width that shows `characters`, within readable bounds."""
    return min(MAX_COLUMN_WIDTH, max(MIN_COLUMN_WIDTH, characters + 2))


# How the workbook is stored: openpyxl in write-only mode, every text cell forced to text.

_BOLD = Font(bold=True)
_FLAG_FILL = PatternFill("solid", start_color="FFFFC7CE", end_color="FFFFC7CE")


@dataclass
class _SheetPart:
    """A worksheet to write: its cells row by row (header first) and how to show them."""

    name: str
    rows: Iterator[list[Cell]]
    n_rows: int
    widths: list[float]  # one per column
    comments: list[tuple[int, int, str]]  # (row, column, text), both 1-based
    frozen: bool  # freeze the header row and put an autofilter over the data

    @property
    def ref(self) -> str:
        return f"A1:{get_column_letter(max(1, len(self.widths)))}{max(1, self.n_rows)}"


def _write_workbook(file: BinaryIO, sheets: list[_SheetPart]) -> None:
    book = Workbook(write_only=True)
    for part in sheets:
        worksheet = book.create_sheet(part.name)
        for column, width in enumerate(part.widths, start=1):
            worksheet.column_dimensions[get_column_letter(column)].width = width
        if part.frozen:
            worksheet.freeze_panes = "A2"
            worksheet.auto_filter.ref = part.ref
        comments = {(row, column): text for row, column, text in part.comments}
        for line, cells in enumerate(part.rows, start=1):
            worksheet.append(
                [
                    _cell(worksheet, value, style, comments.get((line, column)))
                    for column, (value, style) in enumerate(cells, start=1)
                ]
            )
    book.save(file)


def _ooxml_text(text: str) -> str:
    """Text as Excel itself escapes it, so it reads back exactly in Excel and python-calamine."""
    escaped = _NEEDS_ESCAPE.sub(lambda m: "_x005F_" if m.group() == "_" else f"_x{ord(m.group()):04X}_", text)
    if escaped.isspace():  # openpyxl marks only padded text as space-preserving; escape one space
        escaped = f"_x{ord(escaped[0]):04X}_{escaped[1:]}"
    return escaped


def _cell(worksheet: Any, value: str | int, style: int, comment: str | None) -> ExcelCell:
    cell = WriteOnlyCell(worksheet, value=_ooxml_text(value) if isinstance(value, str) else value)
    if isinstance(value, str):
        # openpyxl reads a leading '=' as a formula; a user's text must never run as one.
        cell.data_type = "s"
        cell.number_format = "@"  # Text format: a user's edit in Excel stays text too
    if style in (BOLD_TEXT, BOLD_NUMBER):
        cell.font = _BOLD
    elif style == FLAGGED:
        cell.fill = _FLAG_FILL
    if comment:
        cell.comment = Comment(_ooxml_text(comment), COMMENT_AUTHOR, width=300, height=120)
    return cell
