"""The loader reads real CSV files and workbooks (tests/data, made by make_fixtures.py) as text."""

from __future__ import annotations

import codecs
import csv
import os
import shutil
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importer.errors import InputFileError
from importer.loader import DELIMITERS, column_letter, load_sheet

DATA = Path(__file__).parent / "data"

LEADS_HEADERS = ["Name", "Amount", "Code", "Note"]
LEADS_ROWS = [
    ["José", "1.50", "00123", "NA"],
    ["Zoë", "12", "007", "a, b; c\td\nsecond line"],
    [" Ann € ", "-3", "", "null"],
]


def _rows(sheet) -> list[list[str]]:
    return sheet.frame.to_numpy().tolist()


def _write_xlsx(path: Path, cells: dict[str, object]) -> Path:
    book = openpyxl.Workbook()
    for ref, value in cells.items():
        book.active[ref] = value
    book.save(path)
    return path


def _load_error(path: Path, **kwargs) -> str:
    with pytest.raises(InputFileError) as caught:
        load_sheet(path, **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "name",
    [
        "leads_utf8.csv",
        "leads_utf8_bom.csv",
        "leads_cp1252.csv",
        "leads_semicolon.csv",
        "leads_tab.tsv",
        "leads_utf16.txt",
    ],
)
def test_load_sheet_text_variants(name):
    sheet = load_sheet(DATA / name)

    assert sheet.path == DATA / name
    assert sheet.headers == LEADS_HEADERS
    assert list(sheet.frame.columns) == LEADS_HEADERS
    assert _rows(sheet) == LEADS_ROWS
    assert sheet.source_rows == [2, 4, 5]  # row 3 is blank; row 4 spans two lines
    assert all(type(value) is str for value in sheet.frame.to_numpy().ravel())
    assert sheet.frame.index.tolist() == [0, 1, 2]
    assert sheet.sheet_name is None
    assert len(sheet) == 3


def test_load_sheet_cp1252_is_noted():
    notes = load_sheet(DATA / "leads_cp1252.csv").notes
    assert len(notes) == 1
    assert "cp1252" in notes[0]
    assert "line 2" in notes[0]
    assert load_sheet(DATA / "leads_utf8.csv").notes == []


@pytest.mark.parametrize(
    ("data", "headers", "rows"),
    [
        (
            codecs.BOM_UTF16_BE + "Name\tNote\r\nAnn\tx\r\n".encode("utf-16-be"),
            ["Name", "Note"],
            [["Ann", "x"]],
        ),
        ("\u00a0Name\u00a0,\u200bNote \nAnn,x\n".encode(), ["Name", "Note"], [["Ann", "x"]]),
        ("Name,Note\nAnn,\u00e9\n".encode("cp1252"), ["Name", "Note"], [["Ann", "\u00e9"]]),
        (b'Name,Note\r\nAnn,"a\r\nb"\r\n', ["Name", "Note"], [["Ann", "a\r\nb"]]),
    ],
)
def test_load_sheet_csv_bytes(tmp_path, data, headers, rows):
    path = tmp_path / "input.csv"
    path.write_bytes(data)

    sheet = load_sheet(path)

    assert (sheet.headers, _rows(sheet)) == (headers, rows)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            codecs.BOM_UTF8 + b"Name,Note\nAnn,\xff\n",
            "line 2: the file starts with a UTF-8 mark but is not UTF-8",
        ),
        (codecs.BOM_UTF16_LE + "Name\tNote\n".encode("utf-16-le") + b"A", "is not UTF-16 text"),
        (codecs.BOM_UTF8, "the file is empty"),
        (b",,,\n,,\n", "the file is empty"),
    ],
)
def test_load_sheet_csv_bad_bytes(tmp_path, data, expected):
    path = tmp_path / "input.csv"
    path.write_bytes(data)

    assert expected in _load_error(path)


def test_load_sheet_csv_keeps_cells_as_written(tmp_path):
    cells = ["00123", "12", "1.50", "NA", "null", "nan", "", " padded ", "TRUE", "1e5", "#N/A"]
    path = tmp_path / "literal.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow([f"h{i}" for i in range(len(cells))])
        writer.writerow(cells)

    assert _rows(load_sheet(path)) == [cells]


@pytest.mark.parametrize("name", ["export.csv.gz", "export.zip.txt", "http:/export.csv", "~/export.csv"])
def test_load_sheet_text_read_as_text_whatever_its_path_looks_like(tmp_path, monkeypatch, name):
    """pandas guesses decompression from a name and fetches URLs: the loader lets it do neither."""
    monkeypatch.chdir(tmp_path)
    path = Path(name)  # relative, as typed at the terminal
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("Name,Amount\nAnn,1.5\n", encoding="utf-8")

    sheet = load_sheet(path)

    assert (sheet.headers, _rows(sheet)) == (["Name", "Amount"], [["Ann", "1.5"]])


@pytest.mark.parametrize(
    ("text", "headers", "rows"),
    [
        ("Name;Amount\nAnn;1,5\nBob;2,25\n", ["Name", "Amount"], [["Ann", "1,5"], ["Bob", "2,25"]]),
        ("Name,Note\nAnn,a;b\nBob,c;d;e\n", ["Name", "Note"], [["Ann", "a;b"], ["Bob", "c;d;e"]]),
        ("Name\tNote\nAnn\ta, b\n", ["Name", "Note"], [["Ann", "a, b"]]),
        ('"Name";"Note, misc"\n"Ann";"x, y"\n', ["Name", "Note, misc"], [["Ann", "x, y"]]),
        ("Email\na;b@example.com\n", ["Email"], [["a;b@example.com"]]),
        ("a,b,c\n1\n", ["a", "b", "c"], [["1", "", ""]]),  # a short row is padded
        ("a,b\r1,2\r", ["a", "b"], [["1", "2"]]),  # old Mac line ends
    ],
)
def test_load_sheet_csv_delimiters_and_shapes(tmp_path, text, headers, rows):
    path = tmp_path / "input.csv"
    path.write_text(text, encoding="utf-8", newline="")

    sheet = load_sheet(path)

    assert (sheet.headers, _rows(sheet)) == (headers, rows)


@pytest.mark.parametrize(
    ("name", "headers", "rows", "source_rows"),
    [
        ("header_only.csv", ["Name", "Amount"], [], []),
        ("single_column.csv", ["Email"], [["a@example.com"], ["b;c@example.com"]], [2, 3]),
        ("leading_blank_lines.csv", ["Name", "Amount"], [["1", "2"]], [4]),
        ("trailing_empty_columns.csv", ["Name", "Amount"], [["Ann", "1"], ["Bob", "2"]], [2, 4]),
    ],
)
def test_load_sheet_csv_shapes(name, headers, rows, source_rows):
    sheet = load_sheet(DATA / name)

    assert sheet.headers == headers
    assert _rows(sheet) == rows
    assert sheet.source_rows == source_rows


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("empty.csv", "the file is empty"),
        ("whitespace_only.csv", "the file is empty"),
        ("nul_byte.csv", "line 2 holds a NUL byte"),
        ("not_text.csv", "line 2: the text is neither UTF-8 nor Windows-1252"),
        ("ragged.csv", "row 5 has 4 cells but the header has 3"),
        ("no_header.csv", "column C has no header but row 3 has a value in it"),
        ("duplicate_headers.csv", "the header 'Email' appears twice: columns A and C"),
        ("unclosed_quote.csv", "row 3: a quoted cell is never closed"),
        ("corrupt.xlsx", "the workbook is damaged or incomplete"),
        ("csv_renamed.xlsx", "this is a text (CSV) file with a workbook name: rename it to .csv"),
        ("encrypted.xlsx", "the workbook is password-protected"),
    ],
)
def test_load_sheet_bad_file(name, expected):
    assert expected in _load_error(DATA / name)


def test_load_sheet_missing_file(tmp_path):
    assert "the file does not exist" in _load_error(tmp_path / "nope.csv")


def test_load_sheet_folder(tmp_path):
    folder = tmp_path / "leads.xlsx"
    folder.mkdir()
    assert "this is a folder, not a file" in _load_error(folder)


def test_load_sheet_path_through_a_file(tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("Name\n", encoding="utf-8")
    assert "the file cannot be read: Not a directory" in _load_error(path / "more.csv")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_load_sheet_unreadable_file(tmp_path):
    path = shutil.copy(DATA / "leads_utf8.csv", tmp_path / "locked.csv")
    Path(path).chmod(0)
    assert "the file cannot be read" in _load_error(Path(path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a,b\n\n"x\ny",1\n\n1,2,3\n', "row 5 has 3 cells but the header has 2"),
        ('\n\na,b\n"x\ny",1\n1,2,3\n', "row 5 has 3 cells but the header has 2"),
        ('\n\na,b\n"x\ny",1\n1,"2\n', "row 5: a quoted cell is never closed"),
    ],
)
def test_load_sheet_csv_problem_rows_count_blank_and_multiline_rows(tmp_path, text, expected):
    path = tmp_path / "ragged.csv"
    path.write_text(text, encoding="utf-8")

    assert expected in _load_error(path)


def test_load_sheet_workbook_as_the_user_sees_it():
    sheet = load_sheet(DATA / "typed.xlsx")

    assert sheet.sheet_name == "Leads"  # the first visible sheet: "Lookup" is hidden
    assert sheet.notes == ["read the sheet 'Leads'; the workbook also has 'Lookup', 'Notes'"]
    assert sheet.headers == [
        "Name", "Count", "Code", "When", "Day", "At", "Flag", "Total", "Ratio", "Big"
    ]  # fmt: skip
    assert sheet.source_rows == [4, 7, 8]  # the header is on row 3; rows 5 and 6 are blank
    assert _rows(sheet) == [
        [
            "Ann", "12", "00123", "2024-01-05 13:45:30", "2024-02-01", "09:30:00",
            "TRUE", "24", "1.5", "123457000000000000",
        ],
        ["Bob", "0.3", "007", "2024-03-01", "", "26:03:00", "FALSE", "", "0", "0.0000003"],
        ["merged", "", "", "", "", "", "", "", "", ""],
    ]  # fmt: skip
    assert all(type(value) is str for value in sheet.frame.to_numpy().ravel())


@pytest.mark.parametrize(
    ("name", "headers", "rows"),
    [
        ("legacy.xls", ["Name", "Count", "When"], [["Ann", "12", "2024-01-05 10:30:00"]]),
        ("leads.ods", ["Name", "Count"], [["Ann", "12"]]),
    ],
)
def test_load_sheet_other_workbook_formats(name, headers, rows):
    sheet = load_sheet(DATA / name)

    assert (sheet.sheet_name, sheet.headers, _rows(sheet), sheet.source_rows) == (
        "Leads",
        headers,
        rows,
        [2],
    )


@pytest.mark.parametrize("asked", ["Notes", " notes "])
def test_load_sheet_workbook_named_sheet(asked):
    sheet = load_sheet(DATA / "typed.xlsx", sheet=asked)

    assert (sheet.sheet_name, sheet.headers, sheet.source_rows) == ("Notes", ["Title"], [])
    assert sheet.notes == []


def test_load_sheet_workbook_missing_sheet():
    message = _load_error(DATA / "typed.xlsx", sheet="Contacts")
    assert "there is no sheet named 'Contacts'; the sheets are 'Lookup', 'Leads', 'Notes'" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, "12"),
        (12.0, "12"),
        (-7.0, "-7"),
        (1.5, "1.5"),
        (0.1 + 0.2, "0.3"),
        (1.23457e17, "123457000000000000"),
        (1.234567890123457e17, "123456789012346000"),
        (123456789012345.0, "123456789012345"),
        (1e-7, "0.0000001"),
        (1e-12, "1E-12"),
        (1e25, "1E+25"),
        (True, "TRUE"),
        (False, "FALSE"),
        (datetime(2024, 1, 5, 13, 45, 30), "2024-01-05 13:45:30"),
        (datetime(2024, 1, 5, 13, 45, 30, 600000), "2024-01-05 13:45:31"),
        (datetime(2024, 1, 5), "2024-01-05"),
        (date(2024, 2, 29), "2024-02-29"),
        (time(9, 5, 7), "09:05:07"),
        (timedelta(hours=26, minutes=3), "26:03:00"),
        ("00123", "00123"),
        (" spaced ", " spaced "),
    ],
)
def test_load_sheet_workbook_cell_text(tmp_path, value, expected):
    path = _write_xlsx(tmp_path / "cell.xlsx", {"A1": "Value", "B1": "Name", "A2": value, "B2": "x"})
    assert _rows(load_sheet(path)) == [[expected, "x"]]


def test_load_sheet_workbook_formula_never_computed_is_empty(tmp_path):
    # openpyxl saves formulas without the value Excel would have computed and stored
    path = _write_xlsx(tmp_path / "formula.xlsx", {"A1": "Total", "B1": "Name", "A2": "=1+2"})
    assert load_sheet(path).source_rows == []


def test_load_sheet_workbook_columns_are_named_by_letter(tmp_path):
    path = _write_xlsx(tmp_path / "gap.xlsx", {"B2": "Name", "D2": "Amount", "B3": "Ann", "C4": "x"})
    assert "column C has no header but row 4 has a value in it" in _load_error(path)


def test_load_sheet_workbook_skips_empty_unnamed_columns(tmp_path):
    path = _write_xlsx(tmp_path / "gap.xlsx", {"B2": "Name", "D2": "Amount", "B3": "Ann", "D3": 1})

    sheet = load_sheet(path)

    assert (sheet.headers, _rows(sheet), sheet.source_rows) == (
        ["Name", "Amount"],
        [["Ann", "1"]],
        [3],
    )


def test_load_sheet_workbook_duplicate_headers(tmp_path):
    path = _write_xlsx(tmp_path / "dup.xlsx", {"A1": "Email", "B1": "Name", "E1": "Email "})
    assert "the header 'Email' appears twice: columns A and E" in _load_error(path)


def test_load_sheet_workbook_empty_sheet(tmp_path):
    path = _write_xlsx(tmp_path / "empty.xlsx", {"C3": "  "})
    assert "the sheet 'Sheet' is empty" in _load_error(path)


def test_load_sheet_sniffs_unknown_extensions(tmp_path):
    workbook = shutil.copy(DATA / "typed.xlsx", tmp_path / "export.dat")
    text = shutil.copy(DATA / "leads_utf8.csv", tmp_path / "export.dat2")

    assert load_sheet(workbook).source_rows == [4, 7, 8]
    assert _rows(load_sheet(text)) == LEADS_ROWS


def test_load_sheet_workbook_named_as_csv(tmp_path):
    path = Path(shutil.copy(DATA / "typed.xlsx", tmp_path / "leads.csv"))
    assert "an Excel workbook saved with a .csv name: rename it to .xlsx" in _load_error(path)


def test_load_sheet_csv_ignores_a_sheet_name():
    sheet = load_sheet(DATA / "leads_utf8.csv", sheet="Leads")

    assert sheet.sheet_name is None
    assert sheet.notes == ["a text file has a single sheet: the sheet name 'Leads' was ignored"]


@pytest.mark.parametrize(
    ("index", "letter"), [(0, "A"), (2, "C"), (25, "Z"), (26, "AA"), (701, "ZZ"), (702, "AAA")]
)
def test_column_letter(index, letter):
    assert column_letter(index) == letter


@st.composite
def _csv_tables(draw):
    """A delimiter, a quoting style and a grid that the csv module can write unambiguously.

    With minimal quoting a cell may not hold another candidate delimiter: `a,;b` is a valid
    file either way. Quoting every cell lets cells hold anything.
    """
    delimiter = draw(st.sampled_from(DELIMITERS))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    excluded = "\x00\ufeff"  # a NUL makes a binary file; a BOM would be read as the encoding's
    if quoting == csv.QUOTE_MINIMAL:
        excluded += "".join(other for other in DELIMITERS if other != delimiter)
    alphabet = st.characters(exclude_categories=["Cs"], exclude_characters=excluded)
    header = st.text(alphabet, min_size=1, max_size=6).filter(
        lambda text: text == text.strip() and text.strip("\u200b\u200c\u200d\u2060") == text
    )
    headers = draw(st.lists(header, min_size=1, max_size=5, unique=True))
    cell = st.text(alphabet, max_size=6)
    rows = draw(st.lists(st.lists(cell, min_size=len(headers), max_size=len(headers)), max_size=6))
    return delimiter, quoting, headers, rows


@settings(max_examples=300, deadline=None)
@given(_csv_tables())
def test_load_sheet_reads_back_what_the_csv_module_wrote(table):
    delimiter, quoting, headers, rows = table
    expected = [(number, row) for number, row in enumerate(rows, start=2) if "".join(row).strip()]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "grid.csv"
        with path.open("w", newline="", encoding="utf-8") as file:
            csv.writer(file, delimiter=delimiter, quoting=quoting).writerows([headers, *rows])

        sheet = load_sheet(path)

    assert sheet.headers == headers
    assert _rows(sheet) == [row for _, row in expected]
    assert sheet.source_rows == [number for number, _ in expected]


_CELL_VALUES = st.one_of(
    st.text(max_size=5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 12.0, 1e15, 999999999999999.0, 1e-5, 0.1 + 0.2, 1.23457e17]),
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.datetimes(min_value=datetime(1899, 12, 30), max_value=datetime(9999, 12, 30)),
    st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(1990, 1, 1)).map(
        lambda moment: moment.replace(microsecond=499_999 + moment.microsecond % 3)  # about the rounding
    ),
    st.dates(min_value=date(1900, 1, 1)).map(lambda day: datetime(day.year, day.month, day.day)),
    st.dates(min_value=date(1900, 1, 1)),
    st.times(),
    st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=3)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_CELL_VALUES, min_size=1, max_size=4), min_size=1, max_size=12))
def test_cell_texts_a_column_at_a_time_are_each_cells_own_text(grid):
    """The column-wise road writes every value (and ragged rows, padded) as `_cell_text` does."""
    from importer.loader import _cell_text, _cell_texts

    width = max(map(len, grid))
    expected = [
        [v if type(v) is str else _cell_text(v) for v in row] + [""] * (width - len(row)) for row in grid
    ]
    assert _cell_texts(grid) == expected
