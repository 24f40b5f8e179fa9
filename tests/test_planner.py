from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from importer.planner import plan_batches
from importer.records import PlannedRow


def rows_for(opportunities: list[str]) -> list[PlannedRow]:
    return [
        PlannedRow(n, opp, {"ActivityEvent": 201, "ActivityOwnerEmail": "a@b.co"})
        for n, opp in enumerate(opportunities, start=2)
    ]


def test_plan_30_rows_on_one_opportunity_take_two_calls():
    batches = plan_batches(rows_for(["A"] * 30))
    assert [len(b) for b in batches] == [25, 5]
    assert [r.source_row for r in batches[0].rows + batches[1].rows] == list(range(2, 32))


def test_plan_groups_by_opportunity_in_order_of_first_appearance():
    batches = plan_batches(rows_for(["A", "B", "A", "C", "B"]))
    assert [(b.opportunity_id, [r.source_row for r in b.rows]) for b in batches] == [
        ("A", [2, 4]),
        ("B", [3, 6]),
        ("C", [5]),
    ]


def test_plan_respects_a_smaller_batch_size():
    assert [len(b) for b in plan_batches(rows_for(["A"] * 7), batch_size=3)] == [3, 3, 1]


@pytest.mark.parametrize("size", [0, 26, -1])
def test_plan_rejects_batch_sizes_outside_1_to_25(size):
    with pytest.raises(ValueError, match="between 1 and 25"):
        plan_batches([], batch_size=size)


@given(st.lists(st.sampled_from("ABCDEFG"), max_size=300), st.integers(min_value=1, max_value=25))
def test_plan_never_exceeds_the_limit_never_mixes_and_loses_nothing(opportunities, size):
    rows = rows_for(opportunities)
    batches = plan_batches(rows, batch_size=size)
    assert all(1 <= len(b) <= size for b in batches)
    assert all(r.opportunity_id == b.opportunity_id for b in batches for r in b.rows)
    assert sorted(r.source_row for b in batches for r in b.rows) == [r.source_row for r in rows]
    counts = {opp: opportunities.count(opp) for opp in set(opportunities)}
    assert len(batches) == sum(math.ceil(n / size) for n in counts.values())
