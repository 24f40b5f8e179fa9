"""Write the sample spreadsheets `activities.csv` and `activities.xlsx` (the same rows in both).

Run from anywhere:  python importer/sample_data/make_samples.py

The output is deterministic (a fixed random seed, no network, no clock), so re-running it
reproduces the committed files byte for byte (the XLSX gets fixed document and zip
timestamps). It prints the outcome `lsq-import demo` should report against the sandbox
account, and the table of deliberate bad rows that importer/sample_data/README.md reproduces.

The rows are "Document Collected" activities (sandbox activity type 201) on opportunities of
the sandbox account, read with importer/mappings/example.yaml.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
import re
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

HERE = Path(__file__).resolve().parent
CSV_PATH = HERE / "activities.csv"
XLSX_PATH = HERE / "activities.xlsx"

SEED = 20240326
BATCH_SIZE = 25  # activities per bulk call (per opportunity)
TOTAL_ROWS = 200
BIG_OPPORTUNITY_ROWS = 31  # one opportunity needs two calls
OPPORTUNITY_COUNT = 60  # distinct sandbox opportunities used by the rows

FILE_TIME = dt.datetime(2024, 3, 28, 12, 0, 0)  # stamped into the XLSX for reproducibility

HEADERS = [
    "Opportunity ID",
    "Owner Email",
    "Activity Date",
    "Note",
    "PAN",
    "Amount",
    "Due Date",
    "Channel",
    "Reference",
    "Documents",
    "Verified",
]

USERS = [
    "asha.rao@example.com",
    "vikram.shah@example.com",
    "meera.iyer@example.com",
    "rahul.nair@example.com",
    "sales.ops@example.com",
]
USER_WEIGHTS = [30, 25, 25, 15, 5]
CHANNELS = ["Branch", "Online", "Phone", "Partner"]
CHANNEL_WEIGHTS = [40, 30, 15, 15]
DOCUMENTS = ["PAN Card", "Aadhaar", "Passport", "Bank Statement"]
VERIFIED_SPELLINGS = ["Yes", "No", "TRUE", "FALSE"]
VERIFIED_WEIGHTS = [40, 15, 30, 15]


def opportunity_id(i: int) -> str:
    """The id of sandbox opportunity i (1..100 exist; any other i does not)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"lsq-import-sandbox/opportunity/{i}"))


MISSING_OPPORTUNITY = opportunity_id(999)  # well-formed, not in the sandbox account

# Notes for ordinary rows; {doc} is one of the row's documents.
NOTE_TEMPLATES = [
    "PAN copy received at branch",
    "{doc} copy collected by field executive",
    "Customer emailed scanned {doc}",
    "Self-attested {doc} collected",
    "Original {doc} verified and returned to customer",
    "Partner DSA shared {doc} over WhatsApp",
    "{doc} uploaded by customer on the portal",
    "Bank statement for last 6 months received",
    "Documents picked up from customer's office",
    "Customer will courier remaining documents",
    "{doc} received, photo not clear - asked for fresh copy",
    "Co-applicant {doc} collected",
    "KYC documents collected during home visit",
    "Processing fee ₹2500 paid at branch",
    "{doc} collected, name mismatch to be checked by credit team",
    "Customer visited branch with {doc}",
]

# Notes that exercise the CSV and XLSX writers/readers; each goes on one valid row.
SPECIAL_NOTES = {
    "comma": "Collected PAN and Aadhaar copies, bank statement pending",
    "newline": "PAN card received at branch.\nAadhaar copy to follow next week",
    "formula": '=HYPERLINK("http://example.com","docs")',
}
SPECIAL_NOTE_ROWS = {"comma": 12, "newline": 57, "formula": 133}  # sheet row numbers

# The deliberate bad rows: sheet row number (header = row 1) -> kind. The two rows on the
# missing opportunity are sent together in one call, which the API rejects as a whole.
BAD_ROWS = {
    8: "missing_opportunity_id",
    27: "malformed_email",
    46: "bad_amount",
    68: "impossible_due_date",
    89: "missing_pan",
    110: "unknown_owner",
    128: "bad_verified",
    149: "bad_channel",
    167: "unknown_opportunity",
    188: "unknown_opportunity",
}

# kind -> (column, bad value, stage, the error the importer should report)
BAD_KINDS = {
    "missing_opportunity_id": (
        "Opportunity ID",
        "",
        "validation",
        "is empty, but a value is required",
    ),
    "malformed_email": (
        "Owner Email",
        "vikram.shah@example",
        "validation",
        "not a valid email address: 'vikram.shah@example'",
    ),
    "bad_amount": ("Amount", "12,5x", "validation", "not a number: '12,5x'"),
    "impossible_due_date": (
        "Due Date",
        "31/02/2024",
        "validation",
        "not a date in the form DD/MM/YYYY: '31/02/2024'",
    ),
    "missing_pan": (
        "PAN",
        "",
        "validation",
        "is empty, but a value is required (mx_Custom_1 is mandatory)",
    ),
    "bad_verified": ("Verified", "maybe", "validation", "not a yes/no value: 'maybe'"),
    "unknown_owner": (
        "Owner Email",
        "former.employee@example.com",
        "api",
        "LeadSquared rejects the row: owner is not a user of the account",
    ),
    "bad_channel": (
        "Channel",
        "Walk-in",
        "validation",
        "'Walk-in' is not an option of mx_Custom_4 (Channel): Branch, Online, Phone, Partner "
        "(found by the check against the account's metadata before sending)",
    ),
    "unknown_opportunity": (
        "Opportunity ID",
        MISSING_OPPORTUNITY,
        "api",
        "LeadSquared rejects the call: opportunity does not exist (both rows of it fail)",
    ),
}


@dataclass
class Row:
    sheet_row: int
    opportunity: str  # the id the row belongs to ('' for the missing-id row)
    owner: str
    when: dt.datetime  # naive, Asia/Kolkata wall time
    note: str
    pan: str
    amount: int | float | str | None  # str only for the bad value
    due: dt.date | str | None  # str only for the impossible date
    channel: str
    reference: str
    documents: str
    verified: str | bool  # the spelling shown in the CSV
    kind: str = "ok"

    @property
    def stage(self) -> str:
        return "ok" if self.kind == "ok" else BAD_KINDS[self.kind][2]


def make_pan(rng: random.Random) -> str:
    """A PAN-shaped id: AAAPA9999A, 4th letter the holder type (mostly P = person)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    head = "".join(rng.choice(letters) for _ in range(3))
    holder = rng.choice("PPPPPPPPCHF")
    surname = rng.choice(letters)
    digits = f"{rng.randint(1, 9999):04d}"
    return f"{head}{holder}{surname}{digits}{rng.choice(letters)}"


def make_amount(rng: random.Random) -> int | float | None:
    roll = rng.random()
    if roll < 0.12:
        return None
    if roll < 0.45:
        return rng.choice([999, 1499, 2500, 3500, 5000, 7500, 10000, 15000, 25000])
    if roll < 0.75:
        return rng.randint(10, 900) * 50
    return round(rng.randint(50000, 5000000) / 100 / 0.25) * 0.25  # paise: .25/.50/.75


def amount_text(amount: int | float | str | None) -> str:
    if amount is None:
        return ""
    if isinstance(amount, str):
        return amount
    if isinstance(amount, float):
        return f"{amount:.2f}" if not amount.is_integer() else str(int(amount))
    return str(amount)


def make_datetimes(rng: random.Random, n: int) -> list[dt.datetime]:
    """n sorted office-hour times (IST) between 2 Jan and 28 Mar 2024, Sundays off."""
    start = dt.date(2024, 1, 2)
    days = [start + dt.timedelta(d) for d in range(87)]
    days = [d for d in days if d.weekday() != 6]
    out = []
    for _ in range(n):
        day = rng.choice(days)
        minute = rng.randint(9 * 60 + 30, 19 * 60)
        out.append(dt.datetime.combine(day, dt.time(minute // 60, minute % 60)))
    return sorted(out)


def plan_opportunities(rng: random.Random) -> tuple[list[int], list[int], dict[str, int]]:
    """Pick the opportunities and their row counts.

    Returns the chosen opportunity numbers (the first is the big one), the shuffled opportunity
    numbers of the ordinary rows (one entry per row), and the opportunity of each bad row kind
    that belongs to a real opportunity.
    """
    chosen = rng.sample(range(1, 101), OPPORTUNITY_COUNT)
    big, others = chosen[0], chosen[1:]
    no_real_opp = ("missing_opportunity_id", "unknown_opportunity")
    bad_with_opp = [k for k in BAD_ROWS.values() if k not in no_real_opp]
    n_other_rows = TOTAL_ROWS - BIG_OPPORTUNITY_ROWS - sum(k in no_real_opp for k in BAD_ROWS.values())
    counts = dict.fromkeys(others, 1)
    while sum(counts.values()) < n_other_rows:
        i = rng.choice(others)
        if counts[i] < 7:
            counts[i] += 1
    counts[big] = BIG_OPPORTUNITY_ROWS

    # Bad rows that belong to a real opportunity go on ones with 3+ rows, one each, never the
    # big one: every opportunity keeps valid rows and the big one keeps needing two calls.
    hosts = [i for i in others if counts[i] >= 3]
    rng.shuffle(hosts)
    bad_host = dict(zip(bad_with_opp, hosts, strict=False))

    pool: list[int] = []
    for i, c in counts.items():
        pool += [i] * c
    for kind in bad_with_opp:  # these slots are taken by the bad rows themselves
        pool.remove(bad_host[kind])
    rng.shuffle(pool)  # rows of one opportunity end up interleaved with the others
    return chosen, pool, bad_host


def apply_bad_value(row: Row) -> None:
    """Put the row's one deliberate error in (the opportunity id is already set)."""
    column, value, _, _ = BAD_KINDS[row.kind]
    attr = {
        "Owner Email": "owner",
        "Amount": "amount",
        "Due Date": "due",
        "PAN": "pan",
        "Verified": "verified",
        "Channel": "channel",
    }.get(column)
    if attr:
        setattr(row, attr, value)


def build_rows() -> list[Row]:
    rng = random.Random(SEED)
    chosen, pool, bad_host = plan_opportunities(rng)
    pans = {i: make_pan(rng) for i in chosen}
    pans[0] = make_pan(rng)  # the missing-id row's customer
    pans[999] = make_pan(rng)
    times = make_datetimes(rng, TOTAL_ROWS)
    special_at = {r: k for k, r in SPECIAL_NOTE_ROWS.items()}

    rows: list[Row] = []
    for idx in range(TOTAL_ROWS):
        sheet_row = idx + 2
        kind = BAD_ROWS.get(sheet_row, "ok")
        special_opp = {"missing_opportunity_id": 0, "unknown_opportunity": 999}
        if kind == "ok":
            opp_no = pool.pop()
        elif kind in special_opp:
            opp_no = special_opp[kind]
        else:
            opp_no = bad_host[kind]
        when = times[idx]
        docs = rng.sample(DOCUMENTS, rng.choice([1, 1, 1, 2, 2, 3]))
        note = rng.choice(NOTE_TEMPLATES).format(doc=docs[0])
        for word, doc in (("PAN copy", "PAN Card"), ("Bank statement", "Bank Statement")):
            if note.startswith(word) and doc not in docs:
                docs.insert(0, doc)  # keep Documents consistent with the note
        if sheet_row in special_at:
            note = SPECIAL_NOTES[special_at[sheet_row]]
        due = None if rng.random() < 0.15 else when.date() + dt.timedelta(days=rng.randint(3, 30))
        reference = "" if rng.random() < 0.1 else f"{rng.randint(1, 60000):06d}"
        row = Row(
            sheet_row=sheet_row,
            opportunity=opportunity_id(opp_no) if opp_no else "",
            owner=rng.choices(USERS, USER_WEIGHTS)[0],
            when=when,
            note=note,
            pan=pans[opp_no],
            amount=make_amount(rng),
            due=due,
            channel=rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0],
            reference=reference,
            documents=";".join(docs),
            verified=rng.choices(VERIFIED_SPELLINGS, VERIFIED_WEIGHTS)[0],
            kind=kind,
        )
        if kind != "ok":
            apply_bad_value(row)
        rows.append(row)
    rows[20].reference = "000417"  # the README's example of a reference with leading zeros
    return rows


def csv_cells(row: Row) -> list[str]:
    due = row.due.strftime("%d/%m/%Y") if isinstance(row.due, dt.date) else (row.due or "")
    return [
        row.opportunity,
        row.owner,
        row.when.strftime("%d/%m/%Y %H:%M"),
        row.note,
        row.pan,
        amount_text(row.amount),
        due,
        row.channel,
        row.reference,
        row.documents,
        str(row.verified),
    ]


def write_csv(rows: list[Row]) -> None:
    with CSV_PATH.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADERS)
        for row in rows:
            writer.writerow(csv_cells(row))


def write_xlsx(rows: list[Row]) -> None:
    wb = Workbook()
    ws = wb.active
    ws.title = "Activities"
    ws.append(HEADERS)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.freeze_panes = "A2"

    text_columns = {
        "Opportunity ID",
        "Owner Email",
        "Note",
        "PAN",
        "Channel",
        "Reference",
        "Documents",
    }
    for row in rows:
        r = row.sheet_row
        values = dict(zip(HEADERS, csv_cells(row), strict=True))
        for c, header in enumerate(HEADERS, start=1):
            cell = ws.cell(row=r, column=c)
            if header == "Activity Date":
                cell.value = row.when  # a real datetime cell (IST wall time)
                cell.number_format = "dd/mm/yyyy hh:mm"
            elif header == "Due Date" and isinstance(row.due, dt.date):
                cell.value = row.due  # a real date cell
                cell.number_format = "dd/mm/yyyy"
            elif header == "Amount" and isinstance(row.amount, int | float):
                cell.value = row.amount  # a number cell, General format
            elif header == "Verified" and row.verified in ("TRUE", "FALSE"):
                cell.value = row.verified == "TRUE"  # Excel turns typed TRUE into a boolean
            elif values[header] == "":
                cell.value = None
            else:
                cell.value = values[header]
                cell.data_type = "s"  # text, even "=HYPERLINK(...)": never a formula
                if header in text_columns:
                    cell.number_format = "@"
            if header == "Note" and "\n" in values[header]:
                cell.alignment = Alignment(wrap_text=True)
    widths = {
        "A": 38,
        "B": 30,
        "C": 17,
        "D": 58,
        "E": 12,
        "F": 11,
        "G": 11,
        "H": 9,
        "I": 10,
        "J": 36,
        "K": 9,
    }
    for col, width in widths.items():
        ws.column_dimensions[col].width = width
    wb.properties.creator = "sample_data/make_samples.py"  # as when the committed files were made
    wb.properties.created = FILE_TIME
    wb.properties.modified = FILE_TIME
    wb.save(XLSX_PATH)
    restamp_zip(XLSX_PATH)


def restamp_zip(path: Path) -> None:
    """Give every member of the zip the same fixed time, so the file is reproducible."""
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w") as dst:
        for info, content in members:
            data = content
            if info.filename == "docProps/core.xml":  # openpyxl stamps "modified" on save
                stamp = FILE_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + stamp, data)
            stamped = zipfile.ZipInfo(info.filename, date_time=FILE_TIME.timetuple()[:6])
            stamped.compress_type = zipfile.ZIP_DEFLATED
            stamped.external_attr = info.external_attr
            dst.writestr(stamped, data)


def expected_outcome(rows: list[Row]) -> dict[str, int]:
    sent = [r for r in rows if r.stage != "validation"]
    per_opp = Counter(r.opportunity for r in sent)
    calls = sum(math.ceil(n / BATCH_SIZE) for n in per_opp.values())
    api_failed = sum(r.stage == "api" for r in rows)
    return {
        "total rows": len(rows),
        "opportunities (existing)": len({r.opportunity for r in rows} - {"", MISSING_OPPORTUNITY}),
        "validation failures (not sent)": sum(r.stage == "validation" for r in rows),
        "valid rows sent": len(sent),
        "API failures": api_failed,
        "activities created": len(sent) - api_failed,
        "calls": calls,
        "largest opportunity rows": max(per_opp.values()),
    }


def bad_row_table(rows: list[Row]) -> str:
    lines = ["| Row | Column | Value | Stage | Expected error |", "|---:|---|---|---|---|"]
    for r in rows:
        if r.kind == "ok":
            continue
        column, value, stage, message = BAD_KINDS[r.kind]
        shown = f"`{value}`" if value else "(empty)"
        lines.append(f"| {r.sheet_row} | {column} | {shown} | {stage} | {message} |")
    return "\n".join(lines)


def main() -> None:
    rows = build_rows()
    write_csv(rows)
    write_xlsx(rows)
    print(f"wrote {CSV_PATH.name} and {XLSX_PATH.name}: {len(rows)} data rows")
    print("\nExpected outcome of `lsq-import demo`:")
    for name, value in expected_outcome(rows).items():
        print(f"  {name}: {value}")
    print("\nDeliberate bad rows (header = row 1):")
    print(bad_row_table(rows))
    print(
        "\nSpecial notes (valid rows): " + ", ".join(f"{k} at row {v}" for k, v in SPECIAL_NOTE_ROWS.items())
    )


if __name__ == "__main__":
    main()
