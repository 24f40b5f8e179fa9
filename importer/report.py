"""The error workbook: every failed input row with its errors, ready to fix in Excel and re-import.

Sheet `Errors` comes first, so the importer reads it back. It has `Source Row`, `Error Stage` and
`Error`, then the original columns with the original text. A cell an error names is filled light
red and carries the message as a comment. Sheet `Summary` counts rows per stage and per message.

The workbook is written directly as SpreadsheetML (a zip of XML parts), not through openpyxl.
openpyxl cannot store a carriage return: it writes a raw CR, which every XML parser reads back as
LF. It also drops `xml:space="preserve"` on whitespace-only text, which calamine then reads as ''.
And it needs about 40 s for 100,000 rows with comments. The parts follow the layout openpyxl
writes. Each text is stored as faithfully as a cell allows:

- as an inline string with `xml:space="preserve"`, so it is never a formula, leading zeros, spaces
  and line breaks stay, and a CR is written as `&#13;`. The cell is Text-formatted, so a user's
  edit in Excel stays text too.
- a literal `_xHHHH_` is split across two runs. In one run, Excel and calamine decode `_x0041_`
  as "A", and openpyxl does not read Excel's own `_x005F_` escape.
- characters XML 1.0 cannot hold (controls other than tab, LF and CR; U+FFFE; U+FFFF; lone
  surrogates) are replaced with U+FFFD, and the row's `Error` says so. Excel's `_xHHHH_` escape
  is not used because openpyxl reads it back as literal text.
- text over Excel's cell limit keeps its first 32,767 characters (UTF-16 units, as Excel counts),
  and the row's `Error` says so.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pandas as pd
from openpyxl.utils import get_column_letter

from importer.errors import OutputError
from importer.records import RowError, Sheet, Stage

ERRORS_SHEET = "Errors"
SUMMARY_SHEET = "Summary"
LEAD_HEADERS = ("Source Row", "Error Stage", "Error")
COMMENT_AUTHOR = "lsq-import"

MAX_CELL_CHARS = 32_767  # Excel's limit, in UTF-16 code units
MAX_SHEET_ROWS = 1_048_576
MAX_COLUMN_WIDTH = 60
MAX_SUMMARY_MESSAGES = 1000
MIN_COLUMN_WIDTH = 8
REPLACEMENT = "\ufffd"

# Indexes into the cellXfs of _STYLES_XML.
NUMBER, TEXT, FLAGGED, BOLD_TEXT, BOLD_NUMBER = range(5)

_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPE_LIKE = re.compile("(?=_x[0-9A-Fa-f]{4}_)")  # a lookahead, so overlapping ones count too

Cell = tuple[str | int, int]  # (value, style)


def write_error_workbook(path: str | Path, sheet: Sheet, errors: Iterable[RowError]) -> Path:
    """Write the failed rows of `sheet` to an .xlsx at `path`, atomically; return the path."""
    target = Path(path)
    by_row = _group_by_row(errors)
    columns = _original_columns(sheet.headers)
    rows = _failed_rows(sheet, by_row, columns)
    if len(rows) + 1 > MAX_SHEET_ROWS:
        raise OutputError(f"{target}: {len(rows):,} failed rows do not fit in one Excel sheet")
    header = [*LEAD_HEADERS, *(_excel_text(sheet.headers[i])[0] for i in columns)]
    sheets = [_errors_sheet(header, rows), _summary_sheet(sheet, rows, by_row)]
    _write_atomically(target, lambda file: _write_workbook(file, sheets))
    return target


def check_writable(path: str | Path) -> None:
    """Raise OutputError now if the workbook could not be written to `path` later."""
    target = Path(path)
    if not target.parent.is_dir():
        raise OutputError(f"{target}: cannot write here, {target.parent} is not an existing folder")
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give a file name for the error workbook")
    try:
        _create_temp_file(target).unlink()
        if target.exists():
            with target.open("r+b"):  # fails when read-only or (on Windows) open in Excel
                pass
    except OSError as error:
        raise OutputError(f"{target}: cannot write the error workbook: {_reason(error)}") from error


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
        return [i for i, header in enumerate(headers) if header not in LEAD_HEADERS]
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


def _original_values(sheet: Sheet, source_rows: list[int], columns: list[int]) -> list[list]:
    """The input cells of each source row; blank when the sheet does not hold the row."""
    index = {row: i for i, row in enumerate(sheet.source_rows)}
    found = [index.get(row) for row in source_rows]
    block = sheet.frame.iloc[[i for i in found if i is not None], columns]
    present = iter(block.to_numpy(dtype=object).tolist())
    return [next(present) if i is not None else [""] * len(columns) for i in found]


def _failed_row(
    source_row: int,
    errors: list[RowError],
    raw: list,
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


def _stored_values(raw: list, names: list[str]) -> tuple[list[str], list[str]]:
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
    return "" if value is None or pd.isna(value) else str(value)


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
    for (message, stage), count in common[:MAX_SUMMARY_MESSAGES]:
        yield [(_excel_text(message)[0], TEXT), (stage, TEXT), (count, NUMBER)]
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


# How the workbook is stored: SpreadsheetML parts in a zip, laid out as openpyxl lays them out.


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
        return f"A1:{get_column_letter(max(len(self.widths), 1))}{self.n_rows}"


_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_WRITE_SIZE = 1 << 20  # characters gathered before one write into the zip

_STYLES_XML = (
    f'{_XML_DECL}<styleSheet xmlns="{_MAIN_NS}">'
    '<fonts count="2">'
    '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    "</fonts>"
    '<fills count="3">'
    '<fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill>'
    '<fill><patternFill patternType="solid"><fgColor rgb="FFFFC7CE"/><bgColor indexed="64"/>'
    "</patternFill></fill>"
    "</fills>"
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="5">'  # NUMBER, TEXT, FLAGGED, BOLD_TEXT, BOLD_NUMBER; 49 is the Text format
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="49" fontId="0" fillId="2" borderId="0" xfId="0" applyNumberFormat="1"'
    ' applyFill="1"/>'
    '<xf numFmtId="49" fontId="1" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"'
    ' applyFont="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    '<dxfs count="0"/>'
    '<tableStyles count="0" defaultTableStyle="TableStyleMedium9"'
    ' defaultPivotStyle="PivotStyleLight16"/>'
    "</styleSheet>"
)

_VML_SHAPE = (
    '<v:shape id="_x0000_s{shape_id}" type="#_x0000_t202" style="position:absolute;'
    "margin-left:59.25pt;margin-top:1.5pt;width:108pt;height:59.25pt;z-index:{z};"
    'visibility:hidden" fillcolor="#ffffe1" o:insetmode="auto">'
    '<v:fill color2="#ffffe1"/><v:shadow on="t" color="black" obscured="t"/>'
    '<v:path o:connecttype="none"/>'
    '<v:textbox style="mso-direction-alt:auto"><div style="text-align:left"></div></v:textbox>'
    '<x:ClientData ObjectType="Note"><x:MoveWithCells/><x:SizeWithCells/>'
    "<x:Anchor>{anchor}</x:Anchor><x:AutoFill>False</x:AutoFill>"
    "<x:Row>{row}</x:Row><x:Column>{column}</x:Column></x:ClientData></v:shape>"
)


def _write_workbook(file: BinaryIO, sheets: list[_SheetPart]) -> None:
    # Level 1: a sixth larger than the default level 6, and a second faster per 100,000 rows.
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as package:
        _write_part(package, "[Content_Types].xml", [_content_types_xml(sheets)])
        _write_part(package, "_rels/.rels", [_root_rels_xml()])
        _write_part(package, "docProps/core.xml", [_core_xml()])
        _write_part(package, "docProps/app.xml", [_app_xml()])
        _write_part(package, "xl/workbook.xml", [_workbook_xml(sheets)])
        _write_part(package, "xl/_rels/workbook.xml.rels", [_workbook_rels_xml(sheets)])
        _write_part(package, "xl/styles.xml", [_STYLES_XML])
        vml_block = 1  # each VML drawing owns shape ids in blocks of 1024
        for n, sheet in enumerate(sheets, start=1):
            _write_part(package, f"xl/worksheets/sheet{n}.xml", _sheet_xml(sheet, n == 1))
            if sheet.comments:
                _write_part(package, f"xl/worksheets/_rels/sheet{n}.xml.rels", [_sheet_rels_xml(n)])
                _write_part(package, f"xl/comments{n}.xml", _comments_xml(sheet.comments))
                _write_part(package, f"xl/drawings/vmlDrawing{n}.vml", _vml(sheet, vml_block))
                vml_block += len(sheet.comments) // 1024 + 1


def _write_part(package: zipfile.ZipFile, name: str, pieces: Iterable[str]) -> None:
    """Stream one part into the zip, in writes of about _WRITE_SIZE characters."""
    with package.open(name, "w") as part:
        buffer: list[str] = []
        size = 0
        for piece in pieces:
            buffer.append(piece)
            size += len(piece)
            if size >= _WRITE_SIZE:
                part.write("".join(buffer).encode("utf-8"))
                buffer.clear()
                size = 0
        part.write("".join(buffer).encode("utf-8"))


def _sheet_xml(sheet: _SheetPart, selected: bool) -> Iterator[str]:
    yield f'{_XML_DECL}<worksheet xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
    yield f'<dimension ref="{sheet.ref}"/>'
    yield _sheet_view_xml(sheet.frozen, selected)
    yield '<sheetFormatPr defaultRowHeight="15"/>'
    yield _cols_xml(sheet.widths)
    yield "<sheetData>"
    yield from _rows_xml(sheet.rows)
    yield "</sheetData>"
    if sheet.frozen:
        yield f'<autoFilter ref="{sheet.ref}"/>'
    yield '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
    # IDs such as 00123 are text on purpose: no green "number stored as text" triangles
    yield f'<ignoredErrors><ignoredError sqref="{sheet.ref}" numberStoredAsText="1"/></ignoredErrors>'
    if sheet.comments:
        yield '<legacyDrawing r:id="rId2"/>'
    yield "</worksheet>"


def _sheet_view_xml(frozen: bool, selected: bool) -> str:
    tab = ' tabSelected="1"' if selected else ""
    if not frozen:
        return f'<sheetViews><sheetView{tab} workbookViewId="0"/></sheetViews>'
    return (
        f'<sheetViews><sheetView{tab} workbookViewId="0">'
        '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
        '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
        "</sheetView></sheetViews>"
    )


def _cols_xml(widths: list[float]) -> str:
    cols = "".join(
        f'<col min="{i}" max="{i}" width="{width}" customWidth="1"/>'
        for i, width in enumerate(widths, start=1)
    )
    return f"<cols>{cols}</cols>" if cols else ""


def _rows_xml(rows: Iterator[list[Cell]]) -> Iterator[str]:
    letters: list[str] = []
    for line, cells in enumerate(rows, start=1):
        if len(letters) < len(cells):
            letters = [get_column_letter(i) for i in range(1, len(cells) + 1)]
        if cells:
            xml = "".join([_cell_xml(f"{letters[i]}{line}", *cell) for i, cell in enumerate(cells)])
            yield f'<row r="{line}">{xml}</row>'


def _cell_xml(ref: str, value: str | int, style: int) -> str:
    # The hot loop of a large workbook: the common cases are handled here without more calls.
    if value.__class__ is not str:
        return f'<c r="{ref}" s="{style}"><v>{value}</v></c>'
    if not value:
        return f'<c r="{ref}" s="{style}"/>'  # styled, so what a user types here stays text
    if "_x" in value or "&" in value or "<" in value or ">" in value or "\r" in value:
        return f'<c r="{ref}" s="{style}" t="inlineStr"><is>{_text_xml(value)}</is></c>'
    return f'<c r="{ref}" s="{style}" t="inlineStr"><is><t xml:space="preserve">{value}</t></is></c>'


def _text_xml(text: str) -> str:
    """The <t> elements of a text; split where `_xHHHH_` would otherwise be decoded."""
    if not _ESCAPE_LIKE.search(text):
        return f'<t xml:space="preserve">{_escape(text)}</t>'
    cuts = [0, *(match.start() + 1 for match in _ESCAPE_LIKE.finditer(text)), len(text)]
    return "".join(
        f'<r><t xml:space="preserve">{_escape(text[start:end])}</t></r>'
        for start, end in itertools.pairwise(cuts)
    )


def _escape(text: str) -> str:
    # CR as a character reference: a raw one would be read back as LF (XML line-end handling)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _comments_xml(comments: list[tuple[int, int, str]]) -> Iterator[str]:
    yield (
        f'{_XML_DECL}<comments xmlns="{_MAIN_NS}">'
        f"<authors><author>{COMMENT_AUTHOR}</author></authors><commentList>"
    )
    for row, column, text in comments:
        ref = f"{get_column_letter(column)}{row}"
        yield f'<comment ref="{ref}" authorId="0"><text>{_text_xml(text)}</text></comment>'
    yield "</commentList></comments>"


def _vml(sheet: _SheetPart, first_block: int) -> Iterator[str]:
    """The legacy drawing Excel needs to show the comments (notes) of a sheet."""
    blocks = range(first_block, first_block + len(sheet.comments) // 1024 + 1)
    yield (
        '<xml xmlns:v="urn:schemas-microsoft-com:vml"'
        ' xmlns:o="urn:schemas-microsoft-com:office:office"'
        ' xmlns:x="urn:schemas-microsoft-com:office:excel">'
        f'<o:shapelayout v:ext="edit"><o:idmap v:ext="edit" data="{",".join(map(str, blocks))}"/>'
        "</o:shapelayout>"
        '<v:shapetype id="_x0000_t202" coordsize="21600,21600" o:spt="202"'
        ' path="m,l,21600r21600,l21600,xe"><v:stroke joinstyle="miter"/>'
        '<v:path gradientshapeok="t" o:connecttype="rect"/></v:shapetype>'
    )
    first_id = 1024 * first_block + 1
    for n, (row, column, _text) in enumerate(sheet.comments):
        top = max(row - 2, 0)  # the box starts a row above the cell, one column to its right
        anchor = f"{column}, 15, {top}, 10, {column + 2}, 15, {top + 4}, 4"
        yield _VML_SHAPE.format(shape_id=first_id + n, z=n + 1, anchor=anchor, row=row - 1, column=column - 1)
    yield "</xml>"


def _content_types_xml(sheets: list[_SheetPart]) -> str:
    kind = "application/vnd.openxmlformats-officedocument"
    overrides = [
        ("/xl/workbook.xml", f"{kind}.spreadsheetml.sheet.main+xml"),
        ("/xl/styles.xml", f"{kind}.spreadsheetml.styles+xml"),
        ("/docProps/core.xml", "application/vnd.openxmlformats-package.core-properties+xml"),
        ("/docProps/app.xml", f"{kind}.extended-properties+xml"),
    ]
    for n, sheet in enumerate(sheets, start=1):
        overrides.append((f"/xl/worksheets/sheet{n}.xml", f"{kind}.spreadsheetml.worksheet+xml"))
        if sheet.comments:
            overrides.append((f"/xl/comments{n}.xml", f"{kind}.spreadsheetml.comments+xml"))
    return (
        f'{_XML_DECL}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Default Extension="vml" ContentType="{kind}.vmlDrawing"/>'
        + "".join(f'<Override PartName="{p}" ContentType="{t}"/>' for p, t in overrides)
        + "</Types>"
    )


def _relationships_xml(relationships: list[tuple[str, str]]) -> str:
    """A .rels part: (type, target) pairs, given ids rId1, rId2, ... in order."""
    items = "".join(
        f'<Relationship Id="rId{n}" Type="{kind}" Target="{target}"/>'
        for n, (kind, target) in enumerate(relationships, start=1)
    )
    return f'{_XML_DECL}<Relationships xmlns="{_PKG_REL_NS}">{items}</Relationships>'


def _root_rels_xml() -> str:
    return _relationships_xml(
        [
            (f"{_REL_NS}/officeDocument", "xl/workbook.xml"),
            (f"{_PKG_REL_NS}/metadata/core-properties", "docProps/core.xml"),
            (f"{_REL_NS}/extended-properties", "docProps/app.xml"),
        ]
    )


def _workbook_rels_xml(sheets: list[_SheetPart]) -> str:
    worksheets = [(f"{_REL_NS}/worksheet", f"worksheets/sheet{n}.xml") for n in range(1, len(sheets) + 1)]
    return _relationships_xml([*worksheets, (f"{_REL_NS}/styles", "styles.xml")])


def _sheet_rels_xml(n: int) -> str:
    return _relationships_xml(
        [
            (f"{_REL_NS}/comments", f"../comments{n}.xml"),
            (f"{_REL_NS}/vmlDrawing", f"../drawings/vmlDrawing{n}.vml"),
        ]
    )


def _workbook_xml(sheets: list[_SheetPart]) -> str:
    entries = "".join(
        f'<sheet name="{sheet.name}" sheetId="{n}" r:id="rId{n}"/>' for n, sheet in enumerate(sheets, start=1)
    )
    names = "".join(  # Excel keeps an autofilter's range in this hidden name
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="{n}" hidden="1">'
        f"'{sheet.name}'!{_absolute(sheet.ref)}</definedName>"
        for n, sheet in enumerate(sheets)
        if sheet.frozen
    )
    return (
        f'{_XML_DECL}<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
        '<bookViews><workbookView activeTab="0"/></bookViews>'
        f"<sheets>{entries}</sheets>"
        + (f"<definedNames>{names}</definedNames>" if names else "")
        + "</workbook>"
    )


def _absolute(ref: str) -> str:
    """A1:M20 -> $A$1:$M$20."""
    return re.sub(r"([A-Z]+)(\d+)", r"$\1$\2", ref)


def _core_xml() -> str:
    return (
        f"{_XML_DECL}<cp:coreProperties"
        ' xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:creator>{COMMENT_AUTHOR}</dc:creator></cp:coreProperties>"
    )


def _app_xml() -> str:
    return (
        f"{_XML_DECL}<Properties xmlns="
        '"http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
        f"<Application>{COMMENT_AUTHOR}</Application></Properties>"
    )


# Writing the file safely.


def _write_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temp file beside `target`: `target` is the old file or the whole new one."""
    temp: Path | None = None
    try:
        temp = _create_temp_file(target)
        with temp.open("wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except OSError as error:
        raise OutputError(f"{target}: cannot write the error workbook: {_reason(error)}") from error
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)


def _create_temp_file(target: Path) -> Path:
    """An empty new file beside `target` (created with the user's umask, unlike mkstemp)."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    temp.open("xb").close()
    return temp


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
