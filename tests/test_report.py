"""The error workbook, opened the way a user's tools open it: openpyxl, python-calamine, the loader."""

from __future__ import annotations

import errno
import os
import re
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from importlib import resources
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from python_calamine import CalamineWorkbook

from importer import report
from importer.errors import OutputError
from importer.loader import load_sheet
from importer.records import RowError, Sheet, Stage
from importer.report import check_writable, write_error_workbook
from tests.conftest import FAST_LIMIT, run_cli

HEADERS = ["Opportunity", "Amount", "Reference", "Note"]
ROWS = [
    ["OPP-1", "12,5x", "000417", "first visit"],
    ["OPP-2", "40", "000418", ""],
    ["OPP-3", "7", "000419", "follow-up\ncall back"],
    ["OPP-4", "n/a", "000420", '=HYPERLINK("http://x","y")'],
]
SOURCE_ROWS = [2, 3, 5, 9]  # blank rows 4 and 6-8 were dropped by the loader
RED = "FFFFC7CE"
LEAD = ["Source Row", "Error Stage", "Error"]


def make_sheet(headers=HEADERS, rows=ROWS, source_rows=SOURCE_ROWS) -> Sheet:
    frame = pd.DataFrame(rows, columns=headers, dtype=str)
    return Sheet(Path("visits.xlsx"), list(headers), frame, list(source_rows), sheet_name="Visits")


def write(tmp_path: Path, errors, sheet: Sheet | None = None) -> Path:
    return write_error_workbook(tmp_path / "visits.errors.xlsx", sheet or make_sheet(), errors)


def error_rows(path: Path) -> list[dict[str, object]]:
    rows = list(openpyxl.load_workbook(path)["Errors"].iter_rows(values_only=True))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def calamine_rows(path: Path, sheet: str = "Errors") -> list[list[object]]:
    with CalamineWorkbook.from_path(str(path)) as book:
        return book.get_sheet_by_name(sheet).to_python(skip_empty_area=False)


def single_value_workbook(tmp_path: Path, values: list[str]) -> Path:
    """One failed row per value, the value in the only original column."""
    sheet = make_sheet(["Value"], [[value] for value in values], range(2, len(values) + 2))
    errors = [RowError(row, Stage.VALIDATION, "rejected") for row in sheet.source_rows]
    return write_error_workbook(tmp_path / "values.xlsx", sheet, errors)


def storable(text: str) -> str:
    """What an xlsx can hold: everything but surrogates, U+FFFE and U+FFFF (controls are escaped)."""
    return "".join(
        ch if not ("\ud800" <= ch <= "\udfff" or ch in "\ufffe\uffff") else "\ufffd" for ch in text
    )


# Layout


def test_write_error_workbook_sheets_are_errors_first_then_summary(tmp_path):
    path = write(tmp_path, [RowError(3, Stage.API, "rejected")])
    assert openpyxl.load_workbook(path).sheetnames == ["Errors", "Summary"]
    with CalamineWorkbook.from_path(str(path)) as book:
        assert book.sheet_names == ["Errors", "Summary"]


def test_write_error_workbook_returns_the_path(tmp_path):
    target = tmp_path / "out.xlsx"
    assert write_error_workbook(str(target), make_sheet(), [RowError(2, Stage.API, "x")]) == target
    assert target.is_file()


def test_write_error_workbook_header_is_lead_columns_then_original_columns(tmp_path):
    path = write(tmp_path, [RowError(3, Stage.VALIDATION, "not a number: 'x'", "Amount")])
    header = next(openpyxl.load_workbook(path)["Errors"].iter_rows(values_only=True))
    assert list(header) == [*LEAD, *HEADERS]


def test_write_error_workbook_leadsquared_words_get_a_column_of_their_own(tmp_path):
    path = write(tmp_path, [RowError(3, Stage.API, "rejected"), RowError(5, Stage.VALIDATION, "bad")])
    header = next(openpyxl.load_workbook(path)["Errors"].iter_rows(values_only=True))
    assert list(header) == [*LEAD, *HEADERS, "LeadSquared's message"]
    assert [row["LeadSquared's message"] for row in error_rows(path)] == ["rejected", None]


def test_write_error_workbook_one_row_per_failed_source_row_in_source_order(tmp_path):
    errors = [
        RowError(9, Stage.NOT_SENT, "not sent: the run was interrupted"),
        RowError(2, Stage.VALIDATION, "not a number: '12,5x'", "Amount"),
        RowError(2, Stage.VALIDATION, "unknown opportunity", "Opportunity"),
        RowError(5, Stage.API, "Invalid value for mx_Custom_4", "Reference"),
        RowError(2, Stage.API, "never mind"),
    ]
    rows = error_rows(write(tmp_path, errors))
    assert [row["Source Row"] for row in rows] == [2, 5, 9]
    assert rows[0]["Error Stage"] == "validation"  # the stage of the row's first error
    assert rows[0]["Error"] == (
        "Amount: not a number: '12,5x'; Opportunity: unknown opportunity; "
        "LeadSquared refused the row: never mind"
    )
    assert rows[1]["Error Stage"] == "api"
    assert rows[1]["Error"] == "Reference: LeadSquared refused the row: Invalid value for field mx_Custom_4"
    assert rows[1]["LeadSquared's message"] == "Invalid value for mx_Custom_4"
    assert rows[2]["Error Stage"] == "not sent"
    assert rows[2]["Error"] == "not sent: the run was interrupted"


def test_write_error_workbook_rows_carry_the_original_text(tmp_path):
    errors = [RowError(2, Stage.VALIDATION, "bad", "Amount"), RowError(9, Stage.API, "rejected")]
    rows = error_rows(write(tmp_path, errors))
    assert [[row[h] or "" for h in HEADERS] for row in rows] == [ROWS[0], ROWS[3]]


def test_write_error_workbook_source_row_is_an_integer_cell(tmp_path):
    sheet = openpyxl.load_workbook(write(tmp_path, [RowError(5, Stage.API, "x")]))["Errors"]
    assert (sheet["A2"].value, sheet["A2"].data_type) == (5, "n")


def test_write_error_workbook_named_cell_is_highlighted_with_the_message_as_comment(tmp_path):
    errors = [
        RowError(2, Stage.VALIDATION, "not a number: '12,5x'", "Amount"),
        RowError(2, Stage.VALIDATION, "must be positive", "Amount"),
        RowError(2, Stage.VALIDATION, "row-level problem"),
    ]
    sheet = openpyxl.load_workbook(write(tmp_path, errors))["Errors"]
    amount = sheet.cell(row=2, column=len(LEAD) + HEADERS.index("Amount") + 1)
    assert amount.value == "12,5x"
    assert amount.fill.fgColor.rgb == RED
    assert amount.comment.text == "not a number: '12,5x'\nmust be positive"
    others = [cell for cell in sheet[2] if cell.coordinate != amount.coordinate]
    assert all(cell.fill.fill_type is None and cell.comment is None for cell in others)


def test_write_error_workbook_error_on_unknown_column_is_listed_not_highlighted(tmp_path):
    errors = [RowError(3, Stage.VALIDATION, "Invalid value", "mx_Custom_9")]
    path = write(tmp_path, errors)
    sheet = openpyxl.load_workbook(path)["Errors"]
    assert all(cell.comment is None and cell.fill.fill_type is None for cell in sheet[2])
    assert error_rows(path)[0]["Error"] == "mx_Custom_9: Invalid value"


def test_write_error_workbook_header_is_bold_and_frozen_with_autofilter_over_data(tmp_path):
    errors = [RowError(row, Stage.VALIDATION, "rejected") for row in SOURCE_ROWS]
    sheet = openpyxl.load_workbook(write(tmp_path, errors))["Errors"]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:G5"
    assert all(cell.font.b for cell in sheet[1])
    assert not any(cell.font.b for cell in sheet[2])


def test_write_error_workbook_column_widths_follow_content_within_bounds(tmp_path):
    sheet = make_sheet(["ID", "Note"], [["1", "x" * 500]], [2])
    path = write(tmp_path, [RowError(2, Stage.API, "rejected")], sheet)
    widths = {
        letter: dim.width for letter, dim in openpyxl.load_workbook(path)["Errors"].column_dimensions.items()
    }
    assert widths["E"] == report.MAX_COLUMN_WIDTH  # the 500-character note is capped
    assert 8 <= widths["D"] < 10  # "ID" plus room for the filter button
    assert widths["C"] >= len("rejected")


def test_write_error_workbook_text_cells_are_formatted_as_text(tmp_path):
    """So a user who retypes 00123 in Excel keeps the zeros."""
    sheet = openpyxl.load_workbook(write(tmp_path, [RowError(2, Stage.API, "x")]))["Errors"]
    assert all(cell.number_format == "@" for cell in sheet[2][1:])
    assert sheet.cell(row=2, column=len(LEAD) + HEADERS.index("Note") + 1).number_format == "@"


def test_write_error_workbook_row_missing_from_sheet_keeps_blank_originals(tmp_path):
    rows = error_rows(write(tmp_path, [RowError(4, Stage.NOT_SENT, "not sent: stopped")]))
    assert rows == [
        {"Source Row": 4, "Error Stage": "not sent", "Error": "not sent: stopped"} | dict.fromkeys(HEADERS)
    ]


def test_write_error_workbook_of_an_error_workbook_gets_fresh_lead_columns(tmp_path):
    """A fixed workbook that fails again comes back without a stale, repeated set."""
    headers = [*LEAD, "Opportunity", "Amount", "LeadSquared's message"]
    sheet = make_sheet(headers, [["2", "validation", "old message", "OPP-1", "1x", "old words"]], [2])
    path = write(tmp_path, [RowError(2, Stage.VALIDATION, "still bad", "Amount")], sheet)
    assert error_rows(path) == [
        {
            "Source Row": 2,
            "Error Stage": "validation",
            "Error": "Amount: still bad",
            "Opportunity": "OPP-1",
            "Amount": "1x",
        }
    ]


def test_write_error_workbook_with_no_errors_has_only_the_header(tmp_path):
    path = write(tmp_path, [])
    assert error_rows(path) == []
    assert openpyxl.load_workbook(path)["Errors"].auto_filter.ref == "A1:G1"


def test_write_error_workbook_every_part_is_well_formed_xml(tmp_path):
    errors = [RowError(2, Stage.VALIDATION, "a & b < c", "Amount"), RowError(5, Stage.API, "x")]
    with zipfile.ZipFile(write(tmp_path, errors)) as package:
        assert package.testzip() is None
        for name in package.namelist():
            ET.fromstring(package.read(name))  # raises on a malformed part


def test_write_error_workbook_more_than_1024_comments_are_all_kept(tmp_path):
    """VML shape ids come in blocks of 1024; a big run needs several."""
    rows = [[f"OPP-{n}", "x", "", ""] for n in range(1500)]
    sheet = make_sheet(HEADERS, rows, range(2, 1502))
    errors = [RowError(row, Stage.VALIDATION, f"bad {row}", "Amount") for row in sheet.source_rows]
    path = write(tmp_path, errors, sheet)
    comments = [row[4].comment for row in openpyxl.load_workbook(path)["Errors"].iter_rows(min_row=2)]
    assert [comment.text for comment in comments] == [f"bad {row}" for row in sheet.source_rows]


# Summary


def summary_rows(path: Path) -> list[tuple]:
    return list(openpyxl.load_workbook(path)["Summary"].iter_rows(values_only=True))


def test_write_error_workbook_summary_counts_rows_per_stage_with_total(tmp_path):
    errors = [
        RowError(2, Stage.VALIDATION, "bad", "Amount"),
        RowError(2, Stage.API, "also"),
        RowError(3, Stage.API, "rejected"),
        RowError(5, Stage.API, "rejected"),
        RowError(9, Stage.UNKNOWN, "timed out"),
    ]
    rows = summary_rows(write(tmp_path, errors))
    start = rows.index(("Error Stage", "Rows", None, None, None))
    assert [row[:2] for row in rows[start + 1 : start + 7]] == [
        ("validation", 1),
        ("lookup", 0),
        ("api", 2),
        ("unknown", 1),
        ("not sent", 0),
        ("Total", 4),
    ]


PROBLEMS = ("Column", "Rows", "Problem", "Example", "Error Stage")


def problem_rows(path: Path) -> list[tuple]:
    rows = summary_rows(path)
    return rows[rows.index(PROBLEMS) + 1 :]


def test_write_error_workbook_summary_groups_by_column_and_problem_most_rows_first(tmp_path):
    """A wrong date format on 190 rows is one line, not 190: the values are left out of the problem."""
    rows = [[f"OPP-{n}", "x", "", ""] for n in range(200)]
    sheet = make_sheet(HEADERS, rows, range(2, 202))
    errors = [
        RowError(row, Stage.VALIDATION, f"not a date in the form DD/MM/YYYY: '{row}/13/2024'", "Amount")
        for row in range(2, 192)
    ]
    errors += [RowError(row, Stage.VALIDATION, f"not a number: '{row}x'", "Reference") for row in (192, 193)]
    errors += [RowError(2, Stage.VALIDATION, "not a date in the form DD/MM/YYYY: '2/13/2024'", "Amount")]
    errors += [RowError(194, Stage.NOT_SENT, "not sent: the run was interrupted")]
    path = write_error_workbook(tmp_path / "v.xlsx", sheet, errors, labels={"Amount": "Due (mx_Custom_3)"})
    assert problem_rows(path) == [
        ("Due (mx_Custom_3)", 190, "not a date in the form DD/MM/YYYY", "2/13/2024", "validation"),
        ("Reference", 2, "not a number", "192x", "validation"),
        ("(the whole row)", 1, "not sent: the run was interrupted", None, "not sent"),
        ("Total", 193, None, None, None),
    ]


def test_write_error_workbook_summary_has_totals_and_how_to_fix(tmp_path):
    path = write_error_workbook(
        tmp_path / "visits.errors.xlsx",
        make_sheet(),
        [RowError(3, Stage.API, "rejected"), RowError(5, Stage.VALIDATION, "bad", "Amount")],
        totals=report.Totals(rows_total=200, posted=190, skipped=8),
    )
    rows = summary_rows(path)
    assert rows[0][0] == "Input file: visits.xlsx, sheet Visits"
    assert [row[:2] for row in rows[1:5]] == [
        ("Rows in the file", 200),
        ("Posted to LeadSquared", 190),
        ("Skipped: already in LeadSquared", 8),
        ("Failed or not sent: the rows of this workbook", 2),
    ]
    steps = rows[rows.index(("How to fix and re-upload", None, None, None, None)) + 1 :][:3]
    assert [step[0][:3] for step in steps] == ["1. ", "2. ", "3. "]
    assert "lsq-import run visits.errors.xlsx" in steps[2][0]


def test_write_error_workbook_summary_names_the_input(tmp_path):
    rows = summary_rows(write(tmp_path, [RowError(2, Stage.API, "x")]))
    assert rows[0][0] == "Input file: visits.xlsx, sheet Visits"


def test_write_error_workbook_summary_folds_rare_problems_past_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "MAX_SUMMARY_MESSAGES", 2)
    errors = [RowError(row, Stage.VALIDATION, f"problem {row}") for row in SOURCE_ROWS]
    errors.append(RowError(3, Stage.VALIDATION, "common"))
    errors.append(RowError(5, Stage.VALIDATION, "common"))
    assert problem_rows(write(tmp_path, errors)) == [
        ("(the whole row)", 2, "common", None, "validation"),
        ("(the whole row)", 1, "problem 2", None, "validation"),
        (None, 3, "... 3 more problems, each on fewer rows", None, None),
        ("Total", 6, None, None, None),
    ]


# Plain words


def test_write_error_workbook_names_fields_by_label_and_keeps_leadsquared_words_apart(tmp_path):
    sheet = make_sheet(["Opportunity", "Owner", "PAN"], [["OPP-1", "a@x.com", ""]], [2])
    errors = [
        RowError(2, Stage.VALIDATION, "is empty, but a value is required", "PAN"),
        RowError(
            2,
            Stage.API,
            "MXInvalidInputException: Opportunity OPP-1 does not exist or you do not have access to it",
            "Opportunity",
        ),
        RowError(2, Stage.API, "MXInvalidActivityFieldsException: Invalid value for mx_Custom_1"),
    ]
    path = write_error_workbook(
        tmp_path / "e.xlsx", sheet, errors, labels={"PAN": "PAN Number (mx_Custom_1)"}
    )
    (row,) = error_rows(path)
    assert row["Error"] == (
        "PAN Number (mx_Custom_1): is empty, but a value is required; "
        "Opportunity: LeadSquared has no opportunity 'OPP-1' that these keys can see: check the opportunity id; "
        "LeadSquared refused the row: Invalid value for PAN Number (mx_Custom_1)"
    )
    assert "Exception" not in row["Error"]
    assert row["LeadSquared's message"] == (
        "MXInvalidInputException: Opportunity OPP-1 does not exist or you do not have access to it; "
        "MXInvalidActivityFieldsException: Invalid value for mx_Custom_1"
    )


@pytest.mark.parametrize(
    ("said", "plain"),
    [
        (
            "ActivityOwnerEmail 'old@x.com' is not a user of this account",
            "'old@x.com' is not a user of this LeadSquared account: use the email of an active user",
        ),
        ("Invalid value 'abc' for mx_Custom_2 (Number)", "LeadSquared does not take 'abc' as a Number value"),
        (
            "Field 'mx_Custom_9' does not exist on activity type 201",
            "activity type 201 has no field mx_Custom_9: check the mapping",
        ),
        (
            "MXInvalidEntityReferenceException: Lead not found",
            "the opportunity's lead is no longer in LeadSquared (deleted or merged)",
        ),
        (
            "Invalid ActivityDateTime '2024': expected UTC",
            "LeadSquared refused the row: Invalid the activity date '2024': expected UTC",
        ),
    ],
)
def test_write_error_workbook_words_leadsquared_messages_plainly(tmp_path, said, plain):
    (row,) = error_rows(write(tmp_path, [RowError(3, Stage.API, said)]))
    assert row["Error"] == plain


def test_write_error_workbook_strptime_codes_in_a_message_are_shown_as_people_write_them(tmp_path):
    (row,) = error_rows(write(tmp_path, [RowError(3, Stage.VALIDATION, "expected '%d/%m/%Y %H:%M'")]))
    assert row["Error"] == "expected 'DD/MM/YYYY HH:mm'"


# How it shows and prints


def test_write_error_workbook_error_column_is_wide_and_wrapped(tmp_path):
    message = "a long message " * 20
    sheet = openpyxl.load_workbook(write(tmp_path, [RowError(3, Stage.VALIDATION, message, "Amount")]))[
        "Errors"
    ]
    assert sheet.column_dimensions["C"].width >= 50
    assert sheet["C2"].alignment.wrap_text
    assert sheet["C2"].value == f"Amount: {message}"  # whole, never cut
    assert sheet.row_dimensions[2].height >= 15 * 5  # room for its lines


def test_write_error_workbook_prints_landscape_fitted_to_the_width(tmp_path):
    book = openpyxl.load_workbook(write(tmp_path, [RowError(3, Stage.VALIDATION, "x", "Amount")]))
    for sheet in book:
        assert sheet.page_setup.orientation == "landscape"
        assert (sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight) == (1, 0)
        assert sheet.sheet_properties.pageSetUpPr.fitToPage
    assert book["Errors"].print_title_rows == "$1:$1"


def test_write_error_workbook_comments_are_anchored_beside_their_cells(tmp_path):
    """LibreOffice places a comment by its Anchor: without one every box stacks at the top left."""
    long = "a message long enough to take three lines of its box " * 2
    errors = [RowError(2, Stage.VALIDATION, "bad", "Amount"), RowError(5, Stage.VALIDATION, long, "Note")]
    with zipfile.ZipFile(write(tmp_path, errors)) as package:
        (vml,) = [name for name in package.namelist() if name.endswith(".vml")]
        shapes = list(ET.fromstring(package.read(vml)).iter("{urn:schemas-microsoft-com:vml}shape"))
        excel = "{urn:schemas-microsoft-com:office:excel}"
        anchors = []
        heights = [int(re.search(r"height:(\d+)px", shape.get("style")).group(1)) for shape in shapes]
        assert len({shape.get("id") for shape in shapes}) == 2  # each box its own id, as Excel wants
        assert heights[1] > heights[0]  # room for every line
        for shape in shapes:
            data = shape.find(f"{excel}ClientData")
            row, column = int(data.find(f"{excel}Row").text), int(data.find(f"{excel}Column").text)
            anchor = [int(n) for n in data.find(f"{excel}Anchor").text.split(",")]
            anchors.append((row, column, anchor[0], anchor[2]))
    # zero-based: Amount is column E (4) on row 2 (1); Note is column G (6) on row 3 (2)
    assert anchors == [(1, 4, 5, 1), (2, 6, 7, 2)]


def test_write_error_workbook_summary_header_is_bold(tmp_path):
    sheet = openpyxl.load_workbook(write(tmp_path, [RowError(2, Stage.API, "x")]))["Summary"]
    header = next(row for row in sheet.iter_rows() if row[0].value == "Error Stage")
    assert sheet["A1"].font.b
    assert all(cell.font.b for cell in header[:2])
    assert sheet.column_dimensions["A"].width >= len("Input file")


# Faithful text


FORMULA_LIKE = ['=HYPERLINK("http://x","y")', "=1+1", "+1", "-2+3", "@SUM(A1)", "=", "-"]
TRICKY = [
    "00123",
    "0",
    "1e5",
    "1,234.50",
    "TRUE",
    "#N/A",
    "2024-01-31",
    "  leading and trailing  ",
    "   ",
    "\t",
    "line 1\nline 2",
    "windows\r\nline",
    "\r",
    "café Zoë 東京 😀 \u200b\u00a0\u2028",
    "_x0041_",
    "a_x000D_b_x005F_x0041_",
    "&amp; <b>bold</b> \"quoted\" 'single'",
    "]]>",
]


@pytest.mark.parametrize("value", [" ", "   ", "\t", " \t ", "\n", " padded "])
def test_write_error_workbook_whitespace_is_stored_as_itself(tmp_path, value):
    """Kept as spaces (xml:space="preserve"), not escaped as _x0020_: openpyxl and LibreOffice
    show an escape as its letters, where Excel and python-calamine decode it."""
    path = single_value_workbook(tmp_path, [value])
    assert openpyxl.load_workbook(path)["Errors"]["D2"].value == value
    assert calamine_rows(path)[1][3] == value


@pytest.mark.parametrize("value", FORMULA_LIKE + TRICKY)
def test_write_error_workbook_text_reads_back_exactly_and_never_as_formula(tmp_path, value):
    """Exact in python-calamine (what the loader and Excel decode); text, never a formula, in openpyxl."""
    path = single_value_workbook(tmp_path, [value])
    cell = openpyxl.load_workbook(path)["Errors"]["D2"]
    assert cell.data_type == "s"
    assert calamine_rows(path)[1][3] == value


@pytest.mark.parametrize("value", FORMULA_LIKE + TRICKY)
def test_write_error_workbook_text_survives_reimport_through_the_loader(tmp_path, value):
    reloaded = load_sheet(single_value_workbook(tmp_path, [value]))
    assert reloaded.headers == [*LEAD, "Value"]
    assert reloaded.frame["Value"].tolist() == [value]


@pytest.mark.parametrize("value", ["a\x00b", "\x01\x02\x1f", "tab\tkept \x0b vertical tab", "cr\ronly"])
def test_write_error_workbook_control_characters_are_escaped_as_excel_does(tmp_path, value):
    path = single_value_workbook(tmp_path, [value])
    assert calamine_rows(path)[1][3] == value
    assert load_sheet(path).frame["Value"].tolist() == [value]
    (row,) = error_rows(path)
    assert row["Error"] == "rejected"


@pytest.mark.parametrize(
    ("value", "stored"),
    [("\ufffe\uffff", "\ufffd\ufffd"), ("lone \ud800 surrogate", "lone \ufffd surrogate")],
)
def test_write_error_workbook_unstorable_characters_are_replaced_and_reported(tmp_path, value, stored):
    path = single_value_workbook(tmp_path, [value])
    (row,) = error_rows(path)
    assert row["Value"] == stored
    assert calamine_rows(path)[1][3] == stored
    count = stored.count("\ufffd") - value.count("\ufffd")
    assert row["Error"] == (
        f"rejected; Value: {count} character(s) that Excel cannot store were replaced with '\ufffd'"
    )


def test_write_error_workbook_control_characters_in_headers_and_messages_survive(tmp_path):
    sheet = make_sheet(["Na\x01me"], [["x"]], [2])
    path = write(tmp_path, [RowError(2, Stage.VALIDATION, "bad \x02 reply", "Na\x01me")], sheet)
    assert calamine_rows(path)[0][3] == "Na\x01me"
    assert openpyxl.load_workbook(path)["Errors"]["D2"].comment.text == "bad _x0002_ reply"


def test_write_error_workbook_long_cell_keeps_first_32767_characters_and_says_so(tmp_path):
    path = single_value_workbook(tmp_path, ["a" * 40_000])
    (row,) = error_rows(path)
    assert row["Value"] == "a" * 32_767
    assert calamine_rows(path)[1][3] == "a" * 32_767
    assert row["Error"] == (
        "rejected; Value: cut to the first 32,767 characters (Excel's limit for a cell); "
        "the full text had 40,000"
    )


def test_write_error_workbook_long_cell_is_cut_in_utf16_units_without_splitting_a_pair(tmp_path):
    """Excel counts UTF-16 units: an emoji takes two, and is never cut in half."""
    (row,) = error_rows(single_value_workbook(tmp_path, ["😀" * 20_000]))
    assert row["Value"] == "😀" * 16_383
    assert "the full text had 40,000" in row["Error"]


def test_write_error_workbook_text_at_the_limit_is_kept_whole(tmp_path):
    (row,) = error_rows(single_value_workbook(tmp_path, ["b" * 32_767]))
    assert row["Value"] == "b" * 32_767
    assert row["Error"] == "rejected"


def test_write_error_workbook_missing_values_in_the_frame_are_blank(tmp_path):
    frame = pd.DataFrame({"A": [None], "B": [float("nan")], "C": ["x"]}, dtype=object)
    sheet = Sheet(Path("in.csv"), ["A", "B", "C"], frame, [2])
    (row,) = error_rows(write(tmp_path, [RowError(2, Stage.API, "x")], sheet))
    assert (row["A"], row["B"], row["C"]) == (None, None, "x")


texts = st.one_of(
    st.text(),
    st.builds(str.__add__, st.sampled_from(["=", "+", "-", "@", "0", "_x", "\r"]), st.text()),
)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(texts, min_size=1, max_size=8))
def test_write_error_workbook_any_text_round_trips_and_is_never_a_formula(values):
    with tempfile.TemporaryDirectory() as folder:
        path = single_value_workbook(Path(folder), values)
        cells = [row[3] for row in openpyxl.load_workbook(path)["Errors"].iter_rows(min_row=2)]
        expected = [storable(value) for value in values]
        assert all(cell.data_type == "s" for cell in cells if cell.value is not None)
        assert [row[3] for row in calamine_rows(path)[1:]] == expected


# Writing safely


def fail_midway(file, sheets):
    file.write(b"PK\x03\x04 half a workbook")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fail_replace(source, target):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


@pytest.mark.parametrize(
    ("target", "fake"),
    [("importer.report._write_workbook", fail_midway), ("importer.atomic.os.replace", fail_replace)],
)
def test_write_error_workbook_failure_keeps_old_file_and_leaves_no_temp_file(
    tmp_path, monkeypatch, target, fake
):
    path = tmp_path / "visits.errors.xlsx"
    path.write_bytes(b"the previous workbook")
    monkeypatch.setattr(target, fake)
    with pytest.raises(OutputError, match="cannot write the error workbook") as raised:
        write_error_workbook(path, make_sheet(), [RowError(2, Stage.API, "x")])
    assert str(path) in str(raised.value)
    assert path.read_bytes() == b"the previous workbook"
    assert os.listdir(tmp_path) == ["visits.errors.xlsx"]


def test_write_error_workbook_replaces_an_existing_workbook(tmp_path):
    path = tmp_path / "visits.errors.xlsx"
    path.write_bytes(b"the previous workbook")
    write_error_workbook(path, make_sheet(), [RowError(3, Stage.API, "x")])
    assert [row["Source Row"] for row in error_rows(path)] == [3]
    assert os.listdir(tmp_path) == ["visits.errors.xlsx"]


def test_write_error_workbook_into_missing_folder_raises_output_error(tmp_path):
    path = tmp_path / "missing" / "errors.xlsx"
    with pytest.raises(OutputError, match="No such file or directory") as raised:
        write_error_workbook(path, make_sheet(), [RowError(2, Stage.API, "x")])
    assert str(path) in str(raised.value)


def test_check_writable_accepts_a_writable_folder_and_leaves_nothing_behind(tmp_path):
    check_writable(tmp_path / "errors.xlsx")
    check_writable(str(tmp_path / "errors.xlsx"))
    assert os.listdir(tmp_path) == []


def test_check_writable_leaves_an_existing_file_untouched(tmp_path):
    path = tmp_path / "errors.xlsx"
    path.write_bytes(b"keep me")
    check_writable(path)
    assert path.read_bytes() == b"keep me"
    assert os.listdir(tmp_path) == ["errors.xlsx"]


def test_check_writable_missing_folder_raises_output_error_naming_the_path(tmp_path):
    path = tmp_path / "missing" / "errors.xlsx"
    with pytest.raises(OutputError, match="is not an existing folder") as raised:
        check_writable(path)
    assert str(path) in str(raised.value)


def test_check_writable_parent_is_a_file_raises_output_error(tmp_path):
    blocker = tmp_path / "report.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OutputError, match="is not an existing folder"):
        check_writable(blocker / "errors.xlsx")


def test_check_writable_path_is_a_folder_raises_output_error(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path)


def test_check_writable_unwritable_folder_raises_output_error(tmp_path, monkeypatch):
    """As root chmod does not block writes, so the refusal is simulated where the file is made."""

    def refuse(self, mode="r", *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(OutputError, match="Permission denied"):
        check_writable(tmp_path / "errors.xlsx")


# Where a person meets it: the workbook of a real import, through the CLI against the sandbox


def _sample_run(tmp_path: Path, env: dict[str, str], command: str) -> Path:
    workbook = tmp_path / "activities.errors.xlsx"
    package = resources.files("importer")
    result = run_cli(
        command,
        str(package / "sample_data" / "activities.csv"),
        "--mapping",
        str(package / "mappings" / "example.yaml"),
        "--errors",
        workbook,
        "--rate-limit",
        FAST_LIMIT,
        "--no-progress",
        *(["--settle-time", "0"] if command == "run" else []),
        env=env,
    )
    assert result.code == 1, result.output
    return workbook


def test_run_workbook_names_fields_by_display_name_and_sums_up_the_run(tmp_path, env):
    workbook = _sample_run(tmp_path, env, "run")
    rows = {row["Source Row"]: row for row in error_rows(workbook)}
    assert (
        rows[89]["Error"] == "PAN Number (mx_Custom_1): is empty, but a value is required"
    )  # the account's name
    assert rows[68]["Error"] == "Due Date (mx_Custom_3): not a date in the form DD/MM/YYYY: '31/02/2024'"
    assert rows[167]["Error"] == (
        "Opportunity ID: LeadSquared has no opportunity '40ccba04-baf8-533b-a52f-61d1f7728d28' that these "
        "keys can see: check the opportunity id"
    )
    assert rows[167]["LeadSquared's message"].startswith("MXInvalidInputException: Opportunity 40ccba04")
    assert not any("Exception" in row["Error"] or "%" in row["Error"] for row in rows.values())
    summary = summary_rows(workbook)
    assert [row[:2] for row in summary[1:5]] == [
        ("Rows in the file", 200),
        ("Posted to LeadSquared", 190),
        ("Skipped: already in LeadSquared", 0),
        ("Failed or not sent: the rows of this workbook", 10),
    ]
    problems = problem_rows(workbook)
    assert problems[0][:3] == (
        "Opportunity ID",
        2,
        "LeadSquared has no opportunity '...' that these keys can see: check the opportunity id",
    )
    assert problems[-1] == ("Total", 10, None, None, None)


def test_offline_validate_workbook_names_fields_by_their_column(tmp_path, env):
    workbook = _sample_run(tmp_path, env, "validate")
    rows = {row["Source Row"]: row for row in error_rows(workbook)}
    assert rows[89]["Error"] == "PAN (mx_Custom_1): is empty, but a value is required"
    assert "LeadSquared's message" not in rows[89]
    assert summary_rows(workbook)[2][0] == "Posted (validate only: nothing is sent)"


def test_failed_rows_are_found_in_the_sheet_by_their_row_number():
    from importer.report import _sheet_positions

    rows = [2, 3, 5, 8, 13, 21]  # blank rows dropped: gaps
    assert _sheet_positions(rows, [13, 2, 4, 21, 22, 1]) == [4, 0, None, 5, None, None]
    shuffled = [8, 2, 21, 5]  # a sheet not in order still finds its rows
    assert _sheet_positions(shuffled, [5, 21, 3]) == [3, 2, None]
