"""Read a CSV file or one sheet of a workbook as the text a user sees in the spreadsheet.

Every cell becomes a `str` ('' when empty); nothing is parsed into numbers or dates here, so
`00123` stays `00123` and `NA` stays `NA`. Rows keep the number the spreadsheet shows them on.

How a workbook cell becomes text (what Excel shows in the formula bar):
- integral numbers without a decimal point (`12`, `123457000000000000`); other numbers with at
  most 15 significant digits, Excel's precision (`0.1 + 0.2` is `0.3`), written out in full
  between 1e-9 and 1e21 and as `1.5E-12` outside that range;
- TRUE/FALSE; dates `YYYY-MM-DD`; date-times `YYYY-MM-DD HH:MM:SS` rounded to the second, or
  `YYYY-MM-DD` when the time is exactly midnight; times `HH:MM:SS`; durations `H:MM:SS` (`26:03:00`);
- formulas give their last computed value; error cells (`#N/A`, `#DIV/0!`) and formulas never
  calculated read as '' because python-calamine does not report them, so `Sheet.cell_problems`
  names them (and 16+ digit numbers, which lost digits in Excel) for validation to fail their rows;
- merged cells: a range spanning rows below the header gives its value to each row (as Excel shows
  it); across columns the value stays in the leftmost cell.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import python_calamine as calamine

from importer import sheet_prefetch
from importer.errors import InputFileError
from importer.gcpause import gc_paused
from importer.records import Sheet
from importer.workbook_zip import check_unpacked_size, scan_sheet

WORKBOOK_SUFFIXES = sheet_prefetch.SUFFIXES
TEXT_SUFFIXES = frozenset({".csv", ".txt", ".tsv"})
DELIMITERS = (",", ";", "\t")

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and what Excel wraps an encrypted .xlsx in
_CHUNK_BYTES = 1 << 20
_SAMPLE_CHARS = 1 << 16  # enough text to see the header and the delimiter
_SAMPLE_RECORDS = 50
_HEADER_EDGES = re.compile(r"^[\s\u200b-\u200d\u2060\ufeff]+|[\s\u200b-\u200d\u2060\ufeff]+$")
_PANDAS_TOO_MANY = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_PANDAS_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")
_ONE_SECOND = timedelta(seconds=1)
_HALF_SECOND = pd.Timedelta(microseconds=500_000)
MAX_TEXT_BYTES = 512 * 2**20  # a 200 MB CSV takes about 2 GB to read and validate: see README
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")
_UTF8_CHARACTER = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_UNDECODABLE = (
    "holds bytes that are not UTF-8 text (shown as \ufffd): the file was damaged or mixes encodings; "
    "type this cell again and save the file as 'CSV UTF-8'"
)


@dataclass
class _Grid:
    """Cells as read, before the headers are checked; `body` has positional columns."""

    header: list[str]
    body: pd.DataFrame
    first_row: int  # the sheet row number of body row 0
    sheet_name: str | None = None
    notes: list[str] = field(default_factory=list)
    problems: dict[int, dict[int, str]] = field(default_factory=dict)  # column -> {sheet row: why}


def load_sheet(path: str | Path, sheet: str | None = None) -> Sheet:
    """Read a CSV file or a workbook sheet (the first visible one by default) as text."""
    path = Path(path)
    if _is_workbook(path):
        grid = _read_workbook(path, sheet)
    else:
        grid = _read_text(path)
        if sheet is not None:
            grid.notes.append(f"a text file has a single sheet: the sheet name {sheet!r} was ignored")
    return _to_sheet(path, grid)


def _is_workbook(path: Path) -> bool:
    """Decide by the extension; sniff the first bytes when it is unknown."""
    head = _head(path, len(_OLE_MAGIC))
    suffix = path.suffix.lower()
    if suffix in WORKBOOK_SUFFIXES:
        return True
    looks_like_workbook = head.startswith((_ZIP_MAGIC, _OLE_MAGIC))
    if suffix in TEXT_SUFFIXES and looks_like_workbook:
        raise InputFileError(
            path, f"this is an Excel workbook saved with a {suffix} name: rename it to .xlsx"
        )
    return looks_like_workbook


def _head(path: Path, size: int) -> bytes:
    """The first bytes of the file; also where a missing or unreadable file is reported."""
    try:
        with path.open("rb") as file:
            return file.read(size)
    except FileNotFoundError:
        raise InputFileError(path, "the file does not exist") from None
    except IsADirectoryError:
        raise InputFileError(path, "this is a folder, not a file") from None
    except OSError as exc:
        raise InputFileError(path, f"the file cannot be read: {exc.strerror or exc}") from None


# --- CSV and other delimited text ------------------------------------------------------------


def _read_text(path: Path) -> _Grid:
    """Parse delimited text with pandas' C parser, every value kept as the text in the file."""
    _check_text_size(path)
    encoding, sample, complete, notes = _sniff_encoding(path)
    errors = "strict"
    if encoding == "cp1252" and _mostly_utf8(path):  # UTF-8 with a few bad bytes, not cp1252 text
        encoding, errors = "utf-8", "replace"
        sample, complete = _scan(path, encoding, errors)
        notes = [f"{path.name} is UTF-8 text, but some bytes in it are not: rows using those cells fail"]
    delimiter = _sniff_delimiter(sample, complete, prefer_tab=path.suffix.lower() == ".tsv")
    records = _sample_records(sample, complete, delimiter) or []
    header_at = _first_filled(records)
    if header_at is None:
        if complete:
            raise InputFileError(path, "the file is empty")
        raise InputFileError(path, f"no header row in the first {_SAMPLE_CHARS} characters")
    header = records[header_at]
    _refuse_title_row(path, header, records[header_at + 1 : header_at + 11], header_at + 1)
    frame = _parse_csv(path, encoding, delimiter, skip=header_at, width=len(header), errors=errors)
    grid = _Grid(header, frame.iloc[1:], first_row=header_at + 2, notes=notes)
    if errors == "replace":
        grid.problems = _undecodable_cells(grid)
    return grid


def _check_text_size(path: Path) -> None:
    """Refuse a text file too large to read in memory (about ten times its size once read)."""
    try:
        size = path.stat().st_size
    except OSError:
        return  # _head, just after, says why the file cannot be read
    if size > MAX_TEXT_BYTES:
        raise InputFileError(
            path,
            f"the file is {size / 1e6:,.0f} MB; files over {MAX_TEXT_BYTES / 1e6:,.0f} MB are not read, as "
            "reading one would take about ten times that in memory: split it into smaller files",
        )


def _mostly_utf8(path: Path) -> bool:
    """Whether most bytes beyond ASCII form UTF-8 characters: UTF-8 text with a few bad bytes."""
    utf8 = high = 0
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            high += len(_HIGH_BYTE.findall(chunk))
            utf8 += sum(map(len, _UTF8_CHARACTER.findall(chunk)))
    return utf8 > high / 2


def _undecodable_cells(grid: _Grid) -> dict[int, dict[int, str]]:
    """Cells holding U+FFFD, where bytes that are not UTF-8 were replaced: column -> {row: why}."""
    problems: dict[int, dict[int, str]] = {}
    for column in map(int, grid.body.columns):
        hits = np.flatnonzero(grid.body[column].str.contains("\ufffd", regex=False).to_numpy())
        if hits.size:
            problems[column] = {grid.first_row + int(i): _UNDECODABLE for i in hits}
    return problems


def _sniff_encoding(path: Path) -> tuple[str, str, bool, list[str]]:
    """Pick the encoding (BOM, else strict UTF-8, else cp1252) by decoding the whole file once."""
    head = _head(path, 4)
    if head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
    try:
        return (encoding, *_scan(path, encoding), [])
    except _UndecodableError as exc:
        if encoding != "utf-8":
            name = "UTF-16" if encoding == "utf-16" else "UTF-8"
            raise InputFileError(
                path, f"line {exc.line}: the file starts with a {name} mark but is not {name} text"
            ) from None
        first_bad_line = exc.line
    try:
        sample, complete = _scan(path, "cp1252")
    except _UndecodableError as exc:
        raise InputFileError(
            path,
            f"line {exc.line}: the text is neither UTF-8 nor Windows-1252; save it from Excel as 'CSV UTF-8'",
        ) from None
    note = (
        f"{path.name} is not UTF-8 (first at line {first_bad_line}), so it was read as "
        "Windows-1252 (cp1252); if accented letters look wrong, save it as 'CSV UTF-8'"
    )
    return "cp1252", sample, complete, [note]


class _UndecodableError(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _scan(path: Path, encoding: str, errors: str = "strict") -> tuple[str, bool]:
    """Decode the file (strictly by default) in chunks: the first characters, and whether that is all of it."""
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    check_nul = not encoding.startswith("utf-16")
    parts: list[str] = []
    sampled = total = offset = 0
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            if check_nul and b"\0" in chunk:
                line = _line_at(path, offset + chunk.index(b"\0"))
                raise InputFileError(
                    path,
                    f"line {line} holds a NUL byte: this is a binary file, not CSV "
                    "(or UTF-16 text without a byte order mark)",
                )
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise _UndecodableError(_line_at(path, offset - pending + exc.start)) from None
            offset += len(chunk)
            total += len(text)
            if sampled < _SAMPLE_CHARS:
                parts.append(text[: _SAMPLE_CHARS - sampled])
                sampled += len(parts[-1])
        try:
            total += len(decoder.decode(b"", final=True))
        except UnicodeDecodeError:
            raise _UndecodableError(_line_at(path, offset)) from None
    return "".join(parts), total <= _SAMPLE_CHARS


def _line_at(path: Path, offset: int) -> int:
    """The 1-based line holding byte `offset` (only used to word an error)."""
    with path.open("rb") as file:
        return file.read(offset).count(b"\n") + 1


def _sample_records(
    sample: str, complete: bool, delimiter: str, *, strict: bool = False
) -> list[list[str]] | None:
    """The sample's records as the csv module splits them, without a cut-off last one.

    None when the csv module rejects the text; with `strict`, also when a closing quote is not
    followed by this delimiter, which is how a quoted file shows its real delimiter.
    """
    stream = io.StringIO(sample, newline="")
    records: list[list[str]] = []
    try:
        records.extend(csv.reader(stream, delimiter=delimiter, strict=strict))
    except csv.Error:
        if complete or stream.tell() < len(sample):
            return None
        return records  # the sample ends inside a quoted cell: that record was not kept
    return records if complete else records[:-1]


def _sniff_delimiter(sample: str, complete: bool, *, prefer_tab: bool) -> str:
    """The delimiter that quotes fit and that splits the rows like the header, into most cells."""
    candidates = ("\t", ",", ";") if prefer_tab else DELIMITERS
    best, best_score = ",", (False, 0.0, 1)
    for delimiter in candidates:
        strict = _sample_records(sample, complete, delimiter, strict=True)
        records = strict if strict is not None else _sample_records(sample, complete, delimiter)
        records = [record for record in records or [] if not _blank_record(record)]
        if not records or len(records[0]) < 2:
            continue
        width, rows = len(records[0]), records[1:_SAMPLE_RECORDS]
        consistency = sum(len(row) == width for row in rows) / len(rows) if rows else 1.0
        score = (strict is not None, consistency, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _first_filled(rows: list[list[str]]) -> int | None:
    """The index of the first row that is not blank: the header row."""
    return next((i for i, row in enumerate(rows) if not _blank_record(row)), None)


def _blank_record(record: list[str]) -> bool:
    return not "".join(record).strip()


def _parse_csv(
    path: Path, encoding: str, delimiter: str, *, skip: int, width: int, errors: str = "strict"
) -> pd.DataFrame:
    """All records from the header on, as `width` text columns; longer records are an error."""
    try:
        # the path, not an open file: pandas reads a path of its own 15% faster (1.07-1.17 s against
        # 1.28-1.37 s for a million rows); absolute, so no part of it reads as a URL, and no
        # decompression guessed from the name
        return pd.read_csv(
            str(path.absolute()),
            compression=None,
            sep=delimiter,
            encoding=encoding,
            encoding_errors=errors,
            header=None,
            names=list(range(width)),
            index_col=False,
            skiprows=skip,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            quotechar='"',
            engine="c",
        )
    except pd.errors.ParserError as exc:
        raise InputFileError(path, _parser_problem(str(exc))) from None
    except (ValueError, OSError) as exc:  # ValueError covers UnicodeDecodeError
        raise InputFileError(path, f"the file cannot be read as CSV: {exc}") from None


def _parser_problem(message: str) -> str:
    """Reword a pandas tokenizer error in the row numbers Excel shows.

    pandas counts records (a quoted line break does not start one) from the top of the file,
    skipped rows included, which is how Excel numbers rows.
    """
    if match := _PANDAS_TOO_MANY.search(message):
        expected, line, seen = (int(group) for group in match.groups())
        return f"row {line} has {seen} cells but the header has {expected}"
    if match := _PANDAS_OPEN_QUOTE.search(message):  # this one counts from 0
        row = int(match.group(1)) + 1
        return f'row {row}: a quoted cell is never closed (a " without its closing ")'
    return f"the file cannot be read as CSV: {message}"


# --- Workbooks -----------------------------------------------------------------------------------


def _read_workbook(path: Path, wanted: str | None) -> _Grid:
    """Read one sheet with python-calamine and turn every cell into the text Excel shows."""
    check_unpacked_size(path)
    with gc_paused():
        name, notes, cells, merged, unknown, hidden = _sheet_cells(path, wanted)
        rows = _cell_texts(cells)
    header_at = _first_filled(rows)
    if header_at is None:
        raise InputFileError(path, f"the sheet {name!r} is empty{_data_elsewhere(path, name)}")
    notes += _fill_merged_down(rows, merged, header_at)
    notes += _hidden_note([row for row in hidden if header_at + 1 < row <= len(rows) and any(rows[row - 1])])
    _refuse_title_row(path, rows[header_at], rows[header_at + 1 : header_at + 11], header_at + 1)
    body = pd.DataFrame(rows[header_at + 1 :], columns=range(len(rows[0])), dtype=str)
    grid = _Grid(rows[header_at], body, first_row=header_at + 2, sheet_name=name, notes=notes)
    for (row, column), problem in unknown.items():
        if row > header_at + 1:
            grid.problems.setdefault(column, {})[row] = problem
    return grid


def _refuse_title_row(path: Path, header: list[str], below: list[list[str]], row: int) -> None:
    """A title ("Visits, December") above the real header: say which row the header seems to be.

    Taken as the header, a title leaves the columns under it nameless (or too few for the rows),
    which the user would read as a riddle.
    """
    filled = [cell.strip() for cell in header if cell.strip()]
    if len(filled) > 2:
        return
    for offset, cells in enumerate(below, start=1):
        named = [cell.strip() for cell in cells if cell.strip()]
        if len(named) >= len(filled) + 2:
            shown = ", ".join(repr(name) for name in named[:6]) + (", ..." if len(named) > 6 else "")
            raise InputFileError(
                path,
                f"row {row} ({filled[0]!r}) looks like a title above the header, which seems to be row "
                f"{row + offset} ({shown}): delete the rows above the header, save, and try again",
            )


def _hidden_note(hidden: list[int]) -> list[str]:
    """Rows Excel hides (by hand or by a filter) are imported: a person looking at it would not
    see them, so say how many and which."""
    if not hidden:
        return []
    shown = ", ".join(map(str, hidden[:10])) + (", ..." if len(hidden) > 10 else "")
    rows = "1 row is" if len(hidden) == 1 else f"{len(hidden)} rows are"
    return [
        f"{rows} hidden or filtered out in Excel (row {shown}) and imported all the same: "
        "delete them from the sheet if they should not be"
    ]


def sheet_headers(path: Path) -> dict[str, list[str]]:
    """Each sheet's first non-blank row, to say where the data is when the chosen sheet lacks it."""
    found: dict[str, list[str]] = {}
    try:
        with calamine.CalamineWorkbook.from_path(path) as book:
            for name in book.sheet_names:
                for row in book.get_sheet_by_name(name).iter_rows():
                    cells = [
                        _cell_text(value).strip() if type(value) is not str else value.strip()
                        for value in row
                    ]
                    if any(cells):
                        found[name] = [cell for cell in cells if cell]
                        break
    except (calamine.CalamineError, OSError, ValueError):
        return {}
    return found


def sheet_holding(path: Path, columns: list[str], current: str | None) -> str | None:
    """A hint naming the other sheet whose header holds `columns`, when the one read lacks them."""
    if current is None or not columns:
        return None
    for name, headers in sheet_headers(path).items():
        if name != current and set(columns) <= set(headers):
            return f"the sheet {name!r} has these columns: add --sheet {_shell_word(name)}"
    return None


def _data_elsewhere(path: Path, name: str) -> str:
    others = [other for other, headers in sheet_headers(path).items() if other != name and headers]
    if not others:
        return ""
    return f"; the data may be on the sheet {others[0]!r}: add --sheet {_shell_word(others[0])}"


def _shell_word(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_.-]+", text) else "'" + text.replace("'", "'\\''") + "'"


def _sheet_cells(
    path: Path, wanted: str | None
) -> tuple[str, list[str], list[list[Any]], list[Any], dict[tuple[int, int], str], list[int]]:
    """The sheet's name, notes about the choice, its cells from A1 (so indexes are positions),
    its merged ranges, its cells of unknown value and its hidden rows (both scanned meanwhile,
    on another core)."""
    try:
        with calamine.CalamineWorkbook.from_path(path) as book, ThreadPoolExecutor(1) as pool:
            name, notes = _pick_sheet(path, book, wanted)
            scanned = pool.submit(scan_sheet, path, name)
            sheet = sheet_prefetch.take(path, wanted, name)  # begun while the program started
            if sheet is None:
                sheet = book.get_sheet_by_name(name)
            cells = sheet.to_python(skip_empty_area=False)
            scan = scanned.result()
            return name, notes, cells, sheet.merged_cell_ranges or [], scan.unknown, scan.hidden
    except calamine.PasswordError:
        raise InputFileError(path, _ENCRYPTED_PROBLEM) from None
    except (calamine.CalamineError, OSError, ValueError) as exc:
        raise InputFileError(path, _workbook_problem(path, exc)) from None


def _fill_merged_down(rows: list[list[str]], merged: list[Any], header_at: int) -> list[str]:
    """Give each row of a merged range below the header the value the user sees on it.

    Excel keeps a merged range's value in its top-left cell only, but shows it on every row the
    range spans; across columns it is one value, so the cells to its right stay empty.
    """
    ranges = []
    for (top, left), (last, right) in merged:
        bottom = min(last, len(rows) - 1)
        if top <= header_at or bottom <= top or left >= len(rows[top]):
            continue
        for row in rows[top + 1 : bottom + 1]:
            row[left] = rows[top][left]
        ranges.append(f"{column_letter(left)}{top + 1}:{column_letter(right)}{bottom + 1}")
    if not ranges:
        return []
    shown = ", ".join(ranges[:5]) + (f" and {len(ranges) - 5} more" if len(ranges) > 5 else "")
    return [f"merged cells {shown}: each row they span was given the merged value, as Excel shows it"]


_ENCRYPTED_PROBLEM = (
    "the workbook is password-protected: open it in Excel, remove the password "
    "(File > Info > Protect Workbook), save it and try again"
)


def _pick_sheet(path: Path, book: calamine.CalamineWorkbook, wanted: str | None) -> tuple[str, list[str]]:
    """The sheet asked for (exactly, else ignoring case), or the first visible worksheet."""
    names = book.sheet_names
    if wanted is None:
        name = sheet_prefetch.first_sheet(book)
        others = [other for other in names if other != name]
        notes = [f"read the sheet {name!r}; the workbook also has {_quoted(others)}"] if others else []
        return name, notes
    if wanted in names:
        return wanted, []
    folded = [name for name in names if name.strip().casefold() == wanted.strip().casefold()]
    if len(folded) == 1:
        return folded[0], []
    raise InputFileError(path, f"there is no sheet named {wanted!r}; the sheets are {_quoted(names)}")


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _workbook_problem(path: Path, exc: Exception) -> str:
    """Explain why a workbook cannot be opened, from what its first bytes say it really is."""
    head = _head(path, 512)
    if not head.strip():
        return "the file is empty"
    if head.startswith(_OLE_MAGIC) and path.suffix.lower() != ".xls":
        return _ENCRYPTED_PROBLEM  # an encrypted .xlsx is an OLE container, not a zip
    if head.startswith(_ZIP_MAGIC):
        return f"the workbook is damaged or incomplete ({exc}): save it again from Excel"
    if head.lstrip().startswith(b"<"):
        return (
            "this is a web page (HTML/XML) with a workbook name, not a real workbook: "
            "open it in Excel and save it as .xlsx or CSV"
        )
    if b"\0" not in head:
        return "this is a text (CSV) file with a workbook name: rename it to .csv"
    return f"the file cannot be read as a workbook ({exc})"


def _cell_texts(cells: list[list[Any]]) -> list[list[str]]:
    """Every cell as the text Excel shows, worked out a column at a time: a column of text stays as
    it is, and date-times and numbers are written by pandas and C calls. The bench's 200,000 rows
    took 0.83 s, where each cell's own call took 1.2-1.35 s (most of it the date-times)."""
    if not cells:
        return []
    columns = [_column_texts(column) for column in itertools.zip_longest(*cells, fillvalue="")]
    return [list(row) for row in zip(*columns, strict=True)]


def _column_texts(column: tuple[Any, ...]) -> Sequence[str]:
    kinds = set(map(type, column))
    if kinds == {str}:
        return column
    texts = np.fromiter(column, dtype=object, count=len(column))  # np.array inspects each value: 5x slower
    types = np.fromiter(map(type, column), dtype=object, count=len(column))
    for kind in kinds - {str}:
        at = types == kind
        values = texts[at].tolist()
        write = _COLUMN_TEXTS.get(kind)
        texts[at] = write(values) if write else list(map(_cell_text, values))
    return texts.tolist()  # type: ignore[no-any-return]


def _datetime_texts(values: list[datetime]) -> list[str]:
    """`_datetime_text` of each value, by pandas."""
    moments = (pd.DatetimeIndex(values) + _HALF_SECOND).floor("s")  # serial numbers carry float noise
    texts: list[str] = moments.strftime("%Y-%m-%d %H:%M:%S").tolist()
    for i in np.flatnonzero(moments == moments.normalize()).tolist():  # midnight: the date alone
        texts[i] = texts[i][:10]
    return texts


def _number_texts(values: list[float]) -> list[str]:
    """`_number_text` of each value: 15 significant digits is a whole number's own digits below
    1e15, and any other number's text unless it needs an exponent (or is -0)."""
    texts = list(map(format, values, itertools.repeat(".15g")))
    for i in [i for i, text in enumerate(texts) if "e" in text or text == "-0"]:
        texts[i] = _number_text(values[i])
    return texts


def _cell_text(value: Any) -> str:
    """The text Excel shows for a non-string cell value from python-calamine."""
    text: str = _CELL_TEXT.get(type(value), str)(value)
    return text


def _number_text(value: float) -> str:
    if value.is_integer() and -1e15 < value < 1e15:
        return str(int(value))  # 12.0 is shown as 12
    text = f"{value:.15g}"  # Excel keeps 15 significant digits: 0.1 + 0.2 shows as 0.3
    if "e" not in text:
        return text
    if 1e-9 <= abs(value) < 1e21:
        return format(Decimal(text), "f")  # 1.23457E+17 as the digits 123457000000000000
    return text.upper()


def _datetime_text(value: datetime) -> str:
    if value.microsecond >= 500_000:  # serial numbers carry float noise: 10:29:59.999999 is 10:30
        value += _ONE_SECOND
    if value.hour == value.minute == value.second == 0:
        return value.date().isoformat()
    return value.isoformat(sep=" ", timespec="seconds")


def _time_text(value: time) -> str:
    seconds = value.hour * 3600 + value.minute * 60 + value.second + (value.microsecond >= 500_000)
    hours, rest = divmod(seconds % 86400, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def _duration_text(value: timedelta) -> str:
    microseconds = value // timedelta(microseconds=1)
    seconds = (abs(microseconds) + 500_000) // 1_000_000
    hours, rest = divmod(seconds, 3600)
    sign = "-" if microseconds < 0 else ""
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"


_COLUMN_TEXTS: dict[type, Callable[[list[Any]], list[str]]] = {
    datetime: _datetime_texts,
    float: _number_texts,
}
_CELL_TEXT: dict[type, Callable[[Any], str]] = {
    float: _number_text,
    int: str,
    bool: lambda value: "TRUE" if value else "FALSE",
    datetime: _datetime_text,
    date: date.isoformat,
    time: _time_text,
    timedelta: _duration_text,
}


# --- Both: headers and blank rows ----------------------------------------------------------------


def _to_sheet(path: Path, grid: _Grid) -> Sheet:
    """Check the headers, drop empty unnamed columns and blank rows, and name the columns."""
    headers = [_HEADER_EDGES.sub("", header) for header in grid.header]
    columns = [j for j, header in enumerate(headers) if header or _has_data(path, grid, j)]
    _check_unique(path, headers, columns)
    keep = ~_blank_rows(grid.body, columns)
    rows = (np.flatnonzero(keep) + grid.first_row).tolist()
    frame = grid.body if keep.all() else grid.body[keep]
    frame = frame[columns].set_axis([headers[j] for j in columns], axis=1)
    return Sheet(
        path=path,
        headers=[headers[j] for j in columns],
        frame=frame.reset_index(drop=True),
        source_rows=rows,
        sheet_name=grid.sheet_name,
        notes=grid.notes,
        cell_problems={headers[j]: grid.problems[j] for j in columns if j in grid.problems},
    )


def _has_data(path: Path, grid: _Grid, column: int) -> bool:
    """Whether an unnamed column holds a value; one that does is an error."""
    blank = _blank_cells(grid.body[column].to_numpy(dtype=object))
    if blank.all():
        return False
    row = grid.first_row + int(np.argmin(blank))
    raise InputFileError(
        path, f"column {column_letter(column)} has no header but row {row} has a value in it"
    )


def _check_unique(path: Path, headers: list[str], columns: list[int]) -> None:
    seen: dict[str, int] = {}
    for j in columns:
        if headers[j] in seen:
            first = column_letter(seen[headers[j]])
            raise InputFileError(
                path,
                f"the header {headers[j]!r} appears twice: columns {first} and {column_letter(j)}",
            )
        seen[headers[j]] = j


def _blank_rows(body: pd.DataFrame, columns: list[int]) -> np.ndarray:
    """Rows whose cells are all empty or whitespace, checking only rows still blank so far."""
    blank = np.ones(len(body), dtype=bool)
    for j in columns:
        candidates = np.flatnonzero(blank)
        if not candidates.size:
            break
        blank[candidates] = _blank_cells(body[j].to_numpy(dtype=object)[candidates])
    return blank


def _blank_cells(values: np.ndarray) -> np.ndarray:
    return np.asarray((values == "") | _isspace(values).astype(bool))


_isspace = np.frompyfunc(str.isspace, 1, 1)  # '\xa0' and other Unicode spaces count as blank


def column_letter(index: int) -> str:
    """The spreadsheet letter of a 0-based column index: 0 -> 'A', 26 -> 'AA'."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters
