"""Dates that cannot go wrong silently (issue 14): human formats, the day/month order, DST gaps and overlaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer import datetimes
from importer.errors import MappingError
from importer.mapping import load_mapping
from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS
from importer.validate import validate_sheet
from tests.conftest import FAST_LIMIT, run_cli
from tests.helpers import error_rows, make_sheet, write_csv, write_yaml

BASE = """
activity_event: {value: 201}
opportunity_id: {column: Opp}
owner_email: {column: Owner}
"""


def validated(tmp_path: Path, extra: str, column: str, values: list[str]):
    mapping = load_mapping(write_yaml(tmp_path, BASE + extra))
    rows = [["OPP-1", "a@example.com", value] for value in values]
    return validate_sheet(make_sheet(["Opp", "Owner", column], rows), mapping, "m.yaml")


# Formats as people write them


@pytest.mark.parametrize(
    ("form", "fmt"),
    [
        ("DD/MM/YYYY", "%d/%m/%Y"),
        ("MM/DD/YYYY", "%m/%d/%Y"),
        ("DD-MMM-YYYY", "%d-%b-%Y"),
        ("YYYY-MM-DD HH:mm", "%Y-%m-%d %H:%M"),
        ("DD/MM/YYYY HH:MM", "%d/%m/%Y %H:%M"),  # MM after the hour is minutes, as in a spreadsheet
        ("dd/mm/yyyy hh:mm:ss", "%d/%m/%Y %H:%M:%S"),
        ("D/M/YY h:mm AM/PM", "%d/%m/%y %I:%M %p"),
        ("DD MMMM YYYY", "%d %B %Y"),
        ("YYYY-MM-DDTHH:mm:ss", "%Y-%m-%dT%H:%M:%S"),
        ("%d/%m/%Y", "%d/%m/%Y"),  # strptime is still taken as it is
    ],
)
def test_strptime_format_reads_human_forms(form, fmt):
    assert datetimes.strptime_format(form) == fmt


@pytest.mark.parametrize(
    ("fmt", "shown"),
    [("%d/%m/%Y", "DD/MM/YYYY"), ("%d/%m/%Y %H:%M", "DD/MM/YYYY HH:mm"), ("%d-%b-%Y", "DD-MMM-YYYY")],
)
def test_human_format_shows_strptime_as_people_write_it(fmt, shown):
    assert datetimes.human_format(fmt) == shown


@pytest.mark.parametrize(
    ("form", "swapped"),
    [
        ("DD/MM/YYYY", "MM/DD/YYYY"),
        ("%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M"),
        ("D.M.YYYY HH:mm", "M.D.YYYY HH:mm"),
    ],
)
def test_swapped_format_keeps_the_style_it_was_written_in(form, swapped):
    assert datetimes.swapped_format(form) == swapped


def test_mapping_rejects_a_format_that_is_not_a_date_form(tmp_path):
    with pytest.raises(MappingError, match=r"'activity_datetime.format': format 'DD/QQ/YYYY': 'Q' is not"):
        load_mapping(write_yaml(tmp_path, BASE + 'activity_datetime: {column: When, format: "DD/QQ/YYYY"}\n'))


def test_human_form_reads_the_sheet(tmp_path):
    result = validated(
        tmp_path,
        'fields:\n  mx_Custom_3: {column: Due, type: date, format: "DD-MMM-YYYY"}\n',
        "Due",
        ["05-Jan-2024", "2024-02-01"],
    )
    assert [row.body["Fields"][0]["Value"] for row in result.rows] == [
        "2024-01-05 00:00:00",
        "2024-02-01 00:00:00",
    ]


@pytest.mark.parametrize("form", ["%d/%m/%Y", "DD/MM/YYYY"])
def test_a_date_that_does_not_fit_shows_the_form_a_person_writes(tmp_path, form):
    result = validated(
        tmp_path,
        f'fields:\n  mx_Custom_3: {{column: Due, type: date, format: "{form}"}}\n',
        "Due",
        ["31/02/2024"],
    )
    (error,) = result.errors
    assert error.message == "not a date in the form DD/MM/YYYY: '31/02/2024'"
    assert "%" not in error.message


def test_a_date_that_fits_the_other_order_says_so(tmp_path):
    result = validated(
        tmp_path,
        'fields:\n  mx_Custom_3: {column: Due, type: date, format: "DD/MM/YYYY"}\n',
        "Due",
        ["03/26/2024", "26/03/2024"],
    )
    (error,) = result.errors
    assert error.message == (
        "not a date in the form DD/MM/YYYY: '03/26/2024' (as MM/DD/YYYY it would be 26 March 2024)"
    )


# The day/month order


MONTH_FIRST = [f"{month:02d}/{day:02d}/2024" for month in range(1, 13) for day in (5, 14, 20, 27)]


@pytest.mark.parametrize("key", ["activity_datetime", "fields.mx_Custom_3"])
def test_a_column_written_in_the_other_order_is_a_mapping_error_naming_both_readings(tmp_path, key):
    extra = (
        'activity_datetime: {column: When, format: "%d/%m/%Y"}\n'
        if key == "activity_datetime"
        else 'fields:\n  mx_Custom_3: {column: When, type: date, format: "%d/%m/%Y"}\n'
    )
    with pytest.raises(MappingError) as caught:
        validated(tmp_path, extra, "When", MONTH_FIRST)
    message = str(caught.value)
    assert message.startswith(
        f"m.yaml: '{key}' (column 'When'): the dates are written MM/DD/YYYY, not DD/MM/YYYY"
    )
    assert (
        "36 rows read only as MM/DD/YYYY ('01/14/2024' is 14 January 2024), none only as DD/MM/YYYY"
        in message
    )
    assert (
        "11 read both ways ('01/05/2024' is 1 May 2024 as DD/MM/YYYY, 5 January 2024 as MM/DD/YYYY)"
        in message
    )
    assert 'set format: "MM/DD/YYYY"' in message
    assert "%" not in message


def test_a_few_dates_in_the_other_order_fail_their_rows_but_not_the_column(tmp_path):
    values = [f"{day:02d}/{month:02d}/2024" for month in range(1, 13) for day in (14, 20, 27)] + [
        "03/26/2024"
    ]
    result = validated(tmp_path, 'activity_datetime: {column: When, format: "DD/MM/YYYY"}\n', "When", values)
    assert len(result.rows) == 36
    assert [error.source_row for error in result.errors] == [38]
    assert result.warnings == []


def test_a_column_where_every_value_reads_both_ways_gets_a_warning_naming_it(tmp_path):
    values = ["01/02/2024", "03/04/2024", "05/05/2024", "", "2024-06-07"]
    result = validated(tmp_path, 'activity_datetime: {column: When, format: "DD/MM/YYYY"}\n', "When", values)
    assert len(result.rows) == 5  # read as the mapping says
    (warning,) = result.warnings
    assert warning == (
        "m.yaml: 'activity_datetime' (column 'When'): every date reads both as DD/MM/YYYY and as MM/DD/YYYY "
        "('01/02/2024' is 1 February 2024 as DD/MM/YYYY, 2 January 2024 as MM/DD/YYYY); they are read as "
        "DD/MM/YYYY, as the mapping says: check that this is the sheet's order"
    )


def test_a_year_first_format_is_never_doubted(tmp_path):
    result = validated(
        tmp_path, 'activity_datetime: {column: When, format: "YYYY/MM/DD"}\n', "When", ["2024/01/02"]
    )
    assert (result.errors, result.warnings) == ([], [])


# DST gaps and overlaps


@pytest.mark.parametrize("copies", [1, 120])  # 240 distinct cells take the whole-column path
def test_times_a_dst_change_skips_or_repeats_are_row_errors_saying_so(tmp_path, copies):
    extra = 'activity_datetime: {column: When, format: "YYYY-MM-DD HH:mm", timezone: America/New_York}\n'
    fillers = [f"2024-05-{1 + n % 28:02d} {n % 24:02d}:{n % 60:02d}" for n in range(2 * copies - 2)]
    values = ["2024-03-10 02:30", "2024-11-03 01:30", "2024-03-10 03:30", *fillers]
    result = validated(tmp_path, extra, "When", values)
    errors = {error.source_row: error.message for error in result.errors}
    assert errors == {
        2: "'2024-03-10 02:30' never happened in America/New_York: the clocks moved forward over it for "
        "daylight saving time that day; correct the time",
        3: "'2024-11-03 01:30' happened twice in America/New_York: the clocks went back over it at the end of "
        "daylight saving time that day; write which one with its UTC offset, '2024-11-03 01:30:00-04:00' "
        "or '2024-11-03 01:30:00-05:00'",
    }
    assert result.rows[0].body["ActivityDateTime"] == "2024-03-10 07:30:00"


def test_a_repeated_time_with_its_offset_is_sent(tmp_path):
    extra = 'activity_datetime: {column: When, format: "YYYY-MM-DD HH:mm", timezone: America/New_York}\n'
    result = validated(tmp_path, extra, "When", ["2024-11-03 01:30:00-05:00"])
    assert result.rows[0].body["ActivityDateTime"] == "2024-11-03 06:30:00"


# Where a person meets it: the real CLI against the sandbox


E2E_MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: "Opportunity ID"}
owner_email: {column: "Owner Email"}
activity_datetime: {column: "Visit Date", format: "DD/MM/YYYY HH:mm", timezone: Asia/Kolkata}
fields:
  mx_Custom_1: {column: PAN, required: true}
"""


def e2e_rows(dates: list[str]) -> list[dict[str, str]]:
    return [
        {
            "Opportunity ID": DEFAULT_OPPORTUNITIES[n % 5],
            "Owner Email": DEFAULT_USERS[0],
            "Visit Date": date,
            "PAN": f"P{n}",
        }
        for n, date in enumerate(dates)
    ]


def cli(command: str, path: Path, mapping: Path, env: dict[str, str]):
    return run_cli(
        command,
        path,
        "--mapping",
        mapping,
        "--rate-limit",
        FAST_LIMIT,
        "--no-progress",
        *(["--settle-time", "0"] if command == "run" else []),
        env=env,
    )


def test_run_of_a_month_first_sheet_sends_nothing_and_says_why(tmp_path, sandbox, env):
    dates = [f"{month:02d}/{day:02d}/2024 10:30" for month in range(1, 13) for day in (3, 14, 25)]
    sheet = write_csv(tmp_path / "visits.csv", e2e_rows(dates))
    result = cli("run", sheet, write_yaml(tmp_path, E2E_MAPPING), env)
    assert result.code == 2, result.output
    assert sandbox.activities() == []
    assert (
        "'activity_datetime' (column 'Visit Date'): the dates are written MM/DD/YYYY HH:mm, not "
        in result.err
    )
    assert "DD/MM/YYYY HH:mm as the mapping says" in result.err
    assert "%" not in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "visits.errors.xlsx").exists()


def test_validate_warns_of_a_column_that_reads_both_ways(tmp_path, env):
    sheet = write_csv(tmp_path / "visits.csv", e2e_rows(["01/02/2024 10:00", "03/04/2024 11:00"]))
    result = cli("validate", sheet, write_yaml(tmp_path, E2E_MAPPING), env)
    assert result.code == 0, result.output
    assert "every date reads both as DD/MM/YYYY HH:mm and as MM/DD/YYYY HH:mm" in result.err
    assert "(column 'Visit Date')" in result.err


def test_run_fails_a_time_a_dst_change_skips_and_posts_the_rest(tmp_path, sandbox, env):
    mapping = write_yaml(tmp_path, E2E_MAPPING.replace("Asia/Kolkata", "Europe/London"))
    sheet = write_csv(tmp_path / "visits.csv", e2e_rows(["31/03/2024 01:30", "31/03/2024 02:30"]))
    result = cli("run", sheet, mapping, env)
    assert result.code == 1, result.output
    assert [a.fields["mx_Custom_1"] for a in sandbox.activities()] == ["P1"]
    (row,) = error_rows(tmp_path / "visits.errors.xlsx")
    assert row["Source Row"] == 2
    assert row["Error"] == (
        "Visit Date: '31/03/2024 01:30' never happened in Europe/London: the clocks moved forward over it "
        "for daylight saving time that day; correct the time"
    )


def test_a_large_column_is_judged_on_an_even_sample_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(datetimes, "ORDER_SAMPLE", 16)
    with pytest.raises(
        MappingError, match=r"as the mapping says \(of 16 rows read, spread over the column\): "
    ):
        validated(tmp_path, 'activity_datetime: {column: When, format: "DD/MM/YYYY"}\n', "When", MONTH_FIRST)
