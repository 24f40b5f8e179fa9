from __future__ import annotations

import pytest

from importer.reconcile import assign, matches, moment, read_item

BODY = {
    "ActivityEvent": 201,
    "ActivityOwnerEmail": "asha.rao@example.com",
    "ActivityNote": "PAN copy",
    "ActivityDateTime": "2024-03-26 14:15:00",
    "Fields": [
        {"SchemaName": "mx_Custom_2", "Value": "12.5"},
        {"SchemaName": "mx_Custom_3", "Value": "2024-03-31 00:00:00"},
    ],
}


@pytest.mark.parametrize(
    "item",
    [
        {
            "ProspectActivityId": "a",
            "ActivityEvent": 201,
            "ActivityNote": "PAN copy",
            "ActivityOwnerEmail": "asha.rao@example.com",
            "ActivityDateTime": "2024-03-26 14:15:00",
            "Fields": [
                {"SchemaName": "mx_Custom_2", "Value": "12.5"},
                {"SchemaName": "mx_Custom_3", "Value": "2024-03-31 00:00:00"},
            ],
        },
        {
            "Id": "a",
            "EventCode": "201",
            "ActivityNote": "PAN copy",
            "OwnerEmailAddress": "Asha.Rao@example.com",
            "CreatedOn": "3/26/2024 2:15:00 PM",
            "Data": [{"Key": "mx_Custom_2", "Value": "12.50"}, {"Key": "mx_Custom_3", "Value": "2024-03-31"}],
        },
        {
            "ActivityId": "a",
            "ActivityEvent": 201,
            "ActivityNote": "PAN copy ",
            "ActivityOwnerEmail": "asha.rao@example.com",
            "ActivityDateTime": "2024-03-26T14:15:00Z",
            "mx_Custom_2": "12.500",
            "mx_Custom_3": "3/31/2024 12:00:00 AM",
            "mx_Custom_9": "",
        },
        {
            "ProspectActivityId": "a",
            "EventCode": "201",
            "ActivityEvent_Note": "PAN copy",
            "CreatedByEmailAddress": "asha.rao@example.com",
            "ActivityDateTime": "/Date(1711462500000+0000)/",
            "ActivityFields": {"mx_Custom_2": "12.50", "mx_Custom_3": "2024-03-31 00:00:00"},
        },
    ],
)
def test_matches_every_item_shape_and_normalisation(item):
    found = read_item(item)
    assert found.activity_id == "a"
    assert matches(BODY, found)


@pytest.mark.parametrize(
    "change",
    [
        {"ActivityNote": "other"},
        {"ActivityEvent": 202},
        {"ActivityOwnerEmail": "x@y.co"},
        {"ActivityDateTime": "2024-03-26 14:16:00"},
        {"mx_Custom_2": "12.6"},
        {"mx_Custom_3": None},
        {"mx_Custom_9": "a field the row lacks"},
    ],
)
def test_does_not_match_a_different_activity(change):
    item = {
        "Id": "a",
        "ActivityEvent": 201,
        "ActivityNote": "PAN copy",
        "ActivityOwnerEmail": "asha.rao@example.com",
        "ActivityDateTime": "2024-03-26 14:15:00",
        "mx_Custom_2": "12.5",
        "mx_Custom_3": "2024-03-31",
    }
    item.update(change)
    item = {k: v for k, v in item.items() if v is not None}
    assert not matches(BODY, read_item(item))


def test_assign_counts_multiplicity_and_skips_known_ids():
    found = [
        read_item(
            {
                "Id": i,
                "ActivityEvent": 201,
                "ActivityNote": "PAN copy",
                "ActivityOwnerEmail": "asha.rao@example.com",
                "ActivityDateTime": "2024-03-26 14:15:00",
                "mx_Custom_2": "12.5",
                "mx_Custom_3": "2024-03-31",
            }
        )
        for i in ("a", "b", "c")
    ]
    # three identical unknown rows, one of the three activities belongs to a row posted with a known id
    assert assign([BODY, BODY, BODY], found, taken={"b"}) == [(True, "a"), (True, "c"), (False, None)]
    # a row posted earlier without an id (count-only reply) claims one match first
    assert assign([BODY, BODY], found, taken=set(), posted_without_id=[BODY]) == [(True, "b"), (True, "c")]
    assert assign([BODY], [], taken=set()) == [(False, None)]


def test_a_row_with_an_empty_cell_is_not_matched_to_the_activity_of_a_row_with_that_field():
    """The issue's case: row 1 left mx_Custom_3 empty, row 2 filled it; only row 2 was created."""
    without = {**BODY, "Fields": [{"SchemaName": "mx_Custom_2", "Value": "12.5"}]}
    created = read_item(
        {
            "Id": "only",
            "ActivityEvent": 201,
            "ActivityNote": "PAN copy",
            "ActivityOwnerEmail": "asha.rao@example.com",
            "ActivityDateTime": "2024-03-26 14:15:00",
            "mx_Custom_2": "12.5",
            "mx_Custom_3": "2024-03-31",
        }
    )
    assert assign([without, BODY], [created], taken=set()) == [(False, None), (True, "only")]


def test_assign_finds_a_maximum_matching_not_first_come():
    """Row A matches both activities, row B only the first: both are found."""
    loose = {**BODY}
    loose.pop("ActivityDateTime")

    def item(i, when):
        return read_item(
            {
                "Id": i,
                "ActivityEvent": 201,
                "ActivityNote": "PAN copy",
                "ActivityOwnerEmail": "asha.rao@example.com",
                "ActivityDateTime": when,
                "mx_Custom_2": "12.5",
                "mx_Custom_3": "2024-03-31",
            }
        )

    found = [item("x", "2024-03-26 14:15:00"), item("y", "2024-03-27 09:00:00")]
    assert assign([loose, BODY], found, taken=set()) == [(True, "y"), (True, "x")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/Date(1711462500000+0000)/", "2024-03-26 14:15:00"),
        ("2025-11-25 07:47:41.000", "2025-11-25 07:47:41"),
        ("7/31/2026 5:33:50 AM", "2026-07-31 05:33:50"),
        ("2024-03-26T19:45:00+05:30", "2024-03-26 14:15:00"),
    ],
)
def test_moment_reads_every_time_format(text, expected):
    assert moment(text) == expected
