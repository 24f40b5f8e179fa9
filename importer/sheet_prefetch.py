"""Parse a workbook's sheet on the other core while the program is still starting.

Before `validate` or `run` reads a sheet they spend about 0.6 s importing pandas, requests and
the rest. python-calamine parses a sheet without holding the GIL, so the command starts the parse
of the sheet the loader will want (`start`) before those imports, and the loader takes it (`take`)
when it gets there. Anything unexpected here (not a workbook, no such sheet, a file changed in
between) drops the parse: the loader then reads the file itself and says what is wrong.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import python_calamine as calamine

from importer.workbook_zip import check_unpacked_size

SUFFIXES = frozenset({".xlsx", ".xlsm", ".xltx", ".xltm", ".xls", ".xlsb", ".ods"})

_lock = threading.Lock()
_pending: dict[tuple[Path, str | None], _Parse] = {}


class _Parse(threading.Thread):
    def __init__(self, path: Path, wanted: str | None, stamp: tuple[int, int, int, int]) -> None:
        super().__init__(name="sheet-prefetch", daemon=True)
        self.path, self.wanted, self.stamp = path, wanted, stamp
        self.name_read: str | None = None
        self.sheet: Any = None

    def run(self) -> None:
        # whatever it is (a pyo3 panic is a BaseException), the loader's own read tells it
        with contextlib.suppress(BaseException):
            book = calamine.CalamineWorkbook.from_path(self.path)
            name = first_sheet(book) if self.wanted is None else self.wanted
            if name in book.sheet_names:
                self.sheet = book.get_sheet_by_name(name)
                self.name_read = name


def first_sheet(book: calamine.CalamineWorkbook) -> str:
    """The sheet read when none is named: the first visible worksheet (else the first sheet)."""
    visible = [
        sheet.name
        for sheet in book.sheets_metadata
        if sheet.visible == calamine.SheetVisibleEnum.Visible
        and sheet.typ == calamine.SheetTypeEnum.WorkSheet
    ]
    return (visible or book.sheet_names)[0]


def start(path: Path, wanted: str | None) -> None:
    """Begin parsing `path`'s sheet `wanted` (None: the first visible one) in the background."""
    if path.suffix.lower() not in SUFFIXES:
        return
    stamp = _stamp(path)
    if stamp is None:
        return
    try:  # a workbook too big to read safely, or a zip bomb, is the loader's to refuse, unread
        check_unpacked_size(path)
    except Exception:
        return
    parse = _Parse(path, wanted, stamp)
    with _lock:
        _pending[(path.resolve(), wanted)] = parse
    parse.start()


def take(path: Path, wanted: str | None, name: str) -> Any:
    """The parsed sheet `name` if `start` began it for this very file, else None."""
    with _lock:
        parse = _pending.pop((path.resolve(), wanted), None)
    if parse is None:
        return None
    parse.join()
    if parse.name_read != name or _stamp(path) != parse.stamp:
        return None
    return parse.sheet


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
