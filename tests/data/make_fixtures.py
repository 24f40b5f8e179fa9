"""Regenerate the loader's fixture files in this folder: `python tests/data/make_fixtures.py`.

The generated files are committed and the tests read those, so this only runs when a fixture
changes. openpyxl makes the .xlsx files; three optional tools make the rest and, when missing,
their files are left as committed: msoffcrypto-tool (encrypted.xlsx), xlwt (legacy.xls) and
odfpy (leads.ods), e.g. `pip install --target /tmp/fixtools msoffcrypto-tool xlwt odfpy` and
`PYTHONPATH=/tmp/fixtools python tests/data/make_fixtures.py`. A rerun rewrites every file
byte for byte, except encrypted.xlsx (a random salt) and leads.ods (odfpy's timestamps).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import date, datetime, time, timedelta
from pathlib import Path

import openpyxl

HERE = Path(__file__).parent

# The same small table in every text variant: a blank row 3, and a quoted cell holding every
# candidate delimiter and a line break, so rows 2, 4 and 5 come back.
TABLE = [
    ["Name", "Amount", "Code", "Note"],
    ["José", "1.50", "00123", "NA"],
    [],
    ["Zoë", "12", "007", "a, b; c\td\nsecond line"],
    [" Ann € ", "-3", "", "null"],
]

TEXT_VARIANTS = {
    "leads_utf8.csv": ("utf-8", ","),
    "leads_utf8_bom.csv": ("utf-8-sig", ","),
    "leads_cp1252.csv": ("cp1252", ";"),  # what Excel writes as "CSV" in a European locale
    "leads_semicolon.csv": ("utf-8", ";"),
    "leads_tab.tsv": ("utf-8", "\t"),
    "leads_utf16.txt": ("utf-16", "\t"),  # Excel's "Unicode text": UTF-16 LE with a BOM
}

SMALL_CSV = {
    "header_only.csv": "Name,Amount\r\n",
    "empty.csv": "",
    "whitespace_only.csv": "  \r\n\r\n\t\r\n",
    "single_column.csv": "Email\na@example.com\nb;c@example.com\n",
    "leading_blank_lines.csv": "\n ,\nName,Amount\n1,2\n",
    "ragged.csv": 'a,b,c\n1,2,3\n4,5\n6,"x\ny",7\n8,9,10,11\n',
    "no_header.csv": "Name,Amount,,Note\nAnn,1,,x\nBob,2,oops,y\n",
    "trailing_empty_columns.csv": "Name,Amount,,\nAnn,1,,\n,,,\nBob,2,, \n",
    "duplicate_headers.csv": "Email,Name, Email\u00a0\na@example.com,Ann,b@example.com\n",
    "unclosed_quote.csv": 'Name,Note\nAnn,"fine"\nBob,"never closed\n',
    "csv_renamed.xlsx": "Name,Amount\nAnn,1\n",
}


def main() -> None:
    for name, (encoding, delimiter) in TEXT_VARIANTS.items():
        (HERE / name).write_bytes(_csv_text(TABLE, delimiter).encode(encoding))
    for name, text in SMALL_CSV.items():
        (HERE / name).write_bytes(text.encode())
    (HERE / "nul_byte.csv").write_bytes(b"Name,Amount\nAnn,1\x00\n")
    (HERE / "not_text.csv").write_bytes(b"Name,Amount\nAnn,\x81\x8d\n")  # not UTF-8 nor cp1252
    _typed_workbook(HERE / "typed.xlsx")
    (HERE / "corrupt.xlsx").write_bytes((HERE / "typed.xlsx").read_bytes()[:2000])
    _optional(_encrypted_workbook, HERE / "encrypted.xlsx")
    _optional(_legacy_workbook, HERE / "legacy.xls")
    _optional(_ods_workbook, HERE / "leads.ods")


def _csv_text(rows: list[list[str]], delimiter: str) -> str:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _typed_workbook(path: Path) -> None:
    """Real typed cells, the header on row 3, blank rows, a formula, a hidden first sheet."""
    book = openpyxl.Workbook()
    hidden = book.active
    hidden.title = "Lookup"
    hidden.sheet_state = "hidden"
    hidden["A1"] = "not this one"
    sheet = book.create_sheet("Leads")
    book.create_sheet("Notes")["A1"] = "Title"
    headers = [" Name\u00a0", "Count", "Code", "When", "Day", "At", "Flag", "Total", "Ratio", "Big"]
    rows = {
        3: headers,
        4: [
            "Ann",
            12,
            "00123",
            datetime(2024, 1, 5, 13, 45, 30),
            date(2024, 2, 1),
            time(9, 30),
            True,
            "=B4*2",
            1.5,
            1.23457e17,
        ],
        6: ["  ", None, " "],  # whitespace only: a blank row
        7: [
            "Bob",
            0.1 + 0.2,
            "007",
            datetime(2024, 3, 1),
            None,
            timedelta(hours=26, minutes=3),
            False,
            "=NA()",
            -0.0,
            3e-7,
        ],
        8: ["merged"],
    }
    for number, values in rows.items():
        for column, value in enumerate(values, start=1):
            sheet.cell(number, column, value)
    sheet.merge_cells("A8:B8")
    book.active = 1
    book.save(path)
    # openpyxl writes formulas without a computed value; Excel stores the last one it computed.
    _set_cached_values(path, "xl/worksheets/sheet2.xml", {"H4": ("n", "24"), "H7": ("e", "#N/A")})


def _set_cached_values(path: Path, member: str, values: dict[str, tuple[str, str]]) -> None:
    """Store formula results as Excel does, and pin the timestamps so a rerun changes nothing."""
    with zipfile.ZipFile(path) as source:
        parts = {info.filename: source.read(info) for info in source.infolist()}
    xml = parts[member].decode()
    for ref, (kind, value) in values.items():
        pattern = rf'<c r="{ref}"( [^>]*)?><f>([^<]*)</f><v\s*/>'
        xml, count = re.subn(pattern, rf'<c r="{ref}" t="{kind}"><f>\2</f><v>{value}</v>', xml)
        assert count == 1, ref
    parts[member] = xml.encode()
    core = parts["docProps/core.xml"].decode()
    parts["docProps/core.xml"] = re.sub(r"\d{4}-\d\d-\d\dT[\d:]+Z", "2024-01-01T00:00:00Z", core).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in parts.items():
            target.writestr(
                zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED
            )


def _encrypted_workbook(path: Path) -> None:
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = io.BytesIO()
    openpyxl_book = openpyxl.Workbook()
    openpyxl_book.active["A1"] = "Name"
    openpyxl_book.save(plain)
    plain.seek(0)
    with path.open("wb") as target:
        OOXMLFile(plain).encrypt("secret", target)


def _legacy_workbook(path: Path) -> None:
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Leads")
    stamp = xlwt.easyxf(num_format_str="yyyy-mm-dd hh:mm:ss")
    for column, value in enumerate(["Name", "Count", "When"]):
        sheet.write(0, column, value)
    sheet.write(1, 0, "Ann")
    sheet.write(1, 1, 12)
    sheet.write(1, 2, datetime(2024, 1, 5, 10, 30), stamp)
    book.save(str(path))


def _ods_workbook(path: Path) -> None:
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    document = OpenDocumentSpreadsheet()
    table = Table(name="Leads")
    for values in (["Name", "Count"], ["Ann", 12.0]):
        row = TableRow()
        for value in values:
            if isinstance(value, str):
                cell = TableCell(valuetype="string")
            else:
                cell = TableCell(valuetype="float", value=value)
            cell.addElement(P(text=str(value)))
            row.addElement(cell)
        table.addElement(row)
    document.spreadsheet.addElement(table)
    document.save(str(path))


def _optional(make, path: Path) -> None:
    try:
        make(path)
    except ImportError as exc:
        print(f"kept the committed {path.name}: {exc.name} is not installed")


if __name__ == "__main__":
    main()
