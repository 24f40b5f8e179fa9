"""A row's identity in the ledger stays what every earlier version wrote: the SHA-256 of the
canonical JSON of [opportunity id, body]; a changed text would post every row of a rerun again."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from importer.ledger import RowKey, assign_keys
from importer.records import PlannedRow

_TEXT = st.text(alphabet='aZ09 .@-"\\é\n\u2028\x00\u200b', max_size=8)
_BODY = st.fixed_dictionaries(
    {"ActivityEvent": st.integers(0, 500), "ActivityOwnerEmail": _TEXT},
    optional={
        "ActivityNote": _TEXT,
        "ActivityDateTime": _TEXT,
        "Fields": st.lists(st.fixed_dictionaries({"SchemaName": _TEXT, "Value": _TEXT}), max_size=3),
        "ValidateDropDownOptions": st.booleans(),
    },
)


def _reference(opportunity_id: str, body: object) -> str:
    text = json.dumps([opportunity_id, body], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["opp-1", "opp-2", 'ü"x']), _BODY), max_size=12))
def test_keys_are_the_digest_of_the_canonical_json_counted_with_multiplicity(items):
    rows = [PlannedRow(index + 2, opportunity, body) for index, (opportunity, body) in enumerate(items)]
    keys = assign_keys(rows)
    seen: dict[str, int] = {}
    for row in rows:
        digest = _reference(row.opportunity_id, row.body)
        assert keys[row.source_row] == RowKey(digest, seen.get(digest, 0))
        seen[digest] = seen.get(digest, 0) + 1


def test_the_canonical_text_is_pinned():
    body = {
        "ActivityOwnerEmail": "a@example.com",
        "ActivityEvent": 201,
        "Fields": [{"Value": "1", "SchemaName": "mx"}],
    }
    [key] = assign_keys([PlannedRow(2, "opp", body)]).values()  # type: ignore[list-item]
    text = '["opp",{"ActivityEvent":201,"ActivityOwnerEmail":"a@example.com","Fields":[{"SchemaName":"mx","Value":"1"}]}]'
    assert key == RowKey(hashlib.sha256(text.encode()).hexdigest(), 0)
