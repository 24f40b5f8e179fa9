from __future__ import annotations

from pathlib import Path

import pytest

from importer.errors import MappingError
from importer.mapping import check_columns, load_mapping, render_template, template_placeholders
from tests.helpers import write_yaml

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """
activity_event: {value: 201}
opportunity_id: {column: "Opportunity ID"}
owner_email: {column: "Owner Email"}
"""


def test_mapping_example_loads_with_every_key():
    mapping = load_mapping(REPO / "importer" / "mappings" / "example.yaml")
    assert mapping.activity_event.value == 201
    assert mapping.activity_datetime.timezone == "Asia/Kolkata"
    assert mapping.fields["mx_Custom_2"].type == "number"
    assert mapping.fields["mx_Custom_1"].required is True
    assert mapping.note.template == "{Note} (channel: {Channel})"


def test_mapping_minimal_has_defaults(tmp_path):
    mapping = load_mapping(write_yaml(tmp_path, MINIMAL))
    assert mapping.fields == {}
    assert mapping.note is None
    assert mapping.skip_dropdown_validation is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the mapping is empty"),
        ("# only a comment\n", "the mapping is empty"),
        ("- a\n- b\n", "expected a YAML mapping"),
        (MINIMAL + "colour: red\n", "unknown key 'colour'"),
        (
            MINIMAL + "fields:\n  mx_Custom_1: {colum: PAN}\n",
            "unknown key 'fields.mx_Custom_1.colum' (did you mean 'column'?",
        ),
        (MINIMAL + "fields:\n  mx_Custom_1: {column: PAN, type: money}\n", "'fields.mx_Custom_1.type'"),
        (MINIMAL + "fields:\n  mx_Custom_99: {column: PAN}\n", "mx_Custom_1 to mx_Custom_50"),
        (MINIMAL + "fields:\n  Status: {column: PAN}\n", "mx_Custom_1 to mx_Custom_50"),
        (
            MINIMAL + "fields:\n  mx_Custom_1: {column: PAN, value: x}\n",
            "give exactly one of column or value",
        ),
        (MINIMAL + "fields:\n  mx_Custom_1: {}\n", "give exactly one of column or value (got none)"),
        (
            MINIMAL + "fields:\n  mx_Custom_1: {column: PAN, required: maybe}\n",
            "'fields.mx_Custom_1.required'",
        ),
        (
            MINIMAL + "activity_datetime: {column: When, timezone: Mars/Olympus}\n",
            "unknown timezone 'Mars/Olympus'",
        ),
        (
            MINIMAL + "activity_datetime: {column: When, format: dd/mm/yyyy x}\n",
            "'x' is not part of a date form",
        ),
        (MINIMAL + "activity_datetime: {column: When, format: Q}\n", "write it like DD/MM/YYYY, MM/DD/YYYY"),
        (MINIMAL.replace("owner_email", "owner"), "missing key 'owner_email'"),
        (
            "activity_event: {value: abc}\nopportunity_id: {column: A}\nowner_email: {column: B}\n",
            "'activity_event.value'",
        ),
        ("activity_event: {value: 201\n", "line 2, column 1: invalid YAML"),
        (
            MINIMAL + "note: {template: 'x'}\nfields:\n  mx_Custom_1: {template: 'y'}\n",
            "unknown key 'fields.mx_Custom_1.template'",
        ),
    ],
)
def test_mapping_rejects_bad_file_naming_the_key(tmp_path, text, expected):
    path = write_yaml(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_mapping_refuses_yaml_aliases(tmp_path):
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n'
    with pytest.raises(MappingError, match="aliases"):
        load_mapping(write_yaml(tmp_path, MINIMAL + bomb))


def test_mapping_missing_file_is_a_mapping_error(tmp_path):
    with pytest.raises(MappingError, match="no such mapping file"):
        load_mapping(tmp_path / "nope.yaml")


def test_check_columns_suggests_the_closest_header(tmp_path):
    path = write_yaml(tmp_path, MINIMAL + "fields:\n  mx_Custom_2: {column: Amout}\n")
    mapping = load_mapping(path)
    with pytest.raises(MappingError) as caught:
        check_columns(mapping, ["Opportunity ID", "Owner Email", "Amount"], path)
    assert "'fields.mx_Custom_2' names column 'Amout'" in str(caught.value)
    assert "did you mean 'Amount'?" in str(caught.value)


def test_check_columns_includes_template_placeholders(tmp_path):
    path = write_yaml(tmp_path, MINIMAL + "note: {template: 'Visit by {Agent}'}\n")
    with pytest.raises(MappingError, match="'note' names column 'Agent'"):
        check_columns(load_mapping(path), ["Opportunity ID", "Owner Email"], path)


def test_template_fills_columns_and_keeps_escaped_braces():
    template = "PAN {{ok}} for {Customer Name}: {Amount}"
    assert template_placeholders(template) == ["Customer Name", "Amount"]
    assert render_template(template, {"Customer Name": "Asha", "Amount": "12"}) == "PAN {ok} for Asha: 12"


def test_mapping_event_by_name(tmp_path):
    mapping = load_mapping(write_yaml(tmp_path, MINIMAL.replace("{value: 201}", '{name: " Site Visit "}')))
    assert (mapping.activity_event.name, mapping.activity_event.value) == ("Site Visit", None)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            '{name: "Site Visit", value: 202}',
            "'activity_event': give exactly one of column or value or name (got 2)",
        ),
        ('{name: "  "}', "'activity_event.name': name must be an activity type's name, not blank"),
        (
            '{nmae: "Site Visit"}',
            "unknown key 'activity_event.nmae' (did you mean 'name'? allowed: column, value, name)",
        ),
    ],
)
def test_mapping_event_name_problems(tmp_path, event, message):
    with pytest.raises(MappingError) as caught:
        load_mapping(write_yaml(tmp_path, MINIMAL.replace("{value: 201}", event)))
    assert message in str(caught.value)
