"""The opportunity found from the lead (importer.lookup), against a fake client with CONTRACT.md's shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from importer.errors import MappingError
from importer.init_mapping import starter_mapping
from importer.lookup import (
    LookupCache,
    Resolver,
    normalise_email,
    normalise_phone,
    planned_calls,
    resolve_rows,
)
from importer.mapping import Mapping, load_mapping
from importer.records import Stage
from importer.validate import validate_sheet
from tests.helpers import make_sheet, write_yaml

LOOKUP_MAPPING = """
activity_event: {value: 201}
opportunity_id:
  lookup: {lead_field: %s, column: "%s", opportunity_type: 12000%s}
owner_email: {value: asha.rao@example.com}
note: {column: Note}
"""


def lookup_mapping(
    tmp_path: Path, field: str = "EmailAddress", column: str = "Customer", extra: str = ""
) -> Any:
    return load_mapping(write_yaml(tmp_path, LOOKUP_MAPPING % (field, column, extra)))


class FakeClient:
    """Answers like CONTRACT.md says, from {value: [(opportunity id, type, created)]}; counts calls."""

    base_url = "https://api-in21.leadsquared.com"

    def __init__(
        self, leads: dict[str, list[tuple[str | None, int, str]]], ids: set[str] | None = None
    ) -> None:
        self.leads = leads
        self.ids = ids or set()
        self.calls: list[tuple[str, object]] = []

    def opportunities_by_lead_field(self, lead_field: str, value: str, **_: object) -> Any:
        self.calls.append(("by-lead-field", value))
        found = self.leads.get(value, [])
        items = [
            {
                **({"OpportunityId": ident} if ident else {}),
                "RelatedProspectId": f"lead-{value}",
                "OpportunityEvent": str(kind),
                "CreatedOn": created,
            }
            for ident, kind, created in sorted(found, key=lambda item: item[2], reverse=True)
        ]
        return {"RecordCount": len(items), "List": items}

    def opportunities_of_lead(self, lead_id: str, opportunity_type: int, **_: object) -> Any:
        self.calls.append(("of-lead", lead_id))
        value = lead_id.removeprefix("lead-")
        items = [
            {"OpportunityId": f"full-{created}", "CreatedOn": created}
            for _ident, kind, created in self.leads.get(value, [])
            if kind == opportunity_type
        ]
        return {"RecordCount": len(items), "List": items}

    def opportunities_by_id(self, ids: list[str], types: list[int], **_: object) -> Any:
        assert len(ids) <= 2000
        self.calls.append(("by-id", len(ids)))
        found = [{"ProspectActivityId": i, "ProspectId": "p"} for i in ids if i in self.ids]
        return [{"EventCode": code, "RecordCount": len(found), "Opportunities": found} for code in types]


LEADS = {
    "asha@example.com": [("opp-asha", 12000, "2024-01-01 10:00:00"), ("opp-asha-other", 12001, "2024-02-01")],
    "two@example.com": [("opp-old", 12000, "2023-01-01 00:00:00"), ("opp-new", 12000, "2024-05-01 00:00:00")],
    "other@example.com": [("opp-x", 12001, "2024-01-01 00:00:00")],
    "+91-9876543210": [("opp-mobile", 12000, "2024-01-01 00:00:00")],
}


def validated_rows(tmp_path: Path, cells: list[str], **mapping: str) -> tuple[Any, Any]:
    spec = lookup_mapping(tmp_path, **mapping)
    column = spec.opportunity_id.lookup.column
    sheet = make_sheet([column, "Note"], [[cell, "n"] for cell in cells])
    return spec, validate_sheet(sheet, spec)


# --- mapping ---------------------------------------------------------------------------------


def test_a_lookup_mapping_loads_with_its_defaults(tmp_path: Path) -> None:
    spec = lookup_mapping(tmp_path).opportunity_id
    assert spec.lookup.lead_field == "EmailAddress"
    assert spec.lookup.opportunity_type == 12000
    assert spec.lookup.pick is None
    assert spec.lookup.default_country_code == "91"
    assert spec.columns() == ["Customer"]


@pytest.mark.parametrize(
    ("opportunity", "expected"),
    [
        (
            "{lookup: {lead_feild: EmailAddress, column: E, opportunity_type: 12000}}",
            "did you mean 'lead_field'?",
        ),
        (
            "{lookup: {lead_field: EmailAddress, column: E}}",
            "missing key 'opportunity_id.lookup.opportunity_type'",
        ),
        ("{lookup: {lead_field: EmailAddress, column: E, opportunity_type: 1, pick: oldest}}", "'newest'"),
        ("{column: X, lookup: {lead_field: Mobile, column: E, opportunity_type: 1}}", "exactly one of"),
        (
            "{lookup: {lead_field: Mobile, column: E, opportunity_type: 1}, opportunity_type: 2}",
            "inside lookup",
        ),
        ("{lookup: {lead_field: Mobile, column: ' ', opportunity_type: 1}}", "must name a header"),
        (
            "{lookup: {lead_field: Mobile, column: E, opportunity_type: 1, default_country_code: x}}",
            "country",
        ),
    ],
)
def test_a_wrong_lookup_names_the_file_and_key(tmp_path: Path, opportunity: str, expected: str) -> None:
    path = write_yaml(
        tmp_path,
        f"activity_event: {{value: 1}}\nowner_email: {{value: a@b.co}}\nopportunity_id: {opportunity}\n",
    )
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert str(path) in str(caught.value)
    assert "opportunity_id" in str(caught.value)
    assert expected in str(caught.value)


# --- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "9876543210",
        "98765 43210",
        "98765-43210",
        "098765 43210",
        "(98765) 43210",
        "+91 98765 43210",
        "+919876543210",
        "+91-9876543210",
        "0091 98765 43210",
        "919876543210",
    ],
)
def test_a_mobile_written_any_common_way_is_the_form_leadsquared_stores(written: str) -> None:
    assert normalise_phone(written) == "+91-9876543210"


def test_the_default_country_code_is_settable_and_an_explicit_code_is_kept() -> None:
    assert normalise_phone("5551234567", "1") == "+1-5551234567"
    assert normalise_phone("+44-2079460958") == "+44-2079460958"


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("12345", "5 digits"),
        ("9.87654E+09", "Excel"),
        ("98765abcde", "not a phone"),
        ("+44 20 7946 0958", "country"),
    ],
)
def test_a_number_that_cannot_be_told_is_refused(written: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalise_phone(written)


def test_an_email_is_trimmed_and_case_folded() -> None:
    assert normalise_email("  Asha.Rao@Example.COM ") == "asha.rao@example.com"
    with pytest.raises(ValueError, match="not a valid email"):
        normalise_email("asha@")


def test_validation_puts_the_normalised_value_in_the_row_and_fails_a_bad_cell(tmp_path: Path) -> None:
    _, validated = validated_rows(tmp_path, ["98765 43210", "+91 98765 43210", "123"], field="Mobile")
    assert [row.opportunity_id for row in validated.rows] == ["+91-9876543210"] * 2
    [error] = validated.errors
    assert (error.source_row, error.stage, error.column) == (4, Stage.VALIDATION, "Customer")


# --- resolving -------------------------------------------------------------------------------


def resolver(client: FakeClient, path: Path | None = None) -> Resolver:
    return Resolver(client, LookupCache(path))  # type: ignore[arg-type]


def test_each_distinct_value_costs_one_call_and_every_outcome_fails_its_rows(tmp_path: Path) -> None:
    cells = [
        "ASHA@example.com",
        "asha@example.com ",
        "nobody@example.com",
        "other@example.com",
        "two@example.com",
    ]
    spec, validated = validated_rows(tmp_path, cells)
    client = FakeClient(LEADS)
    assert planned_calls(spec, validated.rows) == 4
    rows, report = resolve_rows(spec, validated.rows, resolver(client))
    assert [c for c in client.calls if c[0] == "by-lead-field"] == [
        ("by-lead-field", v)
        for v in ["asha@example.com", "nobody@example.com", "other@example.com", "two@example.com"]
    ]
    assert report.calls == 4
    assert [(row.source_row, row.opportunity_id) for row in rows] == [(2, "opp-asha"), (3, "opp-asha")]
    messages = {error.source_row: error.message for error in report.errors}
    assert all(error.stage == Stage.LOOKUP and error.column == "Customer" for error in report.errors)
    assert "no lead with EmailAddress 'nobody@example.com'" in messages[4]
    assert "has no opportunity of type 12000" in messages[5]
    assert "2 opportunities of type 12000" in messages[6]
    assert "opp-new" in messages[6]
    assert "opp-old" in messages[6]
    assert "pick: newest" in messages[6]


def test_pick_newest_takes_the_newest_of_several(tmp_path: Path) -> None:
    spec, validated = validated_rows(tmp_path, ["two@example.com"], extra=", pick: newest")
    rows, report = resolve_rows(spec, validated.rows, resolver(FakeClient(LEADS)))
    assert [row.opportunity_id for row in rows] == ["opp-new"]
    assert report.errors == []


def test_a_phone_lookup_finds_the_lead_by_its_stored_form(tmp_path: Path) -> None:
    spec, validated = validated_rows(tmp_path, ["098765-43210", "+91 9876543210"], field="Mobile")
    client = FakeClient(LEADS)
    rows, _ = resolve_rows(spec, validated.rows, resolver(client))
    assert [row.opportunity_id for row in rows] == ["opp-mobile", "opp-mobile"]
    assert client.calls == [("by-lead-field", "+91-9876543210")]


def test_an_answer_without_the_opportunity_ids_asks_for_the_leads_opportunities(tmp_path: Path) -> None:
    spec, validated = validated_rows(tmp_path, ["anon@example.com"])
    client = FakeClient({"anon@example.com": [(None, 12000, "2024-01-01")]})
    rows, _ = resolve_rows(spec, validated.rows, resolver(client))
    assert [row.opportunity_id for row in rows] == ["full-2024-01-01"]
    assert [kind for kind, _ in client.calls] == ["by-lead-field", "of-lead"]


def test_answers_are_kept_so_a_rerun_makes_no_call(tmp_path: Path) -> None:
    spec, validated = validated_rows(tmp_path, ["asha@example.com", "nobody@example.com"])
    cache_file = tmp_path / "cache" / "lookups.json"
    first = LookupCache(cache_file)
    resolve_rows(spec, validated.rows, Resolver(FakeClient(LEADS), first))  # type: ignore[arg-type]
    first.save()
    again = FakeClient(LEADS)
    rows, report = resolve_rows(spec, validated.rows, Resolver(again, LookupCache(cache_file)))  # type: ignore[arg-type]
    assert again.calls == []
    assert [row.opportunity_id for row in rows] == ["opp-asha"]
    assert len(report.errors) == 1


def test_a_found_opportunity_is_kept_a_week_and_a_miss_an_hour(tmp_path: Path) -> None:
    now = [1_000_000.0]
    spec, validated = validated_rows(tmp_path, ["asha@example.com", "nobody@example.com"])
    path = tmp_path / "lookups.json"
    cache = LookupCache(path, clock=lambda: now[0])
    resolve_rows(spec, validated.rows, Resolver(FakeClient(LEADS), cache))  # type: ignore[arg-type]
    cache.save()
    now[0] += 2 * 3600  # two hours later: the miss is asked again, the hit is not
    client = FakeClient(LEADS)
    resolve_rows(spec, validated.rows, Resolver(client, LookupCache(path, clock=lambda: now[0])))  # type: ignore[arg-type]
    assert client.calls == [("by-lead-field", "nobody@example.com")]
    now[0] += 8 * 24 * 3600  # eight days later: both again
    client = FakeClient(LEADS)
    resolve_rows(spec, validated.rows, Resolver(client, LookupCache(path, clock=lambda: now[0])))  # type: ignore[arg-type]
    assert len(client.calls) == 2


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '{"version": 99, "entries": {}}',
        '{"version": 1, "entries": ["lead/EmailAddress/asha@example.com"]}',
        '{"version": 1, "entries": {"lead/EmailAddress/asha@example.com": [1, 2]}}',
    ],
)
def test_a_damaged_cache_file_is_a_miss_and_is_rewritten(tmp_path: Path, text: str) -> None:
    spec, validated = validated_rows(tmp_path, ["asha@example.com"])
    path = tmp_path / "lookups.json"
    path.write_text(text, encoding="utf-8")
    client = FakeClient(LEADS)
    cache = LookupCache(path)
    rows, _ = resolve_rows(spec, validated.rows, Resolver(client, cache))  # type: ignore[arg-type]
    assert [row.opportunity_id for row in rows] == ["opp-asha"]
    assert len(client.calls) == 1
    cache.save()
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["version"] == 1
    assert list(stored["entries"]) == ["lead/EmailAddress/asha@example.com"]


def test_an_unwritable_cache_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec, validated = validated_rows(tmp_path, ["asha@example.com"])
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    cache = LookupCache(blocker / "cache" / "lookups.json")
    rows, _ = resolve_rows(spec, validated.rows, Resolver(FakeClient(LEADS), cache))  # type: ignore[arg-type]
    cache.save()
    assert [row.opportunity_id for row in rows] == ["opp-asha"]
    assert "cannot keep the look-ups" in caplog.text


def test_refresh_ignores_what_was_kept(tmp_path: Path) -> None:
    spec, validated = validated_rows(tmp_path, ["asha@example.com"])
    path = tmp_path / "lookups.json"
    cache = LookupCache(path)
    resolve_rows(spec, validated.rows, Resolver(FakeClient(LEADS), cache))  # type: ignore[arg-type]
    cache.save()
    client = FakeClient(LEADS)
    resolve_rows(spec, validated.rows, Resolver(client, LookupCache(path, refresh=True)))  # type: ignore[arg-type]
    assert len(client.calls) == 1


def test_plain_ids_are_checked_two_thousand_a_call(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        "activity_event: {value: 201}\nowner_email: {value: a@b.co}\n"
        "opportunity_id: {column: Opp, opportunity_type: 12000}\n",
    )
    spec = load_mapping(path)
    ids = [f"opp-{n}" for n in range(2001)]
    sheet = make_sheet(["Opp"], [[i] for i in ids] + [["opp-7"], ["missing"]])
    validated = validate_sheet(sheet, spec)
    client = FakeClient({}, ids=set(ids))
    assert planned_calls(spec, validated.rows) == 2
    rows, report = resolve_rows(spec, validated.rows, resolver(client))
    assert client.calls == [("by-id", 2000), ("by-id", 2)]
    assert len(rows) == 2002
    [error] = report.errors
    assert error.stage == Stage.LOOKUP
    assert error.column == "Opp"
    assert "'missing'" in error.message


# --- init-mapping ----------------------------------------------------------------------------


def test_init_mapping_proposes_an_email_lookup_when_no_column_holds_opportunity_ids() -> None:
    sheet = make_sheet(
        ["Customer Email", "Owner Email", "Remarks"],
        [["asha@example.com", "rm@example.com", "ok"], ["vikram@example.com", "rm@example.com", "ok"]],
    )
    starter = starter_mapping(sheet, 201)
    spec = Mapping.model_validate(yaml.safe_load(starter.text)).opportunity_id
    assert spec.lookup is not None
    assert (spec.lookup.lead_field, spec.lookup.column) == ("EmailAddress", "Customer Email")
    assert any("opportunity_type" in note for note in starter.notes)
    owner = Mapping.model_validate(yaml.safe_load(starter.text)).owner_email
    assert owner.column == "Owner Email"


def test_init_mapping_proposes_a_mobile_lookup_for_a_column_of_phone_numbers() -> None:
    sheet = make_sheet(
        ["Cust Mobile", "Owner"], [["98765 43210", "rm@example.com"], ["+91-9123456789", "rm@x.co"]]
    )
    spec = Mapping.model_validate(yaml.safe_load(starter_mapping(sheet, 201).text)).opportunity_id
    assert spec.lookup is not None
    assert (spec.lookup.lead_field, spec.lookup.column) == ("Mobile", "Cust Mobile")


def test_init_mapping_keeps_a_column_of_opportunity_ids_when_there_is_one() -> None:
    sheet = make_sheet(["Opportunity ID", "Customer Email"], [["opp-1", "asha@example.com"]])
    spec = Mapping.model_validate(yaml.safe_load(starter_mapping(sheet, 201).text)).opportunity_id
    assert spec.lookup is None
    assert spec.column == "Opportunity ID"
