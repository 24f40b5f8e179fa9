"""The error workbook: every failed input row with its errors, ready to fix in Excel and re-import.

Sheet `Errors` comes first, so the importer reads it back. It has `Source Row`, `Error Stage` and
`Error`, then the original columns with the original text, then (when LeadSquared refused rows)
`LeadSquared's message` with its own words. `Error` is plain: fields are named by their display
name with the schema name in brackets (`PAN (mx_Custom_1)`), and no exception type or strptime
code shows. A cell an error names is filled light red and carries the message as a comment, which
sits beside its cell. Sheet `Summary` gives the totals, how to fix and re-upload, and the rows per
stage and per column and problem (a problem is counted once, whatever the values). Both sheets print
landscape, fitted to the page's width.

openpyxl lays the sheets out and their rows are written here as SpreadsheetML (see
`_write_workbook`). Each text is stored as faithfully as a cell allows, so a user can fix cells in
Excel and feed the workbook straight back:

- every text cell is forced to text (never a formula, whatever it starts with) and Text-formatted,
  so leading zeros stay and a user's edit in Excel stays text too;
- spaces are kept as they are, leading, trailing or alone (`xml:space="preserve"`);
- control characters (CR included, which XML would read back as LF) and a literal `_xHHHH_` are
  stored with Excel's own `_xHHHH_` escape, which Excel and python-calamine (the loader) decode
  back to the original text;
- characters no xlsx can hold (lone surrogates, U+FFFE, U+FFFF) are replaced with U+FFFD, and the
  row's `Error` says so;
- text over Excel's cell limit keeps its first 32,767 characters (UTF-16 units, as Excel counts),
  and the row's `Error` says so.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import shutil
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast
from xml.sax.saxutils import escape

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell.cell import Cell as ExcelCell
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.page import PageMargins
from openpyxl.worksheet.properties import PageSetupProperties

from importer.atomic import create_temp_file, reason, write_atomically
from importer.datetimes import human_format
from importer.errors import OutputError
from importer.records import EARLIER_FAILURE, RowError, Sheet, Stage
from importer.replies import NONE_CREATED

ERRORS_SHEET = "Errors"
SUMMARY_SHEET = "Summary"
LEAD_HEADERS = ("Source Row", "Error Stage", "Error")
SOURCE_FILE_HEADER = "Source File"  # last column: the original file of a row (re-fed workbooks keep it)
LSQ_HEADER = "LeadSquared's message"  # LeadSquared's own words for a row it refused
PROBLEM_HEADERS = ("Column", "Rows", "Problem", "Example", "Error Stage")  # the Summary's last table
COMMENT_AUTHOR = "lsq-import"
COMMENT_WIDTH = 300  # pixels
COMMENT_COLUMNS, COMMENT_ROWS = 2, 2  # a comment box's size in cells, beside its cell
PAPER_A4 = "9"  # OOXML paper size code

MAX_CELL_CHARS = 32_767  # Excel's limit, in UTF-16 code units
MAX_SHEET_ROWS = 1_048_576
MAX_COLUMN_WIDTH = 24  # an original column; longer text wraps (narrow, so a row fits a landscape page)
ERROR_COLUMN_WIDTH = 50
LSQ_COLUMN_WIDTH = 35
SUMMARY_PROBLEM_WIDTH = 60
SUMMARY_LABEL_WIDTH = 45
LINE_HEIGHT = 15.0  # points per line of 11-point text
MAX_ROW_HEIGHT = 409.0  # Excel's limit
MAX_SUMMARY_MESSAGES = 1000
MIN_COLUMN_WIDTH = 8
REPLACEMENT = "\ufffd"

# How a cell looks (see `_styled`).
NUMBER, TEXT, FLAGGED, BOLD_TEXT, BOLD_NUMBER = _STYLES = range(5)

# Characters no XML file can hold, even escaped: replaced, and the row's Error says so.
_UNSTORABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")
# What OOXML stores as an `_xHHHH_` escape (Excel and calamine decode it): control characters
# (CR included: XML would read it back as LF) and a literal `_` that starts an escape-like run.
_NEEDS_ESCAPE = re.compile("_(?=x[0-9A-Fa-f]{4}_)|[\x00-\x08\x0b-\x1f]")

Cell = tuple[str | int, int]  # (value, style)


@dataclass(frozen=True)
class Totals:
    """The counts of the run the workbook reports, for its Summary."""

    rows_total: int
    posted: int = 0
    skipped: int = 0  # already in LeadSquared: not sent again
    sent: bool = True  # False for `validate`, which sends nothing


def write_error_workbook(
    path: str | Path,
    sheet: Sheet,
    errors: Iterable[RowError],
    origins: Mapping[int, tuple[str, int]] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    totals: Totals | None = None,
) -> Path:
    """Write the failed rows of `sheet` to an .xlsx at `path`, atomically; return the path.

    With `origins` (source row -> original file name and row), `Source Row` is the row of the
    original file and a last column `Source File` names it, so a re-fed workbook keeps both.
    `labels` names the field of each column in messages (`PAN (mx_Custom_1)`; default: the
    column's own name); `totals` gives the Summary the rows posted and skipped.
    """
    target = Path(path)
    words = _Wording(labels or {})
    by_row = _group_by_row(errors)
    columns = _original_columns(sheet.headers)
    rows = _failed_rows(sheet, by_row, columns, words)
    if len(rows) + 1 > MAX_SHEET_ROWS:
        raise OutputError(f"{target}: {len(rows):,} failed rows do not fit in one Excel sheet")
    header = [*LEAD_HEADERS, *(_excel_text(sheet.headers[i])[0] for i in columns)]
    has_lsq = any(row.lsq for row in rows)
    tail = ([LSQ_HEADER] if has_lsq else []) + ([SOURCE_FILE_HEADER] if origins is not None else [])
    header += tail
    for row in rows:
        if has_lsq:
            row.values.append(row.lsq)
        if origins is not None:
            file, row.source_row = origins.get(row.source_row, ("", row.source_row))
            row.values.append(_excel_text(file)[0])
    sheets = [
        _errors_sheet(header, rows),
        _summary_sheet(sheet, rows, by_row, words=words, totals=totals, workbook_name=target.name),
    ]
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
    lsq: str = ""  # LeadSquared's own words, for a row it refused


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
        ours = {*LEAD_HEADERS, LSQ_HEADER, SOURCE_FILE_HEADER}
        return [i for i, header in enumerate(headers) if header not in ours]
    return list(range(len(headers)))


def _failed_rows(
    sheet: Sheet, by_row: dict[int, list[RowError]], columns: list[int], words: _Wording
) -> list[_FailedRow]:
    names = [sheet.headers[i] for i in columns]
    position: dict[str, int] = {}  # header -> index into the copied values; the first one wins
    for n, name in enumerate(names):
        position.setdefault(name, n)
    originals = _original_values(sheet, list(by_row), columns)
    return [
        _failed_row(row, errors, values, names, position, words=words)
        for (row, errors), values in zip(by_row.items(), originals, strict=True)
    ]


def _original_values(sheet: Sheet, source_rows: list[int], columns: list[int]) -> list[list[object]]:
    """The input cells of each source row; blank when the sheet does not hold the row."""
    found = _sheet_positions(sheet.source_rows, source_rows)
    block = sheet.frame.iloc[[i for i in found if i is not None], columns]
    present = iter(block.to_numpy(dtype=object).tolist())
    return [next(present) if i is not None else [""] * len(columns) for i in found]


def _sheet_positions(sheet_rows: list[int], wanted: list[int]) -> list[int | None]:
    """Where each wanted row is in the sheet's rows, which the loader numbers in order: a binary
    search each, not a dictionary of a million rows for a thousand failed ones."""
    found: list[int | None] = []
    for row in wanted:
        at = bisect.bisect_left(sheet_rows, row)
        found.append(at if at < len(sheet_rows) and sheet_rows[at] == row else None)
    if any(at is None for at in found) and any(a > b for a, b in itertools.pairwise(sheet_rows)):
        index = {row: i for i, row in enumerate(sheet_rows)}  # a sheet made out of order
        return [index.get(row) for row in wanted]
    return found


def _failed_row(
    source_row: int,
    errors: list[RowError],
    raw: list[object],
    names: list[str],
    position: dict[str, int],
    *,
    words: _Wording,
) -> _FailedRow:
    values, notes = _stored_values(raw, names)
    comments: dict[int, list[str]] = defaultdict(list)
    for error in errors:
        if error.column in position:
            comments[position[error.column]].append(_excel_text(words.plain(error))[0])
    said = [
        theirs
        for error in errors
        if error.stage is Stage.API and (theirs := _EARLIER.sub("", error.message)) != NONE_CREATED
    ]
    return _FailedRow(
        source_row=source_row,
        stage=Stage(errors[0].stage).value,
        error=_excel_text("; ".join([*map(words.describe, errors), *notes]))[0],
        values=values,
        comments={i: "\n".join(messages) for i, messages in comments.items()},
        lsq=_excel_text("; ".join(dict.fromkeys(said)))[0],
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


class _Wording:
    """Messages as a person reads them: fields by display name, no exception types or strptime codes.

    Each distinct message is worded once: a large run repeats a few messages many times.
    """

    def __init__(self, labels: Mapping[str, str]) -> None:
        self.labels = labels
        by_schema = {m.group(1): label for label in labels.values() if (m := _LABELLED.search(label))}
        self._schema = by_schema
        self._plain: dict[tuple[str, bool], str] = {}

    def label(self, error: RowError) -> str:
        """The field or column an error is about ('' for the whole row)."""
        return self.labels.get(error.column, error.column) if error.column else ""

    def describe(self, error: RowError) -> str:
        """The row's Error text for one error: 'PAN (mx_Custom_1): is empty, but a value is required'."""
        label = self.label(error)
        return f"{label}: {self.plain(error)}" if label else self.plain(error)

    def plain(self, error: RowError) -> str:
        key = (error.message, error.stage is Stage.API)
        worded = self._plain.get(key)
        if worded is None:
            worded = self._plain[key] = self._word(*key)
        return worded

    def _word(self, message: str, from_lsq: bool) -> str:
        text = _EXCEPTION_TYPE.sub("", message)
        if from_lsq:
            for pattern, wording in _LSQ_WORDINGS:
                match = pattern.search(text)
                if match:
                    worded = wording.format(*match.groups())
                    return _BARE_SCHEMA.sub(lambda m: self._schema_label(m.group(1)), worded)
        text = _QUOTED_FORMAT.sub(lambda m: f"'{human_format(m.group(1))}'", text)
        text = _API_NAME.sub(lambda m: _API_NAMES[m.group(1)], text)
        text = _BARE_SCHEMA.sub(lambda m: self._schema_label(m.group(1)), text)
        return f"LeadSquared refused the row: {text}" if from_lsq else text

    def _schema_label(self, schema_name: str) -> str:
        return self._schema.get(schema_name, f"field {schema_name}")


_EARLIER = re.compile(re.escape(EARLIER_FAILURE).replace(re.escape("{day}"), r"[\d-]+") + "$")
_LABELLED = re.compile(r"\((mx_Custom_\d+)\)$")
_EXCEPTION_TYPE = re.compile(r"\b(MX|System\.)?\w*Exception:\s*")
_QUOTED_FORMAT = re.compile(r"'([^']*%[a-zA-Z][^']*)'")
_BARE_SCHEMA = re.compile(r"(?<!\()\b(mx_Custom_\d+)\b(?! \()")
_API_NAMES = {
    "ActivityOwnerEmail": "the owner email",
    "ActivityDateTime": "the activity date",
    "ActivityNote": "the note",
    "ActivityEvent": "the activity type",
}
_API_NAME = re.compile(r"\b(" + "|".join(_API_NAMES) + r")\b")
# LeadSquared's messages as docs/leadsquared-api.md and the sandbox know them, put in words.
_LSQ_WORDINGS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"Opportunity '?([^' ]+)'? does not exist"),
        "LeadSquared has no opportunity '{0}' that these keys can see: check the opportunity id",
    ),
    (
        re.compile(r"ActivityOwnerEmail '?([^' ]+)'? is not a user"),
        "'{0}' is not a user of this LeadSquared account: use the email of an active user",
    ),
    (
        re.compile(r"Invalid value '(.*)' for (mx_Custom_\d+) \((\w+)\)"),
        "LeadSquared does not take '{0}' as a {2} value",
    ),
    (
        re.compile(r"Field '?(mx_Custom_\d+)'? does not exist on activity type (\d+)"),
        "activity type {1} has no {0}: check the mapping",
    ),
    (
        re.compile(r"Lead not found|Invalid lead", re.IGNORECASE),
        "the opportunity's lead is no longer in LeadSquared (deleted or merged)",
    ),
]


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
    sheet: Sheet,
    rows: list[_FailedRow],
    by_row: dict[int, list[RowError]],
    *,
    words: _Wording,
    totals: Totals | None,
    workbook_name: str,
) -> Iterator[list[Cell]]:
    """The totals, how to fix and re-upload, rows per stage, then rows per column and problem."""
    source = f"{sheet.path}, sheet {sheet.sheet_name}" if sheet.sheet_name else str(sheet.path)
    yield [(_excel_text(f"Input file: {source}")[0], BOLD_TEXT)]
    yield from _totals_rows(rows, totals)
    yield []
    yield [("How to fix and re-upload", BOLD_TEXT)]
    for line in _how_to_fix(workbook_name):
        yield [(line, TEXT)]
    yield []
    per_stage = Counter(row.stage for row in rows)
    yield [("Error Stage", BOLD_TEXT), ("Rows", BOLD_TEXT)]
    for stage in Stage:
        yield [(stage.value, TEXT), (per_stage[stage.value], NUMBER)]
    yield [("Total", BOLD_TEXT), (len(rows), BOLD_NUMBER)]
    yield []
    yield from _problem_rows(by_row, words)


def _totals_rows(rows: list[_FailedRow], totals: Totals | None) -> Iterator[list[Cell]]:
    if totals is not None:
        yield [("Rows in the file", BOLD_TEXT), (totals.rows_total, NUMBER)]
        posted = "Posted to LeadSquared" if totals.sent else "Posted (validate only: nothing is sent)"
        yield [(posted, BOLD_TEXT), (totals.posted, NUMBER)]
        yield [("Skipped: already in LeadSquared", BOLD_TEXT), (totals.skipped, NUMBER)]
    yield [("Failed or not sent: the rows of this workbook", BOLD_TEXT), (len(rows), NUMBER)]


def _how_to_fix(workbook_name: str) -> list[str]:
    return [
        "1. On the Errors sheet, read each row's Error and fix the cell shown in red "
        "(its comment says what is wrong); a row marked 'not sent' or 'unknown' needs no change.",
        "2. Save this workbook as it is: keep its sheets and extra columns, they are ignored on re-upload.",
        f"3. Import it again with the same mapping (lsq-import run {workbook_name} --mapping ...): "
        "rows already in LeadSquared are never posted twice.",
    ]


def _problem_rows(by_row: dict[int, list[RowError]], words: _Wording) -> Iterator[list[Cell]]:
    """Rows per (column, problem, stage), most first: a problem is its message without the values."""
    counts: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], str] = {}
    for errors in by_row.values():  # a problem counts once per row
        seen = set()
        for error in errors:
            plain = words.plain(error)
            key = (words.label(error), _problem(plain), Stage(error.stage).value)
            if key not in seen:
                seen.add(key)
                counts[key] += 1
                examples.setdefault(key, _example(plain))
    yield [(name, BOLD_TEXT) for name in PROBLEM_HEADERS]
    common = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    for (label, problem, stage), count in common[:MAX_SUMMARY_MESSAGES]:
        example = examples[label, problem, stage]
        yield [(_excel_text(label or "(the whole row)")[0], TEXT), (count, NUMBER),
               (_excel_text(problem)[0], TEXT), (_excel_text(example)[0], TEXT), (stage, TEXT)]  # fmt: skip
    if rest := common[MAX_SUMMARY_MESSAGES:]:
        others = f"... {len(rest):,} more problems, each on fewer rows"
        yield [("", TEXT), (sum(count for _, count in rest), NUMBER), (others, TEXT)]
    yield [("Total", BOLD_TEXT), (counts.total(), BOLD_NUMBER)]


_VALUE = re.compile(r"'[^']*'")
_DAY = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def _problem(message: str) -> str:
    """The message without the values it quotes: one line in the Summary for all of them."""
    return _DAY.sub("(date)", _VALUE.sub("'...'", message)).removesuffix(": '...'")


def _example(message: str) -> str:
    """The first value a message quotes ('' when it quotes none)."""
    match = _VALUE.search(message)
    return match.group()[1:-1] if match else ""


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
    widths = [_width(n) for n in longest]
    widths[2] = ERROR_COLUMN_WIDTH  # wide and wrapped: a message is read whole, never cut
    if LSQ_HEADER in header:
        widths[header.index(LSQ_HEADER)] = min(widths[header.index(LSQ_HEADER)], LSQ_COLUMN_WIDTH)
    return widths


def _summary_sheet(
    sheet: Sheet,
    rows: list[_FailedRow],
    by_row: dict[int, list[RowError]],
    *,
    words: _Wording,
    totals: Totals | None,
    workbook_name: str,
) -> _SheetPart:
    cells = list(_summary_rows(sheet, rows, by_row, words=words, totals=totals, workbook_name=workbook_name))
    longest = [0] * max(map(len, cells))
    for line in cells:
        if len(line) == 1:  # a heading or a line of the fixing steps: it may run over the next columns
            continue
        for i, (value, _style) in enumerate(line):
            longest[i] = max(longest[i], len(str(value)))
    widths = [_width(n) for n in longest]
    widths[0] = SUMMARY_LABEL_WIDTH
    widths[2] = max(widths[2], SUMMARY_PROBLEM_WIDTH)
    return _SheetPart(SUMMARY_SHEET, iter(cells), len(cells), widths, [], frozen=False)


def _width(characters: int) -> float:
    """A column width that shows `characters`, within readable bounds."""
    return min(MAX_COLUMN_WIDTH, max(MIN_COLUMN_WIDTH, characters + 2))


# How the workbook is stored. openpyxl lays each sheet out (column widths, print setup, the frozen
# header and its filter, the styles, the parts a comment needs) and the rows' cells and the comments
# are written here, as the XML openpyxl itself writes for them: openpyxl took 80 µs a cell and 140 µs
# a comment, and the bench's workbook of 1,008 failed rows went from 0.9 s to 0.22 s.

_BOLD = Font(bold=True)
_WRAPPED = Alignment(wrap_text=True, vertical="top")
_FLAG_FILL = PatternFill("solid", start_color="FFFFC7CE", end_color="FFFFC7CE")
_SHEET_DATA = re.compile(rb"<sheetData\s*/>|<sheetData>.*?</sheetData>", re.S)
_RELATED = re.compile(r'Target="([^"]+)"')
_COMMENT_LIST = re.compile(rb"<commentList>.*</commentList>", re.S)
_SHAPE = re.compile(rb"<(?:\w+:)?shape\s[^>]*>.*?</(?:\w+:)?shape>", re.S)
_SHAPE_HEIGHT = re.compile(rb"height:\d+px")
_SHAPE_ID = re.compile(rb'id="_x0000_s\d+"')
_FIRST_SHAPE_ID = 1026  # openpyxl's, as Excel numbers them
_CLIENT_ROW = re.compile(rb"(<(?:\w+:)?Row>)\d+(</)")
_CLIENT_COLUMN = re.compile(rb"(<(?:\w+:)?Column>)\d+(</)")
_DIMENSION = re.compile(rb'<dimension ref="[^"]*"\s*/>')


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
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    parts: dict[str, _SheetPart] = {}  # by the name openpyxl stores the sheet under
    for number, part in enumerate(sheets, start=1):
        worksheet = book.create_sheet(part.name)
        for column, width in enumerate(part.widths, start=1):
            worksheet.column_dimensions[get_column_letter(column)].width = width
        _print_setup(worksheet, repeat_header=part.frozen)
        if part.frozen:
            worksheet.freeze_panes = "A2"
            worksheet.auto_filter.ref = part.ref
        # openpyxl writes one comment (on a cell of its own, which the rows replace), and so the
        # parts comments need; `_comment_list` and `_vml_shapes` write them all
        for row, column, text in part.comments[:1]:
            worksheet.cell(row, column).comment = Comment(
                _ooxml_text(text), COMMENT_AUTHOR, width=COMMENT_WIDTH, height=_comment_height(text)
            )
        parts[f"xl/worksheets/sheet{number}.xml"] = part
    styles = _Styles(book.worksheets[0])  # the workbook's: every sheet's cells use them
    with tempfile.TemporaryFile() as staged:
        book.save(staged)
        staged.seek(0)
        _finish_parts(staged, file, parts, styles)


def _finish_parts(source: BinaryIO, target: BinaryIO, parts: dict[str, _SheetPart], styles: _Styles) -> None:
    """Copy the saved workbook with each sheet's rows and comments written in."""
    with zipfile.ZipFile(source) as staged, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        comments = _comments_by_part(staged, parts)
        for info in staged.infolist():
            if info.filename in comments:
                write = _vml_shapes if info.filename.endswith(".vml") else _comment_list
                out.writestr(info, write(staged.read(info), comments[info.filename]))
            elif info.filename in parts:
                _write_sheet(out, info, staged.read(info), parts.pop(info.filename), styles)
            else:
                with staged.open(info) as part, out.open(info, "w") as copy:
                    shutil.copyfileobj(part, copy, 1 << 20)
    if parts:
        raise ValueError(f"openpyxl stored no {', '.join(parts)}")


def _write_sheet(
    out: zipfile.ZipFile, info: zipfile.ZipInfo, frame: bytes, part: _SheetPart, styles: _Styles
) -> None:
    """openpyxl's sheet with the rows in place of the comments' cells. Spooled first: a sheet of
    over 2 GiB needs ZIP64, which must be known before it is stored."""
    frame = _DIMENSION.sub(f'<dimension ref="{part.ref}"/>'.encode(), frame, count=1)
    data = _SHEET_DATA.search(frame)
    if data is None:
        raise ValueError(f"openpyxl stored {info.filename} without its sheetData")
    with tempfile.TemporaryFile() as spooled:
        spooled.write(frame[: data.start()] + b"<sheetData>")
        for row in _rows_xml(part, styles):
            spooled.write(row.encode())
        spooled.write(b"</sheetData>" + frame[data.end() :])
        size = spooled.tell()
        spooled.seek(0)
        with out.open(info, "w", force_zip64=size > zipfile.ZIP64_LIMIT // 2) as copy:
            shutil.copyfileobj(spooled, copy, 1 << 20)


def _comments_by_part(
    staged: zipfile.ZipFile, parts: dict[str, _SheetPart]
) -> dict[str, list[tuple[int, int, str]]]:
    """The comments of each comments part and VML drawing openpyxl stored, found from the sheets'
    relationships."""
    found = {}
    names = set(staged.namelist())
    for name, part in parts.items():
        folder, _, file = name.rpartition("/")
        rels = f"{folder}/_rels/{file}.rels"
        if not part.comments or rels not in names:
            continue
        for target in _RELATED.findall(staged.read(rels).decode()):
            if target.lstrip("/") in names and ("/comments" in target or target.endswith(".vml")):
                found[target.lstrip("/")] = part.comments
    return found


def _comment_list(stored: bytes, comments: list[tuple[int, int, str]]) -> bytes:
    """openpyxl's comments part, holding every comment."""
    listed = "".join(
        f'<comment ref="{get_column_letter(column)}{row}" authorId="0" shapeId="0"><text>{_text_xml(text)}</text></comment>'
        for row, column, text in comments
    )
    return _COMMENT_LIST.sub(lambda _: f"<commentList>{listed}</commentList>".encode(), stored, count=1)


def _vml_shapes(stored: bytes, comments: list[tuple[int, int, str]]) -> bytes:
    """openpyxl's drawing of the comment boxes with a box for every comment, each copied from the
    one it drew and anchored beside its cell (see `_anchor`)."""
    shapes = list(_SHAPE.finditer(stored))
    if len(shapes) != 1:
        raise ValueError(f"openpyxl drew {len(shapes)} comment boxes, not the one asked for")
    template = shapes[0].group()
    boxes = []
    for number, (row, column, text) in enumerate(comments):
        box = _SHAPE_HEIGHT.sub(b"height:%dpx" % _comment_height(text), template, count=1)
        box = _SHAPE_ID.sub(b'id="_x0000_s%d"' % (_FIRST_SHAPE_ID + number), box, count=1)
        box = _CLIENT_ROW.sub(rb"\g<1>%d\g<2>" % (row - 1), box, count=1)
        boxes.append(_CLIENT_COLUMN.sub(rb"\g<1>%d\g<2>" % (column - 1), box, count=1))
    drawn = stored[: shapes[0].start()] + b"".join(boxes) + stored[shapes[0].end() :]
    return _CLIENT_CELL.sub(_anchor, drawn)


def _comment_height(text: str) -> int:
    """Pixels that show every line of the comment in a box COMMENT_WIDTH wide."""
    return 20 + 16 * sum(1 + len(piece) // 40 for piece in text.split("\n"))


def _rows_xml(part: _SheetPart, styles: _Styles) -> Iterator[str]:
    """The sheet's rows as SpreadsheetML, a row at a time, as openpyxl writes them; every text
    cell forced to text."""
    letters = [get_column_letter(column) for column in range(1, len(part.widths) + 1)]
    for line, cells in enumerate(part.rows, start=1):
        height = _row_height(cells, part.widths)
        # Excel and LibreOffice keep the stored height: room for every line
        stored = height > LINE_HEIGHT
        xml = [f'<row r="{line}" ht="{height:g}" customHeight="1">' if stored else f'<row r="{line}">']
        wrap = len(cells) > 1  # a line on its own (a heading, a sentence) runs over the empty cells beside it
        for letter, (value, style) in zip(letters, cells, strict=False):
            text = isinstance(value, str)
            cell = f'<c r="{letter}{line}"{styles.attribute(style, wrap, text=text)}'
            if not text:
                xml.append(f'{cell} t="n"><v>{value}</v></c>')
            elif value:
                xml.append(f'{cell} t="inlineStr"><is>{_text_xml(cast(str, value))}</is></c>')
            else:
                xml.append(f"{cell}/>")
        xml.append("</row>")
        yield "".join(xml)


def _text_xml(text: str) -> str:
    """A <t> element holding the text exactly: escaped for XML and for OOXML, its spaces kept."""
    escaped = escape(_ooxml_text(text))
    if escaped and (escaped[0].isspace() or escaped[-1].isspace()):
        return f'<t xml:space="preserve">{escaped}</t>'
    return f"<t>{escaped}</t>"


def _row_height(cells: list[Cell], widths: list[float]) -> float:
    """The height that shows every wrapped line of the row's text cells (a guess: fonts differ)."""
    lines = 1
    for (value, _style), width in zip(cells, widths, strict=False):
        if isinstance(value, str) and len(cells) > 1 and len(value) > width - 1:
            per_line = max(1.0, width - 2) * 0.9  # words wrap before the edge
            lines = max(lines, sum(math.ceil(max(1, len(part)) / per_line) for part in value.split("\n")))
        elif isinstance(value, str) and "\n" in value:
            lines = max(lines, value.count("\n") + 1)
    return min(MAX_ROW_HEIGHT, lines * LINE_HEIGHT)


def _print_setup(worksheet: Any, *, repeat_header: bool) -> None:
    """Landscape, every column on the page's width, as many pages down as it takes."""
    worksheet.page_setup.orientation = "landscape"
    worksheet.page_setup.paperSize = PAPER_A4
    worksheet.page_setup.fitToWidth = 1
    worksheet.page_setup.fitToHeight = 0
    worksheet.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    worksheet.page_margins = PageMargins(left=0.4, right=0.4, top=0.5, bottom=0.5)
    if repeat_header:
        worksheet.print_title_rows = "1:1"


# openpyxl gives every comment box the same absolute place, so LibreOffice (which reads the
# position) stacks them all at the top left; an Anchor puts each one beside its cell, as Excel does.
_CLIENT_CELL = re.compile(rb"(<(\w+:)?Row>(\d+)</(?:\w+:)?Row>\s*<(?:\w+:)?Column>(\d+)</(?:\w+:)?Column>)")


def _anchor(match: re.Match[bytes]) -> bytes:
    """LeftColumn, LeftOffset, TopRow, TopOffset, RightColumn, RightOffset, BottomRow, BottomOffset."""
    prefix, row, column = match.group(2) or b"", int(match.group(3)), int(match.group(4))
    box = [column + 1, 12, row, 2, column + 1 + COMMENT_COLUMNS, 12, row + COMMENT_ROWS, 2]
    anchor = b", ".join(str(n).encode() for n in box)
    return b"<%bAnchor>%b</%bAnchor>%b" % (prefix, anchor, prefix, match.group(1))


def _ooxml_text(text: str) -> str:
    """Text as Excel itself escapes it, so it reads back exactly in Excel and python-calamine."""
    return _NEEDS_ESCAPE.sub(lambda m: "_x005F_" if m.group() == "_" else f"_x{ord(m.group()):04X}_", text)


class _Styles:
    """The `s` attribute of each kind of cell. Every combination is added to the workbook before
    it is saved (the rows are written after): the unused ones cost a line of styles.xml each."""

    def __init__(self, worksheet: Any) -> None:
        self._attributes: dict[tuple[int, bool, bool], str] = {}
        for style, wrap, text in itertools.product(_STYLES, (False, True), (False, True)):
            index = _styled(ExcelCell(worksheet, row=1, column=1), style, wrap=wrap, text=text).style_id
            self._attributes[style, wrap, text] = f' s="{index}"' if index else ""

    def attribute(self, style: int, wrap: bool, *, text: bool) -> str:
        return self._attributes[style, wrap, text]


def _styled(cell: ExcelCell, style: int, *, wrap: bool, text: bool) -> ExcelCell:
    if text:
        cell.number_format = "@"  # Text format: a user's edit in Excel stays text too
    if style in (BOLD_TEXT, BOLD_NUMBER):
        cell.font = _BOLD
    elif style == FLAGGED:
        cell.fill = _FLAG_FILL
    if wrap:
        cell.alignment = _WRAPPED
    return cell
