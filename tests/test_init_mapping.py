"""The starter mapping: header guesses, field matching, date formats, and text that always loads."""

from __future__ import annotations

import pytest

from importer.account import ActivityMeta, FieldMeta
from importer.init_mapping import CHOOSE, guess_column, guess_format, match_fields, starter_mapping
from importer.loader import load_sheet
from importer.mapping import check_columns, load_mapping
from importer.validate import validate_sheet
from tests.conftest import REPO
from tests.helpers import make_sheet, write_yaml

VISIT = ActivityMeta(
    202,
    "Site Visit",
    {
        "mx_Custom_1": FieldMeta(
            "mx_Custom_1", "Visit Outcome", "Dropdown", options=("Interested", "Follow Up")
        ),
        "mx_Custom_2": FieldMeta("mx_Custom_2", "Duration (min)", "Number", mandatory=True),
        "mx_Custom_3": FieldMeta("mx_Custom_3", "Visit Time", "DateTime"),
        "mx_Custom_4": FieldMeta("mx_Custom_4", "Site Code", "String", mandatory=True),
    },
)


@pytest.mark.parametrize(
    ("headers", "target", "expected"),
    [
        (["Name", "Opportunity ID", "Opportunity Name"], "opportunity_id", "Opportunity ID"),
        (["opp_id", "x"], "opportunity_id", "opp_id"),
        (["Related Opportunity Id"], "opportunity_id", "Related Opportunity Id"),
        (["Email", "Owner E-mail"], "owner_email", "Owner E-mail"),
        (["Lead Name", "EMAIL"], "owner_email", "EMAIL"),
        (["Remarks"], "note", "Remarks"),
        (["Due Date", "Activity Date"], "activity_datetime", "Activity Date"),
        (["Due Date", "Date"], "activity_datetime", "Date"),
        (["Due Date"], "activity_datetime", None),
        (["Amount"], "opportunity_id", None),
    ],
)
def test_guess_column_from_header_names(headers, target, expected):
    assert guess_column(headers, target, set()) == expected


def test_match_fields_by_display_name_ignoring_case_and_spaces():
    headers = ["visit  OUTCOME", "Duration", "visit_time", "Comments", "mx_Custom_4"]
    assert match_fields(headers, list(VISIT.fields.values())) == {
        "mx_Custom_1": "visit  OUTCOME",
        "mx_Custom_2": "Duration",
        "mx_Custom_3": "visit_time",
        "mx_Custom_4": "mx_Custom_4",
    }


def test_match_fields_uses_each_header_once_and_leaves_poor_matches_out():
    fields = [
        FieldMeta("mx_Custom_1", "Amount", "Number"),
        FieldMeta("mx_Custom_2", "Amount Due", "Number"),
        FieldMeta("mx_Custom_3", "Branch Code", "String"),
    ]
    assert match_fields(["Amount", "Region"], fields) == {"mx_Custom_1": "Amount"}


@pytest.mark.parametrize(
    ("values", "with_time", "fmt", "note"),
    [
        (["02/01/2024 10:33", "28/03/2024 09:05"], True, "%d/%m/%Y %H:%M", None),
        (["01/28/2024", "12/31/2024"], False, "%m/%d/%Y", None),
        (["02/01/2024", "03/01/2024"], False, "%d/%m/%Y", "reads as both"),
        (
            ["09/01/2024", "31/02/2024", "20/01/2024"],
            False,
            "%d/%m/%Y",
            "1 value(s) fit no format, e.g. '31/02/2024'",
        ),
        (["2024-01-02 10:33:00", "2024-01-03", ""], True, None, None),
        (["soon", "later"], True, None, "no date format fits values like 'soon'"),
        (["5 Mar 2024 2:15 PM"], True, "%d %b %Y %I:%M %p", None),
    ],
)
def test_guess_format(values, with_time, fmt, note):
    guessed, notes = guess_format(values, with_time=with_time)
    assert guessed == fmt
    assert notes == [] if note is None else any(note in text for text in notes)


def test_starter_offline_on_the_sample_loads_and_validates(tmp_path):
    sheet = load_sheet(REPO / "importer" / "sample_data" / "activities.csv")
    starter = starter_mapping(sheet, 201)
    path = write_yaml(tmp_path, starter.text)
    mapping = load_mapping(path)
    assert mapping.activity_event.value == 201
    assert (mapping.opportunity_id.column, mapping.owner_email.column, mapping.note.column) == (
        "Opportunity ID",
        "Owner Email",
        "Note",
    )
    assert (mapping.activity_datetime.column, mapping.activity_datetime.format) == (
        "Activity Date",
        "%d/%m/%Y %H:%M",
    )
    assert mapping.fields == {}
    assert (
        "# Columns left unmapped: 'PAN', 'Amount', 'Due Date', 'Channel', 'Reference', 'Documents', 'Verified'"
        in starter.text
    )
    check_columns(mapping, sheet.headers, path)
    assert sorted(e.source_row for e in validate_sheet(sheet, mapping).errors) == [8, 27]


def test_starter_online_maps_fields_with_types_and_lists_what_is_missing(tmp_path):
    sheet = make_sheet(
        ["Opportunity", "Owner Email", "Activity Date", "Outcome", "Visit Outcome", "Duration (min)"],
        [["o1", "a@b.co", "05/03/2024 14:15", "x", "Interested", "30"]],
    )
    starter = starter_mapping(sheet, "site visit", VISIT)
    mapping = load_mapping(write_yaml(tmp_path, starter.text))
    assert mapping.activity_event.name == "site visit"
    assert 'activity_event: {name: "site visit"}  # code 202' in starter.text
    assert mapping.activity_datetime.column == "Activity Date"
    assert set(mapping.fields) == {"mx_Custom_1", "mx_Custom_2"}
    assert (mapping.fields["mx_Custom_2"].type, mapping.fields["mx_Custom_2"].required) == ("number", True)
    assert "# Columns left unmapped: 'Outcome'" in starter.text
    assert "# Fields of Site Visit (202) not mapped: mx_Custom_3 (Visit Time): DateTime" in starter.text
    assert (
        "# Mandatory fields still missing (map them under fields: before a run): mx_Custom_4 (Site Code)"
        in starter.text
    )
    assert any("mx_Custom_4 (Site Code)" in note for note in starter.notes)


def test_starter_date_field_gets_type_and_guessed_format(tmp_path):
    sheet = make_sheet(["Opportunity ID", "Owner", "Visit Time"], [["o1", "a@b.co", "03/28/2024 2:15 PM"]])
    starter = starter_mapping(sheet, 202, VISIT)
    field = load_mapping(write_yaml(tmp_path, starter.text)).fields["mx_Custom_3"]
    assert (field.column, field.type, field.format) == ("Visit Time", "datetime", "%m/%d/%Y %I:%M %p")


def test_starter_without_guessable_columns_still_loads_and_says_what_to_choose(tmp_path):
    sheet = make_sheet(["A", "B"], [["1", "2"]])
    starter = starter_mapping(sheet, 201)
    mapping = load_mapping(write_yaml(tmp_path, starter.text))
    assert mapping.opportunity_id.column == CHOOSE
    assert any("no header looks like an opportunity id" in note for note in starter.notes)


@pytest.mark.parametrize(
    "header",
    ['Opportunity "#1": ID', "Opportunity\u0085ID", "Opportunity ✓\u2028ID", "Opportunity {x} \\ 'y' ID"],
)
def test_starter_quotes_any_header_exactly(tmp_path, header):
    sheet = make_sheet([header, "Owner Email"], [["o1", "a@b.co"]])
    starter = starter_mapping(sheet, 201, ActivityMeta(201, f"Name {header}", {}))
    assert load_mapping(write_yaml(tmp_path, starter.text)).opportunity_id.column == header
