"""The whole-column date-time path must give exactly what converting each cell alone gives."""

from __future__ import annotations

import random
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importer import datetimes, validate
from importer.mapping import load_mapping
from importer.validate import converter_for, validate_sheet
from tests.helpers import make_sheet, write_yaml

FORMATS = [
    None,
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%Y-%m-%d %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%Y%m%d",
    "%d.%m.%Y %H:%M",
    "%d-%m-%Y %H.%M",
    "%d/%m/%y %H:%M",
    "%b %d %Y",
]
ZONES = [None, "Asia/Kolkata", "America/New_York", "Europe/London"]
TRICKY = [
    "26/03/2024 14:15",
    "2024-03-26 14:15:00",
    "2024-03-26",
    "03/26/2024 14:15:00",
    "20240326",
    "26.03.2024 14:15",
    "26-03-2024 14.15",
    "26/03/24 14:15",
    "Mar 26 2024",
    "1/2/2024 9:05",
    "01/02/2024 09:05",
    "29/02/2023 10:00",
    "29/02/2024 10:00",
    "31/04/2024 10:00",
    "2024-03-26 14:15:60",
    "-2024-03-26",
    "-024-03-26 14:15:00",
    "2024-3-26 14:15:00",
    "0999-01-01",
    "1600-01-01 00:00:00",
    "2300-01-01 00:00:00",
    "9999-12-31 23:59:59",
    "26/03/2024  14:15",
    "2024-03-10 02:30:00",
    "2024-11-03 01:30:00",
    "2024-03-31 01:30:00",
    "2024-10-27 01:30:00",
    "10/03/2024 02:30",
    "03/11/2024 01:30",
    "2024-03-26T14:15:00",
    "2024-03-26 14:15:00+05:30",
    "2024-03-26 14:15:00.5",
    "٢٠٢٤-03-26",
    "26/03/2024 14:15 ",
    "45377",
    "45377.5",
    "",
    "x",
]


def one_by_one(text: str, fmt: str | None, zone: str | None, date_only: bool) -> str | None:
    convert = converter_for("date" if date_only else "datetime", fmt, zone)
    try:
        return convert(text)
    except ValueError:
        return None


ISO = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]
# The formats the whole-column path decides by itself for each mapping format: a zero-padded text
# in any of them must come back decided, or the fast path could return nothing and still "agree".
DECIDED_FORMATS = {
    None: ISO,
    "%d/%m/%Y %H:%M": ["%d/%m/%Y %H:%M", *ISO],
    "%d/%m/%Y": ["%d/%m/%Y", *ISO],
    "%Y-%m-%d %H:%M:%S": ["%Y-%m-%d %H:%M:%S"],
    "%m/%d/%Y %H:%M:%S": ["%m/%d/%Y %H:%M:%S", *ISO],
    "%Y%m%d": ["%Y%m%d"],
    "%d.%m.%Y %H:%M": ["%d.%m.%Y %H:%M", *ISO],
    "%d-%m-%Y %H.%M": ["%d-%m-%Y %H.%M", *ISO],
    "%d/%m/%y %H:%M": ISO,  # a two-digit year is left to the one-by-one path
    "%b %d %Y": [],  # month names too: the fast path decides nothing, which is allowed
}
SAMPLE_MOMENT = datetime(2024, 3, 26, 14, 15, 7)  # no DST change near it in any of ZONES


def check_agrees(texts: list[str], fmt: str | None, zone: str | None, date_only: bool) -> None:
    """Every value the fast path decides is the one-by-one value; and it does decide what it should."""
    must = [SAMPLE_MOMENT.strftime(candidate) for candidate in DECIDED_FORMATS[fmt]]
    decided = datetimes.wire_values(texts + must, fmt, zone, date_only=date_only)
    for text, value in zip(texts + must, decided, strict=True):
        if value is not None:  # None: left to the one-by-one path, which is always allowed
            assert value == one_by_one(text, fmt, zone, date_only), (text, fmt, zone)
    undecided = [text for text, value in zip(must, decided[len(texts) :], strict=True) if value is None]
    assert not undecided, (fmt, zone, date_only)
    if not must:
        assert decided == [None] * len(decided), fmt


def test_check_agrees_fails_when_the_fast_path_decides_nothing(monkeypatch):
    monkeypatch.setattr(datetimes, "wire_values", lambda texts, *args, **kwargs: [None] * len(texts))
    with pytest.raises(AssertionError):
        check_agrees(TRICKY, "%d/%m/%Y %H:%M", "Asia/Kolkata", False)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("date_only", [False, True])
def test_wire_values_agree_with_one_by_one_on_tricky_text(fmt, zone, date_only):
    check_agrees(TRICKY, fmt, zone, date_only)


def _mutated(base: str, rng: random.Random) -> str:
    cells = list(base)
    for _ in range(rng.randint(0, 3)):
        at = rng.randrange(len(cells) + 1)
        choice = rng.random()
        if choice < 0.4 and cells:
            cells[min(at, len(cells) - 1)] = rng.choice("0123456789/:- .T")
        elif choice < 0.7:
            cells.insert(at, rng.choice("0123456789/:- .T"))
        elif cells:
            del cells[min(at, len(cells) - 1)]
    return "".join(cells).strip()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), fmt=st.sampled_from(FORMATS), zone=st.sampled_from(ZONES))
def test_wire_values_agree_with_one_by_one_on_mangled_text(seed, fmt, zone):
    rng = random.Random(seed)
    texts = [_mutated(rng.choice(TRICKY[:12]), rng) for _ in range(300)]
    check_agrees(texts, fmt, zone, date_only=False)
    check_agrees(texts, fmt, zone, date_only=True)


def test_wire_values_decide_zero_padded_text_and_leave_the_rest():
    texts = ["26/03/2024 19:45", "2024-03-26 19:45:00", "6/3/2024 19:45", "31/02/2024 10:00"]
    assert datetimes.wire_values(texts, "%d/%m/%Y %H:%M", "Asia/Kolkata", date_only=False) == [
        "2024-03-26 14:15:00",
        "2024-03-26 14:15:00",
        None,
        None,
    ]


def test_wire_values_leave_local_times_a_dst_change_skips_or_repeats():
    texts = ["2024-03-10 02:30:00", "2024-11-03 01:30:00", "2024-11-03 03:30:00"]
    assert datetimes.wire_values(texts, None, "America/New_York", date_only=False) == [
        None,
        None,
        "2024-11-03 08:30:00",
    ]


MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: Opp}
owner_email: {column: Owner}
note: {template: "{Note} via {Channel}"}
activity_datetime: {column: When, format: "%d/%m/%Y %H:%M", timezone: America/New_York}
fields:
  mx_Custom_1: {column: Ref, required: true}
  mx_Custom_2: {column: Amount, type: number}
  mx_Custom_3: {column: Due, type: date, format: "%d/%m/%Y"}
  mx_Custom_4: {column: Channel, default: Branch}
  mx_Custom_8: {column: Seen, type: datetime}
"""
HEADERS = ["Opp", "Owner", "When", "Note", "Ref", "Amount", "Due", "Channel", "Seen"]


def _rows(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        when = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2024 {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        rows.append(
            [
                f"OPP-{rng.randint(1, count // 3)}",
                rng.choice(["a@x.co", " B@X.CO", "bad@", ""]),
                rng.choice(
                    [when, when, when, "3/10/2024 2:30", "10/03/2024 02:30", "31/02/2024 10:00", when + " "]
                ),
                rng.choice(["ok", "", " note "]),
                rng.choice([f"R{n}", "", "1.2E+17", " R\u200b"]),
                rng.choice([f"{n}.50", "1,234.5", "", "12a", "007", "-0"]),
                rng.choice(["01/02/2024", "", "2024-02-01", "32/01/2024"]),
                rng.choice(["Online", "", "  "]),
                rng.choice(
                    [
                        f"2024-03-{rng.randint(1, 28):02d} 10:{n % 60:02d}:00",
                        "",
                        "45377.25",
                        "2024-03-26T10:00",
                    ]
                ),
            ]
        )
    return rows


def test_validate_sheet_gives_the_same_rows_and_errors_by_column_as_cell_by_cell(tmp_path, monkeypatch):
    mapping = load_mapping(write_yaml(tmp_path, MAPPING))
    sheet = make_sheet(HEADERS, _rows(3000, seed=5))
    fast = validate_sheet(sheet, mapping)
    monkeypatch.setattr(validate, "_BULK_FROM", 10**9)  # every cell one by one
    slow = validate_sheet(sheet, mapping)
    assert fast.rows == slow.rows
    assert fast.errors == slow.errors
    assert len(fast.rows) > 100
    assert len(fast.errors) > 100
