"""Regenerate the bad-input corpus in this folder: `python tests/data/bad/make_bad.py`.

Each file is one kind of messy or hostile input, and the `CASES` table of tests/test_bad_inputs.py
says exactly what the tool must answer to each: exit code, message, rows in the error workbook,
rows imported. The files are committed; the large ones (a zip bomb, a 200 MB CSV) are made at
test time by `zip_bomb` and `big_csv` below. Two files need
optional tools and are otherwise left as committed: msoffcrypto-tool (encrypted.xlsx) and xlwt
(legacy.xls), e.g. `PYTHONPATH=/tmp/fixtools python tests/data/bad/make_bad.py`.
"""

from __future__ import annotations

import csv
import io
import random
import re
import struct
import zipfile
import zlib
from datetime import date, datetime
from pathlib import Path

import openpyxl
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS

HERE = Path(__file__).parent
OPP = DEFAULT_OPPORTUNITIES
OWNER = DEFAULT_USERS[0]
HEADERS = ["Opportunity ID", "Owner Email", "Note", "When", "PAN", "Amount", "Due", "Reference"]
LONG_NOTE = "".join(f"{i:05d} " for i in range(6700))[:40_000]  # over Excel's 32,767 per cell

MAPPING = """\
# The mapping every corpus file is imported with, unless its case names another.
activity_event: {value: 201}
opportunity_id: {column: "Opportunity ID"}
owner_email: {column: "Owner Email"}
note: {column: Note}
activity_datetime: {column: When}
fields:
  mx_Custom_1: {column: PAN, required: true}
  mx_Custom_2: {column: Amount, type: number}
  mx_Custom_3: {column: Due, type: date}
  mx_Custom_5: {column: Reference}
"""

BAD_MAPPINGS = {
    "yaml_syntax.yaml": 'activity_event: {value: 201}\nopportunity_id: {column: "Opportunity ID"\n'
    'owner_email: {column: "Owner Email"}\n',
    "wrong_types.yaml": MAPPING.replace("required: true", 'required: "sometimes"').replace(
        "{value: 201}", "{value: two hundred}"
    ),
    "unknown_key.yaml": MAPPING + "colour: red\n",
    "alias_bomb.yaml": "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]\n" for p, x in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + MAPPING,
    "maps_nothing.yaml": "# a mapping someone started and never filled in\n",
    "missing_column.yaml": MAPPING.replace("column: Amount", "column: Amout"),
    "fields_as_list.yaml": MAPPING.split("fields:", 1)[0] + "fields: [mx_Custom_1, mx_Custom_2]\n",
    "not_a_field.yaml": MAPPING.replace("mx_Custom_5:", "mx_Custom_51:"),
}


def row(opp: str = OPP[0], **cells: str) -> list[str]:
    """A valid row of the corpus table; keyword arguments replace cells (spaces as underscores)."""
    values = {
        "Opportunity ID": opp,
        "Owner Email": OWNER,
        "Note": "PAN copy received",
        "When": "2024-03-26 14:15:00",
        "PAN": "ABCDE1234F",
        "Amount": "2500",
        "Due": "2024-03-31",
        "Reference": "000417",
    }
    values.update({name.replace("_", " "): value for name, value in cells.items()})
    return [values[name] for name in HEADERS]


def table_csv(rows: list[list[str]], headers: list[str] = HEADERS, delimiter: str = ",") -> str:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows([headers, *rows])
    return buffer.getvalue()


TEXT_FILES: dict[str, bytes] = {
    "good.csv": table_csv([row(), row(OPP[1])]).encode(),  # the control: every row imports
    "empty.csv": b"",
    "header_only.csv": table_csv([]).encode(),
    "binary_garbage.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(7).randbytes(600),
    "nul_bytes.csv": table_csv([row(), row(Note="before\x00after")]).encode(),
    "utf16_no_bom.csv": table_csv([row()]).encode("utf-16-le"),
    "not_text.csv": table_csv([row()]).encode() + b"\x81\x8d,x\r\n",
    "ragged_long.csv": table_csv([row(), [*row(OPP[1]), "extra"], row(OPP[2])]).encode(),
    "ragged_short.csv": table_csv([row(), row()[:3], row(OPP[1])[:6]]).encode(),
    "duplicate_headers.csv": table_csv([[*row(), "x"]], [*HEADERS, "Note"]).encode(),
    "blank_header.csv": table_csv([[*row(), "stray"]], [*HEADERS, ""]).encode(),
    "unclosed_quote.csv": table_csv([row()]).encode() + f'{OPP[1]},{OWNER},"never closed\r\n'.encode(),
    "invalid_utf8.csv": table_csv([row(Note="Café visit"), row(OPP[1], Note="bad byte: X"), row(OPP[2])])
    .encode()
    .replace(b"bad byte: X", b"bad byte: \xff"),
    "utf16_tab.txt": table_csv([row(Note="Café, reçu"), row(OPP[1], Note="naïve")], delimiter="\t").encode(
        "utf-16"
    ),
    "excel_ids.csv": table_csv(
        [row(), row(opp="1.23457E+17"), row(OPP[1], Reference="1.23457E+17"), row(OPP[2])]
    ).encode(),
    "serial_dates.csv": table_csv([row(When="45377.59375", Due="45382"), row(OPP[1], Due="123")]).encode(),
    "whitespace.csv": table_csv(
        [
            row(
                opp=f" {OPP[0]}\u00a0",
                Owner_Email=f"\u200b{OWNER} ",
                PAN="\u00a0ABCDE1234F\t",
                Amount=" 2,500 ",
            )
        ]
    ).encode(),
    "emails.csv": table_csv(
        [
            row(Owner_Email="  Asha.Rao@Example.COM "),
            row(OPP[1], Owner_Email=f"{OWNER}."),
            row(OPP[2], Owner_Email="asha.rao@@example.com"),
        ]
    ).encode(),
    "newlines.csv": table_csv(
        [row(Note="line one\nline two"), row(OPP[1], Note="first\r\nsecond", Amount="x"), row(OPP[2])]
    ).encode(),
    "long_cell.csv": table_csv([row(Note=LONG_NOTE), row(OPP[1], Note=LONG_NOTE, Amount="x")]).encode(),
    "csv_named.xlsx": table_csv([row()]).encode(),
    "web_page.xls": b"<html><body><table><tr><td>Opportunity ID</td></tr></table></body></html>\r\n",
}


def main() -> None:
    (HERE / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    for name, text in BAD_MAPPINGS.items():
        (HERE / name).write_text(text, encoding="utf-8")
    for name, data in TEXT_FILES.items():
        (HERE / name).write_bytes(data)
    _workbook(HERE / "good.xlsx", [row(), row(OPP[1])], title="Activities")
    (HERE / "xlsx_named.csv").write_bytes((HERE / "good.xlsx").read_bytes())
    (HERE / "truncated.xlsx").write_bytes((HERE / "good.xlsx").read_bytes()[:1500])
    _merged_workbook(HERE / "merged.xlsx")
    _formula_workbook(HERE / "formulas.xlsx")
    _date1904_workbook(HERE / "date1904.xlsx")
    # a long ID typed into Excel as a number: Excel kept 15 of its 18 digits
    _workbook(HERE / "long_number_ids.xlsx", [row(), row(OPP[1], Reference=123456789012345678), row(OPP[2])])
    _optional(_encrypted_workbook, HERE / "encrypted.xlsx")
    _optional(_legacy_workbook, HERE / "legacy.xls")


def _workbook(
    path: Path, rows: list[list[object]], *, title: str = "Sheet1", epoch: date | None = None
) -> None:
    book = openpyxl.Workbook()
    if epoch is not None:
        book.epoch = epoch
    sheet = book.active
    sheet.title = title
    sheet.append(HEADERS)
    for values in rows:
        sheet.append(values)
    book.save(path)
    _rewrite(path, {})


def _merged_workbook(path: Path) -> None:
    """The opportunity merged down over rows 2 to 4, as people group rows by hand."""
    rows: list[list[object]] = [
        row(PAN="P2"),
        row(opp="", PAN="P3"),
        row(opp="", PAN="P4"),
        row(OPP[1], PAN="P5"),
    ]
    _workbook(path, rows)
    book = openpyxl.load_workbook(path)
    book.active.merge_cells("A2:A4")
    book.save(path)
    _rewrite(path, {})


def _formula_workbook(path: Path) -> None:
    """Amount as formulas: calculated (row 2), never calculated (row 3), an error (row 4); plain (row 5).

    Column I (`Check`, not mapped) has a formula never calculated on row 5: it does not matter.
    """
    rows: list[list[object]] = [
        [*row(PAN="P2", Amount="=1000+1500"), "ok"],
        [*row(PAN="P3", Amount="=1000+1500"), "ok"],
        [*row(PAN="P4", Amount="=VLOOKUP(1,Z1:Z2,2,FALSE)"), "ok"],
        [*row(OPP[1], PAN="P5"), "=LEN(A5)"],
    ]
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append([*HEADERS, "Check"])
    for values in rows:
        sheet.append(values)
    book.save(path)
    _rewrite(path, {"F2": ("n", "2500"), "F4": ("e", "#N/A")})


def _date1904_workbook(path: Path) -> None:
    """Real date cells in a workbook that counts days from 1904 (old Mac Excel)."""
    _workbook(
        path, [row(When=datetime(2024, 3, 26, 14, 15), Due=datetime(2024, 3, 31))], epoch=CALENDAR_MAC_1904
    )
    book = openpyxl.load_workbook(path)
    book.active["D2"].number_format = "dd/mm/yyyy hh:mm"
    book.active["G2"].number_format = "dd/mm/yyyy"
    book.save(path)
    _rewrite(path, {})


def _rewrite(path: Path, cached: dict[str, tuple[str, str]]) -> None:
    """Store formula results as Excel does, and pin timestamps so a rerun changes nothing."""
    with zipfile.ZipFile(path) as source:
        parts = {info.filename: source.read(info) for info in source.infolist()}
    xml = parts["xl/worksheets/sheet1.xml"].decode()
    for ref, (kind, value) in cached.items():
        pattern = rf'<c r="{ref}"( [^>]*)?><f>([^<]*)</f><v\s*/>'
        xml, count = re.subn(pattern, rf'<c r="{ref}" t="{kind}"><f>\2</f><v>{value}</v>', xml)
        assert count == 1, ref
    parts["xl/worksheets/sheet1.xml"] = xml.encode()
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
    book = openpyxl.Workbook()
    book.active.append(HEADERS)
    book.active.append(row())
    book.save(plain)
    plain.seek(0)
    with path.open("wb") as target:
        OOXMLFile(plain).encrypt("secret", target)


def _legacy_workbook(path: Path) -> None:
    """An Excel 97-2003 .xls with a real date cell."""
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Activities")
    stamp = xlwt.easyxf(num_format_str="yyyy-mm-dd hh:mm:ss")
    for number, values in enumerate([HEADERS, row(), row(OPP[1])]):
        for column, value in enumerate(values):
            if number and HEADERS[column] == "When":
                sheet.write(number, column, datetime.fromisoformat(value), stamp)
            else:
                sheet.write(number, column, value)
    book.save(str(path))


def _optional(make, path: Path) -> None:
    try:
        make(path)
    except ImportError as exc:
        print(f"kept the committed {path.name}: {exc.name} is not installed")


# --- Made at test time: too large to commit ------------------------------------------------------


def zip_bomb(path: Path, gigabytes: int = 2) -> Path:
    """A real .xlsx whose sheet unpacks to `gigabytes` GB of rows from a file of a few MB.

    Deflate blocks ended by a full flush do not depend on what came before, so one compressed
    block of 8 MiB of rows is repeated; the sizes and checksum in the zip are the true ones.
    """
    base = io.BytesIO()
    book = openpyxl.Workbook()
    book.active.append(HEADERS)
    book.save(base)
    with zipfile.ZipFile(base) as source:
        parts = {info.filename: source.read(info) for info in source.infolist()}
    head = b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    tail = b"</sheetData></worksheet>"
    one = b'<row><c t="inlineStr"><is><t>boom</t></is></c></row>'
    rows = one * ((8 << 20) // len(one))
    repeats = gigabytes * 1024 // 8
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(rows) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.compress(tail) + compressor.flush()
    crc = zlib.crc32(head)
    for _ in range(repeats):
        crc = zlib.crc32(rows, crc)
    sheet = (
        start + block * repeats + end,
        zlib.crc32(tail, crc),
        len(head) + len(rows) * repeats + len(tail),
    )
    members = []
    for name, data in parts.items():
        if name == "xl/worksheets/sheet1.xml":
            members.append((name, *sheet))
        else:
            members.append((name, _deflate(data), zlib.crc32(data), len(data)))
    path.write_bytes(_zip(members))
    return path


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of already deflated members: (name, deflated data, crc32, unpacked size)."""
    out, central = io.BytesIO(), []
    for name, data, crc, size in members:
        offset, encoded = out.tell(), name.encode()
        out.write(
            struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), size, len(encoded), 0)
        )
        out.write(encoded + data)
        central.append(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                8,
                0,
                0,
                crc,
                len(data),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + encoded
        )
    directory = b"".join(central)
    start = out.tell()
    out.write(directory)
    out.write(
        struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), start, 0)
    )
    return out.getvalue()


def big_csv(path: Path, megabytes: int) -> int:
    """A valid corpus CSV of about `megabytes` MB spread over all 100 opportunities; returns its rows."""
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write(",".join(HEADERS) + "\r\n")
        while file.tell() < megabytes * 1_000_000:
            file.write(
                "".join(
                    ",".join(row(OPP[(rows + k) % 100], Reference=f"{rows + k:09d}")) + "\r\n"
                    for k in range(10_000)
                )
            )
            rows += 10_000
    return rows


if __name__ == "__main__":
    main()
