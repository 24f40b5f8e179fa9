"""Property: what the validator accepts, LeadSquared (the sandbox) accepts; what it rejects names a column.

Rows of messy cells (valid values in the shapes sheets give them, each row with a cell spoiled by
a near miss or any text) go through the offline validator and the checks against the account's
metadata, as `run` does before sending. Every accepted row is then posted to the sandbox over
loopback and must be created.

The other properties of the issue live beside their units: the error workbook round trip in
tests/test_report.py (`..._any_text_round_trips_and_is_never_a_formula`) and the planner in
tests/test_planner.py (`..._never_exceeds_the_limit_never_mixes_and_loses_nothing`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from importer.account import ActivityMeta, parse_activity_setting
from importer.account_checks import check_rows
from importer.client import Credentials, LsqClient, Outcome
from importer.mapping import Mapping
from importer.planner import plan_batches
from importer.sandbox import ACTIVITY_SETTING_PATH, DEFAULT_OPPORTUNITIES, DEFAULT_USERS, Sandbox
from importer.validate import validate_sheet
from tests.helpers import make_sheet

HEADERS = [
    "Opportunity ID",
    "Owner Email",
    "Note",
    "When",
    "PAN",
    "Amount",
    "Due",
    "Reference",
    "Channel",
    "Documents",
    "Verified",
]
MAPPING = Mapping.model_validate(
    {
        "activity_event": {"value": 201},
        "opportunity_id": {"column": "Opportunity ID"},
        "owner_email": {"column": "Owner Email"},
        "note": {"column": "Note"},
        "activity_datetime": {"column": "When", "format": "%d/%m/%Y %H:%M", "timezone": "Asia/Kolkata"},
        "fields": {
            "mx_Custom_1": {"column": "PAN", "required": True},
            "mx_Custom_2": {"column": "Amount", "type": "number"},
            "mx_Custom_3": {"column": "Due", "type": "date", "format": "%d/%m/%Y"},
            "mx_Custom_4": {"column": "Channel"},
            "mx_Custom_5": {"column": "Reference"},
            "mx_Custom_6": {"column": "Documents"},
            "mx_Custom_7": {"column": "Verified", "type": "boolean"},
        },
    }
)


@pytest.fixture(scope="module")
def account() -> Iterator[tuple[Sandbox, LsqClient, ActivityMeta]]:
    with Sandbox(rate_limit=None) as sandbox:
        client = LsqClient(sandbox.url, Credentials(sandbox.access_key, sandbox.secret_key))
        setting = client.read("GET", ACTIVITY_SETTING_PATH, params={"code": 201})
        yield sandbox, client, parse_activity_setting(201, setting)
        client.close()


def decorated(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value with the spaces, non-breaking spaces and zero-width characters sheets carry around it."""
    edges = st.text(alphabet=" \t\u00a0\u200b\ufeff", max_size=3)
    return st.builds(lambda before, value, after: before + value + after, edges, values, edges)


def recased(values: list[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda value, how: getattr(value, how)(),
        st.sampled_from(values),
        st.sampled_from(["lower", "upper", "title", "strip"]),
    )


moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 30))
days = st.dates(min_value=date(1900, 1, 1), max_value=date(9999, 12, 31))
OPTIONS = ["PAN Card", "Aadhaar", "Passport", "Bank Statement"]

# What a cell of each column may validly hold, in the shapes spreadsheets give it.
VALID = {
    "Opportunity ID": decorated(st.sampled_from(DEFAULT_OPPORTUNITIES[:5])),
    "Owner Email": decorated(recased(DEFAULT_USERS)),
    "Note": st.text(),
    "When": st.one_of(
        moments.map(lambda m: m.strftime("%d/%m/%Y %H:%M")),
        moments.map(str),
        st.floats(20_000, 79_999).map(lambda f: f"{f:.5f}"),
        st.just(""),
    ),
    "PAN": decorated(st.from_regex(r"[A-Z]{5}[0-9]{4}[A-Z]", fullmatch=True)),
    "Amount": st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
        st.integers(-(10**12), 10**12).map(lambda n: f"{n:,}"),
        st.floats(-1e12, 1e12).map(str),
        st.sampled_from([".5", "5.", "+3", "-0", "1e5", ""]),
    ),
    "Due": st.one_of(
        days.map(lambda d: d.strftime("%d/%m/%Y")), days.map(str), st.integers(20_000, 79_999).map(str)
    ),
    "Reference": st.one_of(st.text(), st.from_regex(r"0[0-9]{5}", fullmatch=True)),
    "Channel": st.one_of(decorated(recased(["Branch", "Online", "Phone", "Partner"])), st.just("")),
    "Documents": st.one_of(st.lists(recased(OPTIONS), min_size=1, max_size=4).map(";".join), st.just("")),
    "Verified": st.one_of(recased(["yes", "no", "true", "false", "y", "n", "1", "0"]), st.just("")),
}
# What may spoil a cell: near misses people make, and any text at all.
SPOILED = st.one_of(
    st.text(),
    st.sampled_from(
        [
            "1.23457E+17",
            "",
            " ",
            f"{DEFAULT_USERS[0]}.",
            f"a@@{DEFAULT_USERS[0]}",
            "1e999999999",
            "1e-999999999",
            "0024-03-26",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:00",
            "31/02/2024",
            "1,2,3",
            "nan",
            "inf",
            "Branch;Online",
            "PAN Card;;Aadhaar",
            "maybe",
            "12345",
        ]
    ),
    st.datetimes().map(str),
    st.floats().map(str),
)
# Which opportunities and users exist is the account's to know, not the validator's: those two
# cells are only spoiled in ways the validator must refuse.
SPOILERS = {
    "Opportunity ID": st.sampled_from(["1.23457E+17", "", " \u00a0"]),
    "Owner Email": st.one_of(
        st.text(alphabet=st.characters(exclude_characters="@")),
        st.sampled_from([f"{DEFAULT_USERS[0]}.", f"a@@{DEFAULT_USERS[0]}", "a b@example.com"]),
    ),
}
rows = st.lists(
    st.builds(
        lambda cells, spoiled: [spoiled.get(name, cells[name]) for name in HEADERS],
        st.fixed_dictionaries(VALID),
        st.sampled_from(HEADERS).flatmap(
            lambda name: st.dictionaries(st.just(name), SPOILERS.get(name, SPOILED), max_size=1)
        ),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(table=rows)
def test_validated_rows_are_created_and_rejected_rows_name_a_column(account, table):
    sandbox, client, activity = account
    validated = validate_sheet(make_sheet(HEADERS, table), MAPPING)
    validated = check_rows(validated, MAPPING, {201: activity}, "mapping.yaml")

    for error in validated.errors:
        assert error.column in HEADERS, error
    for batch in plan_batches(validated.rows):
        reply = client.post_activities(batch.opportunity_id, [row.body for row in batch.rows])
        for row, result in zip(batch.rows, reply.rows, strict=True):
            assert result.outcome == Outcome.POSTED, (table[row.source_row - 2], row.body, result.message)
    assert len(validated.rows) + len(validated.failed_rows) == len(table)
    event("some rows accepted" if validated.rows else "every row rejected")
    sandbox.reset()


# Columns of many distinct date-times are converted all at once (importer.datetimes); a cell must
# get the same value, or the same error, as when it is converted on its own.
DATE_MAPPING = Mapping.model_validate(
    {
        "activity_event": {"value": 201},
        "opportunity_id": {"column": "Opportunity ID"},
        "owner_email": {"column": "Owner Email"},
        "activity_datetime": {"column": "When", "format": "%d/%m/%Y %H:%M", "timezone": "Asia/Kolkata"},
        "fields": {"mx_Custom_3": {"column": "Due", "type": "date"}},
    }
)
when_texts = st.one_of(
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)).flatmap(
        lambda m: st.sampled_from(
            [m.strftime("%d/%m/%Y %H:%M"), m.strftime("%Y-%m-%d %H:%M:%S"), str(m.date())]
        )
    ),
    st.floats(19_000, 81_000).map(lambda f: f"{f:.4f}"),
    st.text(alphabet="0123456789/-: ", max_size=19),
)


def _outcomes(validated, count: int) -> list[tuple[str, object]]:
    errors = {e.source_row: e.message for e in validated.errors}
    bodies = {
        row.source_row: (row.body.get("ActivityDateTime"), row.body.get("Fields")) for row in validated.rows
    }
    return [("error", errors[n]) if n in errors else ("ok", bodies[n]) for n in range(2, count + 2)]


@settings(max_examples=15, deadline=None)
@given(texts=st.lists(when_texts, min_size=200, max_size=260, unique=True))
def test_validate_many_distinct_dates_at_once_matches_one_by_one(texts):
    owner, opportunity = DEFAULT_USERS[0], DEFAULT_OPPORTUNITIES[0]
    table = [[opportunity, owner, text, text] for text in texts]
    headers = ["Opportunity ID", "Owner Email", "When", "Due"]
    together = _outcomes(validate_sheet(make_sheet(headers, table), DATE_MAPPING), len(table))
    alone = [_outcomes(validate_sheet(make_sheet(headers, [cells]), DATE_MAPPING), 1)[0] for cells in table]
    assert together == alone
