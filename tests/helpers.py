"""Small builders shared by the tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from importer.records import Sheet


def make_sheet(headers: list[str], rows: list[list[str]], path: str = "sheet.csv") -> Sheet:
    """A Sheet as the loader would return it: all text, header = row 1, data from row 2."""
    frame = pd.DataFrame(rows, columns=headers, dtype=object) if rows else pd.DataFrame(columns=headers, dtype=object)
    return Sheet(Path(path), headers, frame, list(range(2, len(rows) + 2)))


def write_yaml(tmp_path: Path, text: str, name: str = "mapping.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
