"""The ledger's fast road for large reruns (issues 9 and 15): posted_keys, the index of every posted
row, and key_cache, the packed keys of the last files by fingerprint.

Both only save time: whatever they hold, `claim_file` must decide exactly what the row-by-row
road (`row_keys` + `resume`) decides. Real SQLite files in the test's folder, no mocks.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer import ledger as ledger_module
from importer.key_cache import account_context, fingerprint
from importer.ledger import (
    PACKED,
    POSTED_INDEX,
    Claim,
    Origin,
    Record,
    RowState,
    SqliteLedger,
    assign_keys,
    pack,
    packed_keys,
    unpack,
)
from importer.mapping import load_mapping
from importer.records import PlannedRow, Sheet
from importer.resume import Lookup, Resume, claim_file, resume, row_keys, row_origins
from importer.throttle import RateLimit, RateLimiter
from tests.test_ledger import HOST, ORG, claimable, open_ledger, planned


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledgers" / "account.sqlite"


class _NoReads:
    """No row of these tests has an unknown outcome: a look-up would be a mistake."""

    def activities_of_opportunity(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("a look-up was made")


def _lookup() -> Lookup:
    return Lookup(_NoReads(), RateLimiter(RateLimit(25, 1.0)), settle_s=0.0)  # type: ignore[arg-type]


def _origins(rows: list[PlannedRow], file: str = "visits.csv") -> dict[int, Origin]:
    return {row.source_row: Origin(file, row.source_row) for row in rows}


def _by_row_road(path: Path, rows: list[PlannedRow], file: str = "visits.csv") -> Resume:
    with SqliteLedger.open(path, HOST, ORG) as ledger:
        origins = _origins(rows, file)
        keys = row_keys(rows, origins, ledger)
        return resume(ledger, rows, keys, origins, _lookup())


def _fast_road(path: Path, rows: list[PlannedRow], file: str = "visits.csv", **kwargs: object) -> Resume:
    with SqliteLedger.open(path, HOST, ORG) as ledger:
        return claim_file(ledger, rows, _origins(rows, file), _lookup(), **kwargs)[1]  # type: ignore[arg-type]


def _copy(path: Path) -> Path:
    """A copy of a ledger with what its write-ahead log holds (a file copy would miss it)."""
    copy = path.with_suffix(".copy")
    source, target = sqlite3.connect(path), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return copy


def _decided(result: Resume) -> tuple[object, ...]:
    return (
        [row.source_row for row in result.to_send],
        result.skipped,
        dict(result.skipped_from),
        result.failed_before,
        [row.source_row for row in result.busy],
    )


def _state_ledger(path: Path, states: list[str]) -> list[PlannedRow]:
    """A ledger where row i of a file was left in states[i] by earlier runs (or never seen)."""
    rows = [planned(index + 2, f"note {index % 3}") for index in range(len(states))]  # some identical
    claimed = claimable(rows, "monday.csv")
    with open_ledger(path) as ledger:
        mine = [item for item, state in zip(claimed, states, strict=True) if state != "absent"]
        ledger.claim(mine)
        ledger.record(
            [
                Record(key, row, RowState.POSTED if state == "posted" else RowState.FAILED, "act")
                for (key, row, _), state in zip(claimed, states, strict=True)
                if state in ("posted", "failed")
            ]
        )
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # an older version's posts: rows table only
        for (key, _row, _), state in zip(claimed, states, strict=True):
            if state == "posted by an older version":
                db.execute(
                    "UPDATE rows SET state = 'posted', posted_at = '2026-11-30T20:00:00+00:00' "
                    "WHERE digest = ? AND occurrence = ?",
                    key,
                )
    return rows


_STATES = st.lists(
    st.sampled_from(["absent", "pending", "posted", "failed", "posted by an older version"]), max_size=14
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_STATES)
def test_the_fast_road_decides_what_the_row_by_row_road_decides(tmp_path, states):
    path = tmp_path / f"{abs(hash(tuple(states)))}.sqlite"
    path.unlink(missing_ok=True)
    rows = _state_ledger(path, states)
    copy = _copy(path)

    fast, by_row = _fast_road(path, rows, "tuesday.csv"), _by_row_road(copy, rows, "tuesday.csv")

    assert _decided(fast) == _decided(by_row)
    assert fast.skipped == sum(state.startswith("posted") for state in states)


def test_posted_among_gives_each_posted_row_its_file_and_day_and_nothing_else(path):
    rows = [planned(2, "a"), planned(3, "b"), planned(4, "c"), planned(5, "a")]
    claimed = claimable(rows, "monday.csv")
    with open_ledger(path) as ledger:
        ledger.claim(claimed)
        (key_a, row_a, _), (key_b, row_b, _), (key_c, row_c, _), _never = claimed
        ledger.record([Record(key_a, row_a, RowState.POSTED, "act-1"), Record(key_b, row_b, RowState.FAILED)])
        ledger.record([Record(key_c, row_c, RowState.SENDING)])
        where, places = ledger.posted_among(packed_keys(rows))  # type: ignore[misc]

    assert where.tolist()[1:] == [-1, -1, -1]
    assert places[where[0]][0] == "monday.csv"
    assert len(places[where[0]][1]) == len("2026-12-02")


def _first_of_two_posted(ledger: SqliteLedger) -> tuple[list[PlannedRow], list[tuple[object, ...]]]:
    """Two rows claimed in `ledger`, the first recorded posted."""
    rows = [planned(2, "a"), planned(3, "b")]
    claimed = claimable(rows)
    ledger.claim(claimed)
    ledger.record([Record(claimed[0][0], rows[0], RowState.POSTED, "act-1")])
    return rows, claimed  # type: ignore[return-value]


def test_an_older_ledger_gets_its_index_once_when_opened(path):
    with open_ledger(path) as ledger:
        rows, _claimed = _first_of_two_posted(ledger)
    with sqlite3.connect(path) as db:  # as an older version left it: no index at all
        db.execute("DELETE FROM posted_keys")
        db.execute("DELETE FROM meta WHERE key = ?", (POSTED_INDEX,))

    with open_ledger(path) as again:
        where, _places = again.posted_among(packed_keys(rows))  # type: ignore[misc]

    assert (where >= 0).tolist() == [True, False]


def test_resend_drops_the_index_so_a_row_whose_resend_failed_is_not_taken_for_posted(path):
    rows = [planned(2, "a")]
    claimed = claimable(rows)
    with open_ledger(path) as ledger:
        ledger.claim(claimed)
        ledger.record([Record(claimed[0][0], rows[0], RowState.POSTED, "act-1")])
    with open_ledger(path) as resending:
        resending.claim(claimed, resend=True)
        assert resending.posted_among(packed_keys(rows)) is None  # not usable meanwhile
        resending.record([Record(claimed[0][0], rows[0], RowState.FAILED, message="refused")])
    copy = _copy(path)

    assert _decided(_fast_road(path, rows)) == _decided(_by_row_road(copy, rows))
    assert [row.source_row for row in _fast_road(path, rows).to_send] == [2]


def test_chunks_of_posted_keys_are_merged_at_close_and_still_say_the_same(path, monkeypatch):
    monkeypatch.setattr(ledger_module, "COMPACT_FROM_CHUNKS", 3)
    rows = [planned(index, f"n{index}") for index in range(2, 12)]
    claimed = claimable(rows, "monday.csv")
    with open_ledger(path) as ledger:
        ledger.claim(claimed)
        for key, row, _ in claimed[:8]:  # one chunk per call, as the sender records them
            ledger.record([Record(key, row, RowState.POSTED, "act")])
        before = ledger.posted_among(packed_keys(rows))
    with sqlite3.connect(path) as db:
        chunks = db.execute("SELECT count(*) FROM posted_keys").fetchone()[0]
    with open_ledger(path) as again:
        after = again.posted_among(packed_keys(rows))

    assert chunks == 1
    assert before is not None
    assert after is not None
    assert [before[1][i] if i >= 0 else None for i in before[0].tolist()] == [
        after[1][i] if i >= 0 else None for i in after[0].tolist()
    ]
    assert (after[0] >= 0).sum() == 8


def test_the_key_cache_gives_back_a_files_keys_and_keeps_only_the_latest_files(path):
    rows = [planned(2, "a"), planned(3, "a")]
    packed = packed_keys(rows)
    with open_ledger(path) as ledger:
        assert ledger.cached_keys("one", 2) is None
        ledger.cache_keys("one", packed)
        for other in range(ledger_module.KEY_CACHE_ENTRIES):
            ledger.cache_keys(f"other-{other}", packed[:1])
        cached_after_others = ledger.cached_keys("one", 2)
    with open_ledger(path) as again:
        again.cache_keys("one", packed)
        assert again.cached_keys("one", 3) is None  # keys for another number of rows: not these
        assert np.array_equal(again.cached_keys("one", 2), packed)  # type: ignore[arg-type]

    assert cached_after_others is None  # pushed out by eight newer files
    assert list(assign_keys(rows).values())[1].occurrence == 1


@pytest.mark.parametrize("resend", [False, True])
def test_claim_file_keeps_the_keys_it_computed_under_the_fingerprint(path, resend):
    rows = [planned(2, "a"), planned(3, "b")]
    with open_ledger(path) as ledger:
        keys, _ = claim_file(ledger, rows, _origins(rows), _lookup(), resend=resend, fingerprint="f1")
        cached = ledger.cached_keys("f1", 2)

    assert cached is not None
    assert np.array_equal(cached, packed_keys(rows))
    assert keys == assign_keys(rows)


# --- the fingerprint: every input of a file's keys changes it


def _fingerprint_inputs(tmp_path: Path) -> dict[str, object]:
    source = tmp_path / "visits.csv"
    source.write_text("Opportunity ID,Note\nopp-1,a\nopp-1,b\n", encoding="utf-8")
    mapping = load_mapping_text(tmp_path, 'note: {column: "Note"}')
    return {
        "input_path": source,
        "sheet": None,
        "mapping": mapping,
        "context": account_context({201: "activity type 201"}, None),
        "rows": [planned(2, "a"), planned(3, "b")],
    }


def load_mapping_text(tmp_path: Path, note: str) -> object:
    path = tmp_path / f"mapping-{len(list(tmp_path.glob('mapping-*')))}.yaml"
    path.write_text(
        'activity_event: {value: 201}\nopportunity_id: {column: "Opportunity ID"}\n'
        f"owner_email: {{value: asha@example.com}}\n{note}\n",
        encoding="utf-8",
    )
    return load_mapping(path)


@pytest.mark.parametrize(
    "change",
    ["file bytes", "sheet", "mapping", "account metadata", "event code", "opportunity found", "rows kept"],
)
def test_the_fingerprint_changes_with_each_thing_the_keys_are_made_of(tmp_path, change):
    inputs = _fingerprint_inputs(tmp_path)
    before = fingerprint(**inputs)  # type: ignore[arg-type]
    if change == "file bytes":
        inputs["input_path"].write_text("Opportunity ID,Note\nopp-1,a\nopp-1,c\n", encoding="utf-8")  # type: ignore[union-attr]
    elif change == "sheet":
        inputs["sheet"] = "Visits"
    elif change == "mapping":
        inputs["mapping"] = load_mapping_text(tmp_path, 'note: {template: "{Note} (visit)"}')
    elif change == "account metadata":
        inputs["context"] = account_context({201: "activity type 201, its options renamed"}, None)
    elif change == "event code":
        inputs["context"] = account_context({201: "activity type 201"}, 201)
    elif change == "opportunity found":  # a look-up found another opportunity for row 3
        inputs["rows"] = [planned(2, "a"), planned(3, "b", opportunity="opp-2")]
    else:
        inputs["rows"] = [planned(2, "a")]
    assert fingerprint(**inputs) != before  # type: ignore[arg-type]


def test_a_file_that_cannot_be_read_again_has_no_fingerprint(tmp_path):
    inputs = _fingerprint_inputs(tmp_path)
    inputs["input_path"] = tmp_path / "gone.csv"
    assert fingerprint(**inputs) is None  # type: ignore[arg-type]


# --- claims of new rows deferred to their call


def _held(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM rows").fetchone()[0])


def test_new_rows_claimed_with_defer_are_written_only_when_their_call_is_made(path):
    rows = claimable([planned(2, "a"), planned(3, "b"), planned(4, "c")])
    with open_ledger(path) as ledger:
        claims = ledger.claim(rows, defer=True)[0]
        before = _held(path)
        lost = ledger.claim_deferred([rows[0][0], rows[1][0]])  # the first call's rows
        after_first_call = _held(path)
        again = ledger.claim_deferred([rows[0][0]])  # already written: nothing to do

    assert set(claims.values()) == {Claim.SEND}
    assert (before, after_first_call) == (0, 2)
    assert lost == set()
    assert again == set()
    assert _held(path) == 2  # the row never sent left no trace: the next run sends it


def test_a_deferred_row_another_run_wrote_first_is_left_to_that_run(path):
    rows = claimable([planned(2, "a"), planned(3, "b")])
    first, second = open_ledger(path), open_ledger(path)
    try:
        first.claim(rows, defer=True)
        second.claim(rows, defer=True)  # both saw two new rows
        assert second.claim_deferred([rows[1][0]]) == set()  # the second run's call goes first
        lost = first.claim_deferred([key for key, _, _ in rows])
        taken = second.claimed_by_others([rows[0][0]]), first.claimed_by_others([rows[1][0]])
    finally:
        first.close()
        second.close()

    assert lost == {rows[1][0]}
    assert taken == ({rows[0][0]}, {rows[1][0]})  # each run's row is busy for the other


def test_a_row_another_run_posts_between_the_index_and_the_claim_is_not_sent_again(path):
    # claim_file reads posted_keys, then the unsettled rows, and defers the rest without a search:
    # a row posted meanwhile is in neither, and its deferred claim must find it written
    rows = claimable([planned(2, "a"), planned(3, "b"), planned(4, "c")])
    (key_a, row_a, _), (key_b, row_b, _), (key_c, _row_c, _) = rows
    origins = {row.source_row: origin for _key, row, origin in rows}
    first, other = open_ledger(path), open_ledger(path)
    try:
        other.claim([rows[2]])  # pending in the ledger, its outcome being awaited by the other run
        where, _places = first.posted_among(packed_keys([row for _, row, _ in rows]))  # type: ignore[misc]
        held = first.unsettled_keys()
        other.claim([rows[0]])
        other.record([Record(key_a, row_a, RowState.POSTED, "act-1")])  # meanwhile
        first.defer(np.array([pack(key_a), pack(key_b)], dtype=PACKED), [row_a, row_b], origins)
        lost = first.claim_deferred([key_a, key_b])
    finally:
        first.close()
        other.close()

    assert where.tolist() == [-1, -1, -1]
    assert [unpack(item) for item in held] == [key_c]  # unsettled: seen, and claimed as usual
    assert lost == {key_a}  # the posted row is left to the run that posted it
    with open_ledger(path) as after:
        entries = after.entries([key_a, key_b])
    assert entries[key_a].state is RowState.POSTED
    assert entries[key_b].state is RowState.PENDING  # written when its call was made
    assert entries[key_b].origin == Origin("visits.csv", 3)


def test_a_post_written_without_the_index_makes_it_untrusted_until_rebuilt(path):
    # an older version updates `rows` alone: the ledger's trigger marks posted_keys out of date,
    # so no run takes that posted row for new; the next open indexes it
    with open_ledger(path) as ledger:
        rows, claimed = _first_of_two_posted(ledger)
        assert ledger.posted_among(packed_keys(rows)) is not None  # record keeps the index trusted
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE rows SET state = 'posted' WHERE digest = ? AND occurrence = ?", claimed[1][0])
        stale = ledger.posted_among(packed_keys(rows))

    with open_ledger(path) as again:
        where, _places = again.posted_among(packed_keys(rows))  # type: ignore[misc]

    assert stale is None
    assert (where >= 0).tolist() == [True, True]


def test_a_files_own_origins_are_made_when_asked_and_only_for_its_rows(tmp_path):
    frame = pd.DataFrame({"Note": ["a", "b"]}, dtype=str)
    sheet = Sheet(path=tmp_path / "visits.csv", headers=["Note"], frame=frame, source_rows=[2, 5])

    origins = row_origins(sheet, tmp_path / "in" / "visits.csv")

    assert dict(origins) == {2: Origin("visits.csv", 2), 5: Origin("visits.csv", 5)}
    assert 3 not in origins
    with pytest.raises(KeyError):
        origins[3]


@pytest.mark.parametrize(
    ("search_from", "read_whole_from", "prefixes_kept"),
    [(2, 0, True), (2, 64, True), (2, 64, False), (10**9, 64, True)],
    ids=[
        "only matching keys read, by their prefixes",
        "keys read whole, prefixes kept",
        "big chunks of a version that kept no prefixes",
        "small chunks merged",
    ],
)
def test_posted_among_finds_each_posted_row_in_every_kind_of_chunk(
    path, monkeypatch, search_from, read_whole_from, prefixes_kept
):
    # big compacted chunks are searched alone in their sorted order, small ones merged: the same answer
    monkeypatch.setattr(ledger_module, "_SEARCH_FROM", search_from)
    monkeypatch.setattr(ledger_module, "_READ_WHOLE_FROM_SHARE", read_whole_from)
    monkeypatch.setattr(ledger_module, "COMPACT_FROM_CHUNKS", 2)
    rows = [planned(index + 2, f"note {index % 7}", f"opp-{index % 3}") for index in range(40)]
    claimed = claimable(rows, "monday.csv")
    posted = set(range(0, 40, 3)) | {1, 2}
    with open_ledger(path) as ledger:
        ledger.claim(claimed)
        for start in range(0, 30, 5):  # a call's rows at a time: one chunk each, compacted at close
            ledger.record(
                [
                    Record(*claimed[i][:2], RowState.POSTED, "a")
                    for i in range(start, start + 5)
                    if i in posted
                ]
            )
    with open_ledger(path) as again:  # and some posted after the compaction: small chunks again
        again.record([Record(*claimed[i][:2], RowState.POSTED, "a") for i in range(30, 40) if i in posted])
        if not prefixes_kept:
            again._db.execute("DELETE FROM posted_prefixes")
        kept = again._db.execute("SELECT count(*) FROM posted_prefixes").fetchone()[0]
        where, places = again.posted_among(packed_keys([*rows, planned(99, "never")]))  # type: ignore[misc]

    assert [index for index, place in enumerate(where.tolist()) if place >= 0] == sorted(posted)
    assert {places[place][0] for place in where.tolist() if place >= 0} == {"monday.csv"}
    assert bool(kept) == (prefixes_kept and search_from == 2)


def test_rows_deferred_from_two_files_are_written_each_with_its_own_origin(path):
    monday, tuesday = claimable([planned(2, "a")], "monday.csv"), claimable([planned(2, "b")], "tuesday.csv")
    with open_ledger(path) as ledger:
        for ((key, row, origin),) in (monday, tuesday):
            ledger.defer(np.array([pack(key)], dtype=PACKED), [row], {row.source_row: origin})
        assert ledger.claim_deferred([tuesday[0][0], monday[0][0]]) == set()
        entries = ledger.entries([monday[0][0], tuesday[0][0]])

    assert entries[monday[0][0]].origin == Origin("monday.csv", 2)
    assert entries[tuesday[0][0]].origin == Origin("tuesday.csv", 2)
