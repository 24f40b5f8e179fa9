from __future__ import annotations

import sqlite3

import pytest
from importer.journal import (
    Journal,
    JournalBusyError,
    KeysOnDemand,
    RowState,
    assign_keys,
    default_journal_path,
)

from importer.errors import UsageError
from importer.records import PlannedRow

HOST = "https://api-in21.leadsquared.com"


def planned(source_row: int, opp: str = "OPP-1", note: str = "n") -> PlannedRow:
    return PlannedRow(
        source_row, opp, {"ActivityEvent": 201, "ActivityOwnerEmail": "a@b.co", "ActivityNote": note}
    )


def test_keys_count_identical_rows_instead_of_collapsing_them():
    rows = [planned(2), planned(3), planned(4, note="other"), planned(5)]
    keys = assign_keys(rows)
    assert [keys[n].occurrence for n in (2, 3, 4, 5)] == [0, 1, 0, 2]
    assert keys[2].digest == keys[3].digest == keys[5].digest != keys[4].digest


def test_keys_do_not_depend_on_row_position():
    assert assign_keys([planned(2)])[2] == assign_keys([planned(40)])[40]
    assert assign_keys([planned(2, opp="A")])[2] != assign_keys([planned(2, opp="B")])[2]


def test_journal_records_and_reads_back_states(tmp_path):
    rows = [planned(2), planned(3, note="x")]
    keys = assign_keys(rows)
    with Journal.open(tmp_path / "j.sqlite", HOST) as journal:
        journal.record([(keys[2], rows[0], RowState.SENDING, None, None)])
        journal.record(
            [
                (keys[2], rows[0], RowState.POSTED, "act-1", None),
                (keys[3], rows[1], RowState.UNKNOWN, None, "timeout"),
            ]
        )
    with Journal.open(tmp_path / "j.sqlite", HOST) as journal:
        assert journal.states(keys.values()) == {
            keys[2]: (RowState.POSTED, "act-1"),
            keys[3]: (RowState.UNKNOWN, None),
        }
        assert journal.states([assign_keys([planned(2, note="never recorded")])[2]]) == {}


def test_journal_tells_what_an_opportunity_already_holds(tmp_path):
    rows = [planned(2), planned(3, note="x"), planned(4, note="y"), planned(5, opp="OPP-2")]
    other_event = PlannedRow(6, "OPP-1", {**rows[0].body, "ActivityEvent": 202})
    keys = assign_keys([*rows, other_event])
    with Journal.open(tmp_path / "j.sqlite", HOST) as journal:
        journal.record(
            [
                (keys[2], rows[0], RowState.POSTED, "act-1", None),
                (keys[3], rows[1], RowState.POSTED, None, None),  # a count-only reply: no id
                (keys[4], rows[2], RowState.UNKNOWN, None, None),
                (keys[5], rows[3], RowState.POSTED, "act-5", None),
                (keys[6], other_event, RowState.POSTED, "act-6", None),
            ]
        )
        assert journal.posted_on("OPP-1", 201) == ({"act-1"}, [rows[1].body])
        assert journal.posted_on("OPP-2", 201) == ({"act-5"}, [])
        assert journal.posted_on("OPP-3", 201) == (set(), [])


def test_journal_keeps_a_known_activity_id_when_a_later_state_has_none(tmp_path):
    row = planned(2)
    key = assign_keys([row])[2]
    with Journal.open(tmp_path / "j.sqlite", HOST) as journal:
        journal.record([(key, row, RowState.POSTED, "act-9", None)])
        journal.record([(key, row, RowState.POSTED, None, None)])
        assert journal.states([key]) == {key: (RowState.POSTED, "act-9")}


def test_journal_refuses_a_second_run_at_once_and_stays_intact(tmp_path):
    path = tmp_path / "j.sqlite"
    row = planned(2)
    key = assign_keys([row])[2]
    with Journal.open(path, HOST) as first:
        first.record([(key, row, RowState.POSTED, "a", None)])
        with pytest.raises(JournalBusyError, match="another lsq-import run is using this journal"):
            Journal.open(path, HOST)
        first.record([(key, row, RowState.POSTED, "a", None)])
    with Journal.open(path, HOST) as again:
        assert again.states([key]) == {key: (RowState.POSTED, "a")}
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_journal_belongs_to_one_host(tmp_path):
    Journal.open(tmp_path / "j.sqlite", HOST).close()
    with pytest.raises(UsageError, match="records imports to https://api-in21"):
        Journal.open(tmp_path / "j.sqlite", "https://api-us11.leadsquared.com")


def test_journal_rejects_a_file_that_is_not_a_journal(tmp_path):
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(UsageError, match="not a usable lsq-import journal"):
        Journal.open(path, HOST)


def test_default_journal_path_is_per_input_mapping_and_host(tmp_path):
    env = {"LSQ_IMPORT_STATE_DIR": str(tmp_path)}
    a = default_journal_path(tmp_path / "visits.xlsx", tmp_path / "m.yaml", HOST, env)
    assert a.parent == tmp_path / "journals"
    assert a.name.startswith("visits-")
    assert a == default_journal_path(tmp_path / "visits.xlsx", tmp_path / "m.yaml", HOST, env)
    assert a != default_journal_path(tmp_path / "visits.xlsx", tmp_path / "other.yaml", HOST, env)
    assert a != default_journal_path(tmp_path / "visits.xlsx", tmp_path / "m.yaml", "http://127.0.0.1:1", env)


def test_keys_on_demand_number_rows_as_assign_keys_when_asked_in_sending_order():
    rows = [
        planned(2, "A"),
        planned(3, "B"),
        planned(4, "A"),
        planned(5, "A", note="x"),
        planned(6, "B"),
        planned(7, "A"),
    ]
    expected = assign_keys(rows)
    lazy = KeysOnDemand(rows)
    # the sender sends opportunity B's rows first here, each opportunity's rows in input order
    sending_order = [3, 6, 2, 4, 5, 7]
    assert [lazy[n] for n in sending_order] == [expected[n] for n in sending_order]
    assert lazy[2] is lazy[2]  # asked again (a retry, then the outcome): the same key
    assert dict(lazy) == expected


def test_journal_is_empty_until_a_row_is_recorded(tmp_path):
    rows = [planned(2)]
    with Journal.open(tmp_path / "j.sqlite", HOST) as journal:
        assert journal.is_empty()
        journal.record([(assign_keys(rows)[2], rows[0], RowState.SENDING, None, None)])
        assert not journal.is_empty()
