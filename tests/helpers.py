"""Small builders shared by the tests."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pandas as pd

from importer.records import Sheet
from importer.sandbox import Sandbox


def make_sheet(headers: list[str], rows: list[list[str]], path: str = "sheet.csv") -> Sheet:
    """A Sheet as the loader would return it: all text, header = row 1, data from row 2."""
    frame = (
        pd.DataFrame(rows, columns=headers, dtype=object)
        if rows
        else pd.DataFrame(columns=headers, dtype=object)
    )
    return Sheet(Path(path), headers, frame, list(range(2, len(rows) + 2)))


def write_yaml(tmp_path: Path, text: str, name: str = "mapping.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def write_csv(
    path: Path,
    rows: list[dict[str, str]],
    headers: list[str] | None = None,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> Path:
    """A CSV as a user's export would be: header row, then one line per row."""
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, headers or list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def error_rows(path: Path) -> list[dict[str, object]]:
    """The Errors sheet of an error workbook, one dict per row, as a user would read it."""
    sheet = openpyxl.load_workbook(path)["Errors"]
    rows = list(sheet.iter_rows(values_only=True))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def sandbox_env(sandbox: Sandbox, folder: Path) -> dict[str, str]:
    """The environment of a run on the sandbox's account, its cache and state kept in `folder`."""
    return {
        "LSQ_ACCESS_KEY": sandbox.access_key,
        "LSQ_SECRET_KEY": sandbox.secret_key,
        "LSQ_HOST": sandbox.url,
        "LSQ_IMPORT_CACHE_DIR": str(folder / "cache"),
        "LSQ_IMPORT_STATE_DIR": str(folder / "state"),
    }
