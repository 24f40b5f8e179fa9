from __future__ import annotations

import numpy as np
import pytest

from importer.errors import MappingError
from importer.mapping import load_mapping
from importer.records import Stage
from importer.validate import validate_sheet
from tests.helpers import make_sheet, write_yaml

HEADERS = ["Opp", "Owner", "When", "Note", "Amount", "Due", "Flag", "Ref"]
MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: Opp}
owner_email: {column: Owner}
note: {column: Note}
activity_datetime: {column: When, format: "%d/%m/%Y %H:%M", timezone: Asia/Kolkata}
fields:
  mx_Custom_1: {column: Ref, required: true}
  mx_Custom_2: {column: Amount, type: number}
  mx_Custom_3: {column: Due, type: date, format: "%d/%m/%Y"}
  mx_Custom_7: {column: Flag, type: boolean}
  mx_Custom_5: {value: Imported}
"""


def row(**cells: str) -> list[str]:
    base = {
        "Opp": "OPP-1",
        "Owner": "asha.rao@example.com",
        "When": "26/03/2024 19:45",
        "Note": "ok",
        "Amount": "12.50",
        "Due": "31/03/2024",
        "Flag": "Yes",
        "Ref": "00123",
    }
    base.update(cells)
    return [base[h] for h in HEADERS]


@pytest.fixture
def mapping(tmp_path):
    return load_mapping(write_yaml(tmp_path, MAPPING))


def test_validate_turns_a_good_row_into_the_wire_body(mapping):
    result = validate_sheet(make_sheet(HEADERS, [row()]), mapping)
    assert result.errors == []
    (planned,) = result.rows
    assert planned.source_row == 2
    assert planned.opportunity_id == "OPP-1"
    assert planned.body == {
        "ActivityEvent": 201,
        "ActivityOwnerEmail": "asha.rao@example.com",
        "ActivityNote": "ok",
        "ActivityDateTime": "2024-03-26 14:15:00",  # 19:45 in Kolkata is 14:15 UTC
        "Fields": [
            {"SchemaName": "mx_Custom_1", "Value": "00123"},
            {"SchemaName": "mx_Custom_2", "Value": "12.5"},
            {"SchemaName": "mx_Custom_3", "Value": "2024-03-31 00:00:00"},
            {"SchemaName": "mx_Custom_7", "Value": "true"},
            {"SchemaName": "mx_Custom_5", "Value": "Imported"},
        ],
    }


@pytest.mark.parametrize(
    ("cells", "column", "message"),
    [
        ({"Opp": ""}, "Opp", "is empty, but a value is required"),
        ({"Opp": "1.23457E+17"}, "Opp", "looks corrupted by Excel"),
        ({"Owner": "vikram.shah@example"}, "Owner", "not a valid email address: 'vikram.shah@example'"),
        ({"Owner": "a@b.com."}, "Owner", "not a valid email address"),
        ({"Owner": ""}, "Owner", "is empty"),
        ({"Amount": "12,5x"}, "Amount", "not a number: '12,5x'"),
        ({"Amount": "NaN"}, "Amount", "not a number"),
        ({"Due": "31/02/2024"}, "Due", "not a date in the form DD/MM/YYYY: '31/02/2024'"),
        ({"When": "yesterday"}, "When", "not a date"),
        ({"Flag": "maybe"}, "Flag", "not a yes/no value: 'maybe'"),
        ({"Ref": "  "}, "Ref", "is empty, but a value is required"),
    ],
)
def test_validate_reports_each_bad_cell_with_column_and_value(mapping, cells, column, message):
    result = validate_sheet(make_sheet(HEADERS, [row(), row(**cells)]), mapping)
    assert [r.source_row for r in result.rows] == [2]
    (error,) = result.errors
    assert (error.source_row, error.stage, error.column) == (3, Stage.VALIDATION, column)
    assert message in error.message


def test_validate_collects_every_error_of_a_row(mapping):
    result = validate_sheet(make_sheet(HEADERS, [row(Amount="x", Flag="maybe", Owner="nope")]), mapping)
    assert sorted(e.column for e in result.errors) == ["Amount", "Flag", "Owner"]
    assert result.rows == []


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("1,234.50", "1234.5"),
        ("12.50", "12.5"),  # one value however it was written: Excel re-exports 12.50 as 12.5
        ("100.00", "100"),
        ("-0.0", "0"),
        ("+5", "5"),
        (".5", "0.5"),
        ("-3", "-3"),
        ("1.5E3", "1500"),
        (" 7 ", "7"),
        ("00012", "12"),
    ],
)
def test_validate_number_becomes_plain_decimal(mapping, raw, sent):
    (planned,) = validate_sheet(make_sheet(HEADERS, [row(Amount=raw)]), mapping).rows
    assert {"SchemaName": "mx_Custom_2", "Value": sent} in planned.body["Fields"]


@pytest.mark.parametrize(
    ("when", "sent"),
    [
        ("26/03/2024 05:00", "2024-03-25 23:30:00"),  # format, Kolkata -> UTC across midnight
        ("2024-03-26 05:00:00", "2024-03-25 23:30:00"),  # ISO (an Excel date cell) also accepted
        ("2024-03-26T05:00:00+00:00", "2024-03-26 05:00:00"),  # an explicit offset wins
    ],
)
def test_validate_datetime_is_sent_as_utc(mapping, when, sent):
    (planned,) = validate_sheet(make_sheet(HEADERS, [row(When=when)]), mapping).rows
    assert planned.body["ActivityDateTime"] == sent


def test_validate_empty_optional_cells_are_not_sent(mapping):
    (planned,) = validate_sheet(
        make_sheet(HEADERS, [row(Note="", When="", Amount="", Due="", Flag="")]), mapping
    ).rows
    assert "ActivityNote" not in planned.body
    assert "ActivityDateTime" not in planned.body
    assert [f["SchemaName"] for f in planned.body["Fields"]] == ["mx_Custom_1", "mx_Custom_5"]


def test_validate_trims_spaces_and_nbsp_and_lowercases_email(mapping):
    (planned,) = validate_sheet(
        make_sheet(HEADERS, [row(Opp="\u00a0OPP-9 ", Owner=" Asha.Rao@Example.COM\u00a0")]), mapping
    ).rows
    assert planned.opportunity_id == "OPP-9"
    assert planned.body["ActivityOwnerEmail"] == "asha.rao@example.com"


def test_validate_template_note_and_dropdown_flag(tmp_path):
    text = (
        MAPPING.replace("note: {column: Note}", "note: {template: '{Note} ({Ref})'}")
        + "skip_dropdown_validation: true\n"
    )
    mapping = load_mapping(write_yaml(tmp_path, text))
    rows = validate_sheet(make_sheet(HEADERS, [row(), row(Note="")]), mapping).rows
    assert rows[0].body["ActivityNote"] == "ok (00123)"
    assert rows[1].body["ActivityNote"] == "(00123)"
    assert rows[0].body["ValidateDropDownOptions"] is True


def test_validate_event_from_a_column(tmp_path):
    text = MAPPING.replace("activity_event: {value: 201}", "activity_event: {column: Ref}")
    mapping = load_mapping(write_yaml(tmp_path, text))
    result = validate_sheet(make_sheet(HEADERS, [row(Ref="202"), row(Ref="20x")]), mapping)
    assert result.rows[0].body["ActivityEvent"] == 202
    assert "activity event code must be a whole number: '20x'" in result.errors[0].message


def test_validate_bad_constant_is_a_mapping_error(tmp_path):
    text = MAPPING.replace("mx_Custom_5: {value: Imported}", "mx_Custom_5: {value: abc, type: number}")
    path = write_yaml(tmp_path, text)
    with pytest.raises(MappingError, match=r"'fields.mx_Custom_5.value': not a number"):
        validate_sheet(make_sheet(HEADERS, [row()]), load_mapping(path), path)


def test_validate_default_fills_empty_cells(tmp_path):
    text = MAPPING.replace(
        "mx_Custom_2: {column: Amount, type: number}",
        "mx_Custom_2: {column: Amount, type: number, default: 0}",
    )
    (planned,) = validate_sheet(
        make_sheet(HEADERS, [row(Amount="")]), load_mapping(write_yaml(tmp_path, text))
    ).rows
    assert {"SchemaName": "mx_Custom_2", "Value": "0"} in planned.body["Fields"]


def test_calls_counted_from_columns_equal_the_planned_batches(tmp_path):
    """`validate` counts calls without building rows; the count is what plan_batches makes of them."""
    from importer.planner import plan_batches

    opportunities = ["opp-a", " opp-a", "opp-b", "opp-c\u200b", "opp-c", "opp-b", "1.2E+17"] * 23
    sheet = make_sheet(["Opportunity", "Owner"], [[o, "a@example.com"] for o in opportunities])
    text = (
        "activity_event: {value: 201}\nopportunity_id: {column: Opportunity}\nowner_email: {column: Owner}\n"
    )
    mapping = load_mapping(write_yaml(tmp_path, text))
    for batch_size in (1, 7, 25):
        validated = validate_sheet(sheet, mapping)
        counted = validated.call_count(batch_size)
        assert validated.row_count == len(opportunities) - 23  # the Excel-mangled ids fail
        assert counted == len(plan_batches(validated.rows, batch_size))
        assert validated.call_count(batch_size) == counted  # and once built, from the rows


def test_mostly_distinct_cells_numbered_by_position_validate_as_when_hashed(tmp_path, monkeypatch):
    """IDs and amounts are numbered by row, not hashed: every row's body and error stays the same."""
    from importer import validate

    rows = []
    for i in range(3 * validate._DISTINCT_SAMPLE):
        ref = f"REF{i:06d}" if i % 97 else [" ", "1.2E+17", "REF000001", " REF000002"][i % 4]
        amount = f"{i}.{i % 10}0" if i % 89 else ["x", "-0", "1,000", "12"][i % 4]
        rows.append(row(Opp=f"OPP-{i}" if i % 3 else f" OPP-{i % 50}", Ref=ref, Amount=amount))
    sheet = make_sheet(HEADERS, rows)
    mapping = load_mapping(write_yaml(tmp_path, MAPPING))

    refs = sheet.frame["Ref"]
    assert (
        validate._numbered(refs, by_position=True)[0] == np.arange(len(rows))
    ).all()  # the road under test
    by_position = validate_sheet(sheet, mapping)
    monkeypatch.setattr(validate, "_rows_per_value", lambda cells: 3.0)  # every column hashed
    hashed = validate_sheet(sheet, mapping)

    assert [(e.source_row, e.column, e.message) for e in by_position.errors] == [
        (e.source_row, e.column, e.message) for e in hashed.errors
    ]
    assert 0 < len(by_position.errors) < len(rows)
    assert by_position.call_count() == hashed.call_count()
    assert [(r.source_row, r.body) for r in by_position.rows] == [(r.source_row, r.body) for r in hashed.rows]


@pytest.mark.parametrize("rows_per_value", [1, 1.3, 2.7, 10])
def test_rows_per_value_is_estimated_from_a_sample(rows_per_value):
    """The sample's repeats tell how often a column's values repeat, shuffled or sorted."""
    from importer import validate

    n = 1_000_000
    values = (np.arange(n) / rows_per_value).astype(np.int64).astype(str).astype(object)
    for cells in (values, np.random.default_rng(1).permutation(values)):
        estimate = validate._rows_per_value(cells)
        assert rows_per_value * 0.75 <= estimate <= rows_per_value * 1.25 + 0.1
