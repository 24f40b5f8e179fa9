"""Synthetic input for the benchmarks: an 8-column sheet shaped like a real nightly export.

Values repeat as real exports do (five owners, four channels, a few hundred notes and due dates)
while activity times, amounts and PANs are mostly distinct, so per-value memoisation alone cannot
hide slow conversions. About 0.1% of rows carry one realistic mistake each.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from importer.sandbox import DEFAULT_USERS

HEADERS = ["Opportunity ID", "Owner Email", "Activity Date", "Note", "PAN", "Amount", "Due Date", "Channel"]
CHANNELS = ["Branch", "Online", "Phone", "Partner"]
DOCUMENTS = ["PAN Card", "Aadhaar", "Passport", "Bank Statement", "Voter ID", "Driving Licence"]
HOW = ["collected", "copy collected by field executive", "received by email", "verified at branch"]
BAD_ROW_SHARE = 0.001

MAPPING_YAML = """\
activity_event: {value: 201}
opportunity_id: {column: "Opportunity ID"}
owner_email: {column: "Owner Email"}
note: {column: "Note"}
activity_datetime: {column: "Activity Date", format: "%d/%m/%Y %H:%M", timezone: "Asia/Kolkata"}
fields:
  mx_Custom_1: {column: "PAN", required: true}
  mx_Custom_2: {column: "Amount", type: number}
  mx_Custom_3: {column: "Due Date", type: date, format: "%d/%m/%Y"}
  mx_Custom_4: {column: "Channel"}
"""


def opportunity_ids(count: int, seed: int = 0) -> list[str]:
    """Stable GUID-like opportunity ids, as LeadSquared shows them."""
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"lsq-import-bench/{seed}/{i}")) for i in range(count)]


def frame(
    rows: int, *, seed: int = 0, opportunities: list[str] | None = None, bad_share: float = BAD_ROW_SHARE
) -> pd.DataFrame:
    """`rows` rows of text cells; about 2.5 rows per opportunity unless `opportunities` is given."""
    rng = np.random.default_rng(seed)
    ids = np.array(opportunities or opportunity_ids(max(1, rows * 2 // 5), seed), dtype=object)
    minutes = rng.integers(0, 365 * 24 * 60, rows)
    when = pd.Timestamp("2024-01-01") + pd.to_timedelta(minutes, unit="min")
    due = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 730, rows), unit="D")
    amount = rng.integers(0, 10_000_000, rows) / 100
    data = {
        "Opportunity ID": ids[rng.integers(0, len(ids), rows)],
        "Owner Email": np.array(DEFAULT_USERS, dtype=object)[rng.integers(0, len(DEFAULT_USERS), rows)],
        "Activity Date": np.array(when.strftime("%d/%m/%Y %H:%M"), dtype=object),
        "Note": _notes(rng, rows),
        "PAN": _pans(rng, rows),
        "Amount": np.where(rng.random(rows) < 0.2, "", amount.astype(str)).astype(object),
        "Due Date": np.where(
            rng.random(rows) < 0.3, "", np.array(due.strftime("%d/%m/%Y"), dtype=str)
        ).astype(object),
        "Channel": np.array(CHANNELS, dtype=object)[rng.integers(0, len(CHANNELS), rows)],
    }
    _spoil(data, rng, rows, bad_share)
    return pd.DataFrame(data, columns=HEADERS)


def _notes(rng: np.random.Generator, rows: int) -> np.ndarray:
    choices = np.array([f"{doc} {how}" for doc in DOCUMENTS for how in HOW], dtype=object)
    return choices[rng.integers(0, len(choices), rows)]


def _pans(rng: np.random.Generator, rows: int) -> np.ndarray:
    letters = rng.integers(ord("A"), ord("Z") + 1, (rows, 6), dtype=np.uint8)
    digits = rng.integers(ord("0"), ord("9") + 1, (rows, 4), dtype=np.uint8)
    codes = np.concatenate([letters[:, :5], digits, letters[:, 5:]], axis=1)
    return codes.view("S10").ravel().astype(str).astype(object)


def _spoil(data: dict[str, np.ndarray], rng: np.random.Generator, rows: int, share: float) -> None:
    """Give about `share` of the rows one mistake a person makes: typo'd email, bad date or amount."""
    bad = np.flatnonzero(rng.random(rows) < share)
    mistakes = [
        ("Owner Email", "asha.rao@example"),
        ("Activity Date", "31/02/2024 10:00"),
        ("Amount", "12,34.5"),
        ("Due Date", "2024/13/01"),
        ("PAN", " "),
    ]
    for n, index in enumerate(bad):
        column, value = mistakes[n % len(mistakes)]
        data[column][index] = value


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path


def write_xlsx(table: pd.DataFrame, path: Path) -> Path:
    """An .xlsx as Excel saves it: times and amounts as typed cells, the rest as text."""
    from openpyxl import Workbook  # noqa: PLC0415 - only the XLSX measurement needs it

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Activities")
    sheet.append(HEADERS)
    when = pd.to_datetime(table["Activity Date"], format="%d/%m/%Y %H:%M", errors="coerce")
    amount = pd.to_numeric(table["Amount"], errors="coerce")
    columns = [table[name].tolist() for name in HEADERS]
    typed_when = [None if pd.isna(value) else value.to_pydatetime() for value in when]
    typed_amount = [None if pd.isna(value) else float(value) for value in amount]
    for index, row in enumerate(zip(*columns, strict=True)):
        cells = list(row)
        if typed_when[index] is not None:
            cells[2] = typed_when[index]
        if typed_amount[index] is not None:
            cells[5] = typed_amount[index]
        sheet.append(cells)
    book.save(path)
    return path
