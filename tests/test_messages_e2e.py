"""Messages and guesses: what a new user meets first gets one plain message with the fix (issue 14)."""

from __future__ import annotations

import socket

import openpyxl
import pytest
import yaml

from importer.mapping import CHOOSE, load_mapping
from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS
from tests.conftest import run_cli
from tests.helpers import write_csv, write_yaml

MAPPING = """\
activity_event: {value: 201}
opportunity_id: {column: Opportunity}
owner_email: {column: Owner}
fields:
  mx_Custom_1: {column: PAN, required: true}
"""
HEADERS = ["Opportunity", "Owner", "PAN"]
JARGON = ("Input should be", "instance of", "Traceback", "unexpected error", "pydantic")


def _rows(count: int) -> list[list[str]]:
    return [[DEFAULT_OPPORTUNITIES[n % 3], DEFAULT_USERS[0], f"PAN{n}"] for n in range(count)]


def _workbook(path, sheets: dict[str, list[list[object]]]):
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def _plain(result) -> None:
    for word in JARGON:
        assert word not in result.err, result.output


# --- init-mapping: guesses from headers, hints in them, and cell values


def test_init_mapping_reads_sales_rep_email_visit_date_hint_and_abbreviations(sandbox, env, tmp_path):
    sheet = write_csv(
        tmp_path / "payments.csv",
        [
            {
                "Opportunity ID": DEFAULT_OPPORTUNITIES[n],
                "Sales Rep Email": DEFAULT_USERS[n % 2],
                "Visit Date (DD/MM/YYYY)": f"{n + 13:02d}/03/2024",
                "Amt": str(100 + n),
                "Payment Ref No.": f"R{n}",
            }
            for n in range(6)
        ],
    )
    result = run_cli("init-mapping", sheet, "--activity-event", "203", "--online", env=env)
    assert result.code == 0, result.output
    data = yaml.safe_load(result.out)
    assert data["owner_email"] == {"column": "Sales Rep Email"}
    assert data["activity_datetime"] == {"column": "Visit Date (DD/MM/YYYY)", "format": "%d/%m/%Y"}
    assert data["fields"]["mx_Custom_2"] == {"column": "Payment Ref No."}  # Payment Reference
    assert data["fields"]["mx_Custom_1"]["column"] == "Amt"  # Amount
    mapping = write_yaml(tmp_path, result.out)
    checked = run_cli("validate", sheet, "-m", mapping, "--online", env=env)
    assert checked.code == 0, checked.output
    assert "6 rows, 6 valid, 0 invalid" in checked.out


def test_init_mapping_guesses_owner_and_date_from_cell_values(tmp_path):
    sheet = write_csv(
        tmp_path / "visits.csv",
        [
            {
                "Opportunity ID": DEFAULT_OPPORTUNITIES[n],
                "Contact": DEFAULT_USERS[n % 2],  # a few people's emails, again and again
                "On": f"2024-03-{n + 1:02d} 10:30",
            }
            for n in range(6)
        ],
    )
    result = run_cli("init-mapping", sheet, "--activity-event", "201")
    assert result.code == 0, result.output
    data = yaml.safe_load(result.out)
    assert data["owner_email"] == {"column": "Contact"}
    assert data["activity_datetime"]["column"] == "On"
    assert "'Contact' holds emails that repeat" in result.err


def test_init_mapping_with_choose_a_column_loads_and_validates_as_it_is(sandbox, env, tmp_path):
    sheet = write_csv(
        tmp_path / "c.csv", [{"Customer": "A", "Amount": "1"}, {"Customer": "B", "Amount": "2"}]
    )
    result = run_cli("init-mapping", sheet, "--activity-event", "201")
    assert result.code == 0, result.output
    assert CHOOSE in result.out
    mapping = write_yaml(tmp_path, result.out)
    load_mapping(mapping)
    checked = run_cli("validate", sheet, "-m", mapping)
    assert checked.code == 1, checked.output  # every row fails until a column is chosen
    assert "2 rows, 0 valid, 2 invalid" in checked.out
    assert f"opportunity_id, owner_email: still '{CHOOSE}' (from init-mapping)" in checked.err
    assert "one of 'Customer', 'Amount'" in checked.err
    refused = run_cli("run", sheet, "-m", mapping, "--settle-time", "0", env=env)
    assert refused.code == 2, refused.output
    assert "nothing was sent" in refused.err
    assert sandbox.stats.requests == 0


# --- the sheet: a title above the header, the data on another sheet, hidden rows


def test_title_row_above_the_header_in_a_workbook_names_the_header_row(tmp_path):
    book = _workbook(
        tmp_path / "visits.xlsx", {"Visits": [["Visits, December 2026"], [], HEADERS, *_rows(2)]}
    )
    result = run_cli("validate", book, "-m", write_yaml(tmp_path, MAPPING))
    assert result.code == 2, result.output
    assert (
        "row 1 ('Visits, December 2026') looks like a title above the header, which seems to be row 3 "
        "('Opportunity', 'Owner', 'PAN'): delete the rows above the header, save, and try again"
    ) in result.err
    _plain(result)


def test_title_row_above_the_header_in_a_csv_names_the_header_row(tmp_path):
    path = tmp_path / "visits.csv"
    path.write_text(
        "Visits report\n" + ",".join(HEADERS) + "\n" + "\n".join(",".join(r) for r in _rows(2)) + "\n"
    )
    result = run_cli("validate", path, "-m", write_yaml(tmp_path, MAPPING))
    assert result.code == 2, result.output
    assert (
        "row 1 ('Visits report') looks like a title above the header, which seems to be row 2" in result.err
    )


def test_data_on_another_sheet_says_which_sheet_to_name(tmp_path):
    book = _workbook(
        tmp_path / "visits.xlsx",
        {"Instructions": [["How to fill this in"], ["One row per visit"]], "Visits": [HEADERS, *_rows(2)]},
    )
    result = run_cli("validate", book, "-m", write_yaml(tmp_path, MAPPING))
    assert result.code == 2, result.output
    assert "the sheet 'Visits' has these columns: add --sheet Visits" in result.err
    assert run_cli("validate", book, "-m", tmp_path / "mapping.yaml", "--sheet", "Visits").code == 0


def test_data_after_an_empty_first_sheet_says_which_sheet_to_name(tmp_path):
    book = _workbook(tmp_path / "visits.xlsx", {"Sheet1": [], "Nov visits": [HEADERS, *_rows(2)]})
    result = run_cli("validate", book, "-m", write_yaml(tmp_path, MAPPING))
    assert result.code == 2, result.output
    assert (
        "the sheet 'Sheet1' is empty; the data may be on the sheet 'Nov visits': add --sheet 'Nov visits'"
        in result.err
    )


def test_rows_hidden_or_filtered_in_excel_are_imported_with_a_note(sandbox, env, tmp_path):
    path = tmp_path / "visits.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADERS)
    for row in _rows(6):
        sheet.append(row)
    sheet.auto_filter.ref = "A1:C7"
    for number in (3, 5, 6):  # hidden by hand or by the filter: Excel writes hidden="1" on the row
        sheet.row_dimensions[number].hidden = True
    book.save(path)
    result = run_cli("run", path, "-m", write_yaml(tmp_path, MAPPING), "--settle-time", "0", env=env)
    assert result.code == 0, result.output
    assert len(sandbox.activities()) == 6
    assert "3 rows are hidden or filtered out in Excel (row 3, 5, 6) and imported all the same" in result.err


# --- the mapping: shorthand, wrong case, swapped keys


def test_shorthand_event_code_is_read_as_the_value(sandbox, env, tmp_path):
    write_csv(tmp_path / "v.csv", [dict(zip(HEADERS, row, strict=True)) for row in _rows(2)])
    mapping = write_yaml(tmp_path, MAPPING.replace("{value: 201}", "201"))
    result = run_cli("run", tmp_path / "v.csv", "-m", mapping, "--settle-time", "0", env=env)
    assert result.code == 0, result.output
    assert [a.event for a in sandbox.activities()] == [201, 201]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "{value: 201}",
            '"Site Visit"',
            "'activity_event: Site Visit' can be read two ways: write activity_event: {name: \"Site Visit\"} "
            'for the activity type of that name, or activity_event: {column: "Site Visit"} for a column of event codes',
        ),
        (
            "{column: Owner}",
            "Owner",
            "'owner_email: Owner' can be read two ways: write owner_email: {column: \"Owner\"} if it is a "
            'header of the sheet, or owner_email: {value: "Owner"} for the same value on every row',
        ),
        (
            "{column: PAN, required: true}",
            "PAN",
            "'fields.mx_Custom_1: PAN' can be read two ways: write mx_Custom_1: {column: \"PAN\"} if it is a header",
        ),
        (
            "{value: 201}",
            "[201]",
            "'activity_event': expected keys in braces, like {column: \"Header\"} or {value: 201}, not a list",
        ),
        (
            "mx_Custom_1:",
            "mx_custom_1:",
            "'fields.mx_custom_1': custom activity fields are named mx_Custom_1 to mx_Custom_50; "
            "did you mean 'mx_Custom_1'? (letter case matters)",
        ),
        (
            "mx_Custom_1: {column: PAN, required: true}",
            "PAN: {column: mx_Custom_1}",
            "'fields.PAN: {column: mx_Custom_1}' has its two names swapped: the key is the field's schema "
            'name, the column the header; write mx_Custom_1: {column: "PAN"}',
        ),
        (
            "owner_email: {column: Owner}",
            "Owner: {column: owner_email}",
            "'Owner: {column: owner_email}' has its two names swapped: the key is the part of the activity, "
            'the column the header; write owner_email: {column: "Owner"}',
        ),
    ],
    ids=[
        "ambiguous-event",
        "ambiguous-column",
        "ambiguous-field",
        "list",
        "wrong-case",
        "swapped-field",
        "swapped-top",
    ],
)
def test_mapping_mistakes_get_one_plain_message_with_the_fix(tmp_path, old, new, message):
    write_csv(tmp_path / "v.csv", [dict(zip(HEADERS, row, strict=True)) for row in _rows(1)])
    mapping = write_yaml(tmp_path, MAPPING.replace(old, new))
    result = run_cli("validate", tmp_path / "v.csv", "-m", mapping)
    assert result.code == 2, result.output
    assert message in result.err, result.output
    assert len(result.err.splitlines()) == 1, result.output
    _plain(result)


def test_online_field_missing_from_the_activity_suggests_one_by_display_name(sandbox, env, tmp_path):
    write_csv(
        tmp_path / "v.csv", [{**dict(zip(HEADERS, row, strict=True)), "PAN Number": "X"} for row in _rows(1)]
    )
    mapping = write_yaml(
        tmp_path, MAPPING.replace("mx_Custom_1: {column: PAN", "mx_Custom_9: {column: PAN Number")
    )
    result = run_cli("validate", tmp_path / "v.csv", "-m", mapping, "--online", env=env)
    assert result.code == 2, result.output
    assert (
        "'fields.mx_Custom_9': Document Collected (201) has no field mx_Custom_9 (did you mean mx_Custom_1, "
        "PAN Number, which matches the column 'PAN Number'?)"
    ) in result.err, result.output


# --- the sandbox and --help


def test_sandbox_on_a_port_in_use_says_so_with_the_fix():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("sandbox", "--port", str(port))
    assert result.code == 2, result.output
    assert result.err == (
        f"lsq-import: error: port {port} is already in use (a sandbox started earlier still running?): "
        f"stop that one, or pick another port: --port {port + 1}, or --port 0 for any free one\n"
    )


def test_help_names_the_key_variables_and_an_example_per_command(capsys):
    assert run_cli("--help").code == 0
    top = capsys.readouterr().out
    for variable in ("LSQ_ACCESS_KEY", "LSQ_SECRET_KEY", "LSQ_HOST"):
        assert variable in top
    for command in ("run", "validate", "check", "init-mapping", "sandbox", "demo", "serve"):
        assert run_cli(command, "--help").code == 0
        text = capsys.readouterr().out
        assert f"example:\n  lsq-import {command}" in text, text
        if command in ("run", "validate", "check"):
            assert "LSQ_ACCESS_KEY, LSQ_SECRET_KEY" in text
            assert "LSQ_HOST" in text
