from __future__ import annotations

import pytest

from importer.reconcile import assign, matches, read_item

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
            "mx_Custom_9": "extra fields are ignored",
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
