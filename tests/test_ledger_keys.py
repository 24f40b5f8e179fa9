"""A row's identity in the ledger stays what every earlier version wrote: the SHA-256 of the
canonical JSON of [opportunity id, body]; a changed text would post every row of a rerun again."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importer.ledger import (
    PACKED,
    LazyKeys,
    RowKey,
    _by_prefix,
    _positions_sorted,
    _prefix,
    assign_keys,
    canonical_bytes,
    key_positions,
    pack,
    packed_keys,
    unpack,
)
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


# any text at all, lone surrogates included (which neither writer can put in UTF-8)
_ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=12)
_ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(_ANY_TEXT, st.dictionaries(_ANY_TEXT, _ANY_VALUE, max_size=6))
def test_the_canonical_bytes_are_the_standard_librarys_for_any_text_and_nesting(opportunity, body):
    # orjson writes the text for speed: it must be byte for byte what json.dumps wrote, or every
    # ledger already written would take its rows for new ones
    reference = json.dumps([opportunity, body], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    try:
        expected = reference.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            canonical_bytes(opportunity, body)  # type: ignore[arg-type]
        return
    assert canonical_bytes(opportunity, body) == expected  # type: ignore[arg-type]
    [key] = assign_keys([PlannedRow(2, opportunity, body)]).values()  # type: ignore[arg-type]
    assert key.digest == hashlib.sha256(expected).hexdigest()


def test_the_canonical_text_is_pinned():
    body = {
        "ActivityOwnerEmail": "a@example.com",
        "ActivityEvent": 201,
        "Fields": [{"Value": "1", "SchemaName": "mx"}],
    }
    [key] = assign_keys([PlannedRow(2, "opp", body)]).values()  # type: ignore[list-item]
    text = '["opp",{"ActivityEvent":201,"ActivityOwnerEmail":"a@example.com","Fields":[{"SchemaName":"mx","Value":"1"}]}]'
    assert key == RowKey(hashlib.sha256(text.encode()).hexdigest(), 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["opp-1", "opp-2"]), _BODY), max_size=12))
def test_packed_keys_are_the_same_keys_in_row_order(items):
    rows = [PlannedRow(index + 2, opportunity, body) for index, (opportunity, body) in enumerate(items)]
    keys = assign_keys(rows)
    packed = packed_keys(rows)
    assert [unpack(item) for item in packed] == [keys[row.source_row] for row in rows]
    assert [pack(keys[row.source_row]) for row in rows] == [item.ljust(36, b"\0") for item in packed]


@given(st.binary(min_size=32, max_size=32), st.integers(0, 2**32 - 1))
def test_a_packed_key_unpacks_whole_even_when_it_ends_in_zero_bytes(digest, occurrence):
    # numpy drops an S36 item's trailing zero bytes: a digest ending in 00 with occurrence 0 must survive
    key = RowKey(digest.hex(), occurrence)
    item = np.array([pack(key)], dtype=PACKED)[0]
    assert unpack(item) == key


_PACKED_KEY = st.builds(
    lambda head, tail, occurrence: head + tail + occurrence.to_bytes(4, "little"),
    st.sampled_from([b"\0" * 8, b"\1" * 8, b"\xff" * 8]),  # few heads: keys that share 8 bytes
    st.binary(min_size=24, max_size=24),
    st.integers(0, 3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PACKED_KEY, max_size=30), st.lists(_PACKED_KEY, max_size=30), st.randoms())
def test_positions_find_exactly_the_keys_held(held, wanted, random):
    wanted = wanted + random.sample(held, min(len(held), 5))  # some surely held
    held_array, wanted_array = np.array(held, dtype=PACKED), np.array(wanted, dtype=PACKED)
    found = key_positions(held_array, wanted_array)
    for key, position in zip(wanted, found.tolist(), strict=True):
        if key in held:
            assert position >= 0
            assert held[position] == key
        else:
            assert position == -1


@settings(max_examples=300, deadline=None)
@given(st.lists(_PACKED_KEY, max_size=30), st.lists(_PACKED_KEY, max_size=30), st.randoms())
def test_a_search_in_keys_kept_sorted_finds_exactly_the_keys_held(held, wanted, random):
    # a compacted chunk of posted_keys is written sorted by prefix and searched as it is
    wanted = wanted + random.sample(held, min(len(held), 5))
    held_sorted = np.frombuffer(_by_prefix(b"".join(held)), dtype=PACKED)
    prefix = _prefix(held_sorted)
    wanted_array = np.array(wanted, dtype=PACKED)
    found = _positions_sorted(held_sorted, prefix, wanted_array, _prefix(wanted_array))

    assert bool(np.all(prefix[1:] >= prefix[:-1]))
    assert sorted(held_sorted.tolist()) == sorted(np.array(held, dtype=PACKED).tolist())
    for key, position in zip(wanted, found.tolist(), strict=True):
        if key in held:
            assert position >= 0
            assert held_sorted[position] == np.array([key], dtype=PACKED)[0]
        else:
            assert position == -1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["opp-1", "opp-2"]), _BODY), max_size=12))
def test_lazy_keys_are_the_keys_of_their_rows(items):
    # a nightly file's keys are made as their calls are made: the same keys, by source row
    rows = [PlannedRow(index * 3 + 2, opportunity, body) for index, (opportunity, body) in enumerate(items)]
    lazy = LazyKeys([row.source_row for row in rows], packed_keys(rows))

    assert dict(lazy) == assign_keys(rows)
    assert len(lazy) == len(rows)
    assert 1 not in lazy
    with pytest.raises(KeyError):
        lazy[1]
