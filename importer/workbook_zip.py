"""Look inside a zipped workbook (.xlsx, .xlsm, .ods, ...) for what python-calamine cannot say.

- Before it is read: the sizes its parts unpack to, as the zip declares them (the zip reader
  refuses a part that unpacks to more than it declares), so a "zip bomb" whose sheet unpacks to
  gigabytes is refused before memory runs out.
- Beside it: cells whose value is unknown. python-calamine reads a formula Excel never calculated
  (files written by scripts) and an error value such as `#N/A` as an empty cell, and a number of
  16 digits or more (a long ID typed as a number) has lost its last digits in Excel; sending that
  row would silently drop or change the value, so the loader reports those cells instead. The same
  pass finds the rows Excel hides (by hand or by a filter), which are imported with a note.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from xml.etree import ElementTree

from importer.errors import InputFileError

MAX_UNPACKED_BYTES = 512 * 2**20  # about 2 GB of memory once read: see README "Input files"
MAX_RATIO = 100  # real sheets compress 5 to 20 times; a bomb, hundreds of times
RATIO_FLOOR = 50 * 2**20  # small parts may compress very well without harm

_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_CHUNK = 1 << 20
_CELL = re.compile(rb"<c\b([^>]*?)(?:/>|>(.*?)</c>)", re.DOTALL)
_REF = re.compile(rb'\br="([A-Z]{1,3})([0-9]+)"')
_ERROR_TYPE = re.compile(rb'\bt="e"')
_STRING_TYPE = re.compile(rb'\bt="str"')
_OTHER_TYPE = re.compile(rb'\bt="(?!n")')  # a cell type other than number
# A number of 16 digits or more: Excel keeps 15, so the rest are lost (1.23456789012346E+17).
_BIG_NUMBER = re.compile(rb"-?(\d(\.\d+)?[eE]\+(1[5-9]|[2-9]\d|\d{3,})|\d{16,}(\.\d*)?)")
_BIG_VALUE = re.compile(rb"<v>-?(\d(\.\d+)?[eE]\+(1[5-9]|[2-9]\d)|\d{16})")
_VALUE = re.compile(rb"<v>([^<]+)</v>")


def check_unpacked_size(path: Path) -> None:
    """Refuse a workbook whose parts unpack to more than can be read safely, or look like a bomb."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a readable zip: python-calamine says what is wrong with it
    for part in parts:
        if part.file_size > RATIO_FLOOR and part.file_size > MAX_RATIO * max(part.compress_size, 1):
            raise InputFileError(
                path,
                f"refused: its part {part.filename} would unpack from {_size(part.compress_size)} to "
                f"{_size(part.file_size)}, which no real spreadsheet does (a 'zip bomb')",
            )
    total = sum(part.file_size for part in parts)
    if total > MAX_UNPACKED_BYTES:
        raise InputFileError(
            path,
            f"the workbook unpacks to {_size(total)}, more than the {_size(MAX_UNPACKED_BYTES)} that can be "
            "read safely: save the sheet as CSV (File > Save As > CSV UTF-8) or split it into smaller files",
        )


def _size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


_HIDDEN_ROW = re.compile(rb'<row\b[^>]*?\bhidden="(?:1|true)"[^>]*>')
_ROW_NUMBER = re.compile(rb'\br="([0-9]+)"')


@dataclass
class SheetScan:
    """What one pass over a sheet's XML found beside python-calamine's reading."""

    unknown: dict[tuple[int, int], str] = field(default_factory=dict)  # (row from 1, column from 0) -> why
    hidden: list[int] = field(default_factory=list)  # rows Excel hides, by hand or by a filter


def scan_sheet(path: Path, sheet_name: str) -> SheetScan:
    """Cells of an .xlsx/.xlsm sheet whose value is unknown, and its hidden rows, in one pass."""
    try:
        with zipfile.ZipFile(path) as archive:
            part = _sheet_part(archive, sheet_name)
            if part is None:
                return SheetScan()
            with archive.open(part) as stream:
                return _scan(_row_blocks(stream))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, ElementTree.ParseError, zlib.error):
        return SheetScan()  # python-calamine read it, so it is readable; this check only adds detail


def _scan(blocks: Iterator[bytes]) -> SheetScan:
    scan = SheetScan()
    for block in blocks:
        if b"hidden=" in block:  # most sheets hide nothing: skip the regex
            for row in _HIDDEN_ROW.finditer(block):
                ref = _ROW_NUMBER.search(row.group(0))
                if ref:
                    scan.hidden.append(int(ref.group(1)))
        if b"<f" in block or b't="e"' in block or _BIG_VALUE.search(block):  # most have none
            scan.unknown.update(_scan_cells(iter([block])))
    return scan


def _sheet_part(archive: zipfile.ZipFile, sheet_name: str) -> str | None:
    """The zip member holding the sheet, from workbook.xml and its relationships."""
    # S314: expat (2.5 here) refuses entity-expansion bombs, ElementTree never fetches external
    # entities, and check_unpacked_size has bounded these parts' size
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))  # noqa: S314
    rel_id = next(
        (
            sheet.get(f"{_REL_NS}id")
            for sheet in workbook.iter(f"{_MAIN_NS}sheet")
            if sheet.get("name") == sheet_name
        ),
        None,
    )
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))  # noqa: S314
    target = next(
        (rel.get("Target") for rel in rels.iter(f"{_PKG_REL_NS}Relationship") if rel.get("Id") == rel_id),
        None,
    )
    if not target:
        return None
    return target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))


def _row_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The sheet data in pieces that end on a row boundary."""
    pending = b""
    while chunk := stream.read(_CHUNK):
        pending += chunk
        done = pending.find(b"</sheetData>")
        end = done if done >= 0 else _after_last_row(pending)
        block, pending = pending[:end], pending[end:]
        yield block
        if done >= 0:
            return


def _after_last_row(data: bytes) -> int:
    last = data.rfind(b"</row>")
    return last + len(b"</row>") if last >= 0 else 0


def _scan_cells(blocks: Iterator[bytes]) -> Iterator[tuple[tuple[int, int], str]]:
    for block in blocks:
        for cell in _CELL.finditer(block):
            attributes, body = cell.group(1), cell.group(2) or b""
            problem = _problem(attributes, body)
            ref = _REF.search(attributes) if problem else None
            if ref:
                yield (int(ref.group(2)), _column_index(ref.group(1).decode())), problem  # type: ignore[misc]


def _problem(attributes: bytes, body: bytes) -> str | None:
    value = _VALUE.search(body)
    if _ERROR_TYPE.search(attributes):
        shown = value.group(1).decode(errors="replace") if value else "an error"
        return f"shows the error {shown} in the spreadsheet, so it has no value to send"
    if (
        b"<f" in body and value is None and not _STRING_TYPE.search(attributes)
    ):  # "" is <v></v> in a t="str" cell
        return (
            "is a formula that was never calculated (the file was not saved by Excel), so its value is "
            "unknown: open the file in Excel, save it, and import it again"
        )
    if value and _BIG_NUMBER.fullmatch(value.group(1)) and not _OTHER_TYPE.search(attributes):
        return (
            "is a number of 16 digits or more, and Excel keeps only 15: its last digits are lost (a long "
            "ID typed as a number?); format the column as Text in Excel and type it again"
        )
    return None


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1
