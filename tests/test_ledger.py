"""The account ledger (importer.ledger, issue 9): content keys, claims between runs, what a row
keeps, and one clear LedgerError for a ledger that cannot be read or written.

Everything runs on real SQLite files in the test's folder. Runs that must be other processes (a
run that dies, a run with a file-size limit) are real subprocesses; the full disk is SQLite's
own `max_page_count` or the kernel's RLIMIT_FSIZE, never a mock.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from importer.errors import ExitStatus, UsageError
from importer.ledger import (
    DEAD_AFTER_S,
    Claim,
    LedgerError,
    Origin,
    Record,
    RowKey,
    RowState,
    SqliteLedger,
    _process_started,
    account_name,
    assign_keys,
    content_digest,
    default_ledger_path,
)
from importer.records import ActivityBody, PlannedRow
from importer.sandbox import Sandbox
from tests.conftest import REPO
from tests.helpers import sandbox_env, write_csv
from tests.test_exactly_once import MAPPING, make_rows, stored, valid

HOST = "https://api-in21.leadsquared.com"
ORG = "10001"


def body(note: str, event: int = 201) -> ActivityBody:
    return {
        "ActivityEvent": event,
        "ActivityNote": note,
        "Fields": [{"SchemaName": "mx_Custom_1", "Value": note}],
    }


def planned(source_row: int, note: str, opportunity: str = "opp-1", event: int = 201) -> PlannedRow:
    return PlannedRow(source_row, opportunity, body(note, event))


def claimable(rows: list[PlannedRow], file: str = "visits.csv") -> list[tuple[RowKey, PlannedRow, Origin]]:
    keys = assign_keys(rows)
    return [(keys[row.source_row], row, Origin(file, row.source_row)) for row in rows]


def open_ledger(path: Path, host: str = HOST, org: str | None = ORG, **kwargs: object) -> SqliteLedger:
    return SqliteLedger.open(path, host, org, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledgers" / "account.sqlite"


# --- content keys


def test_assign_keys_counts_identical_rows_with_multiplicity():
    rows = [planned(2, "same"), planned(3, "other"), planned(4, "same"), planned(7, "same")]

    keys = assign_keys(rows)

    assert [keys[n].occurrence for n in (2, 4, 7)] == [0, 1, 2]
    assert keys[3].occurrence == 0
    assert keys[2].digest == keys[4].digest == keys[7].digest != keys[3].digest


def test_content_digest_depends_on_opportunity_and_payload_only():
    a = content_digest("opp-1", body("visit"))
    assert a == content_digest("opp-1", body("visit"))
    assert a != content_digest("opp-2", body("visit"))
    assert a != content_digest("opp-1", body("visit", event=202))
    assert a != content_digest("opp-1", body("visit "))  # exact payload: one space is another row


@pytest.mark.parametrize(
    "payload",
    [
        body("visit"),
        {"ActivityEvent": 201, "ActivityNote": 'Ünïcødé "quoted" \\ back\nline \u20b9 \U0001f600'},
        {"ActivityEvent": 201, "ValidateDropDownOptions": True, "Fields": []},
        {
            "ActivityNote": "",
            "ActivityEvent": 0,
            "ActivityOwnerEmail": "a@example.com",
            "Fields": [{"Value": "1", "SchemaName": "mx_B"}, {"SchemaName": "mx_A", "Value": ""}],
        },
    ],
    ids=["plain", "text that JSON escapes", "bool and empty list", "keys out of order"],
)
def test_assign_keys_digests_a_row_as_content_digest_does(payload):
    # the ledgers already written hold content_digest's digests: any faster path must agree with it
    row = PlannedRow(2, "opp-Ü", payload)

    assert assign_keys([row])[2].digest == content_digest("opp-Ü", payload)


def test_a_row_has_the_same_key_whatever_its_file_and_row_number(tmp_path):
    first = assign_keys([planned(2, "a"), planned(3, "b")])
    moved = assign_keys([planned(10, "x"), planned(11, "b"), planned(12, "a")])  # another file's rows

    assert moved[12] == first[2]
    assert moved[11] == first[3]


def test_the_default_path_is_one_ledger_per_account_whatever_the_host_spelling(tmp_path):
    environ = {"LSQ_IMPORT_STATE_DIR": str(tmp_path)}
    one = default_ledger_path("https://API-in21.LeadSquared.com/", ORG, environ)

    assert one == default_ledger_path("https://api-in21.leadsquared.com", ORG, environ)
    assert one == tmp_path / "ledgers" / "api-in21.leadsquared.com-10001.sqlite"
    assert one != default_ledger_path(HOST, "10002", environ)
    assert account_name("http://127.0.0.1:8080", None) == "127.0.0.1_8080"


# --- claims


def test_claim_sends_new_rows_and_skips_posted_ones(path):
    rows = claimable([planned(2, "a"), planned(3, "b"), planned(4, "a")])
    with open_ledger(path) as ledger:
        assert set(ledger.claim(rows)[0].values()) == {Claim.SEND}
        (key_a, row_a, _), (key_b, row_b, _), _third = rows
        ledger.record([Record(key_a, row_a, RowState.POSTED, "act-1"), Record(key_b, row_b, RowState.FAILED)])

    with open_ledger(path) as again:
        claims = again.claim(rows)[0]

    assert [claims[key] for key, _, _ in rows] == [Claim.POSTED, Claim.SEND, Claim.SEND]


def test_resend_claims_posted_and_uncertain_rows_to_send(path):
    rows = claimable([planned(2, "a"), planned(3, "b")])
    with open_ledger(path) as ledger:
        ledger.claim(rows)[0]
        ledger.record([Record(rows[0][0], rows[0][1], RowState.POSTED, "act-1")])
        ledger.record([Record(rows[1][0], rows[1][1], RowState.SENDING)])

    with open_ledger(path) as again:
        assert again.claim(rows, resend=True)[0] == {rows[0][0]: Claim.SEND, rows[1][0]: Claim.SEND}


def test_a_row_another_live_run_holds_is_busy_and_check_once_that_run_closed(path):
    rows = claimable([planned(2, "a"), planned(3, "b")])
    first = open_ledger(path)
    first.claim(rows)[0]
    first.record([Record(rows[0][0], rows[0][1], RowState.SENDING)])  # a request may be out
    second = open_ledger(path)  # another run on the same account, same file
    try:
        assert set(second.claim(rows)[0].values()) == {Claim.BUSY}
        assert second.claimed_by_others(key for key, _, _ in rows) == {rows[0][0], rows[1][0]}
        first.record([Record(rows[1][0], rows[1][1], RowState.POSTED, "act-3")])
        first.claim(rows[1:], resend=True)[0]  # claimed again to send again: still in LeadSquared, not busy
        assert second.claimed_by_others(key for key, _, _ in rows) == {rows[0][0]}
        first.record([Record(rows[1][0], rows[1][1], RowState.PENDING)])  # as a resending run would

        first.close()

        claims = second.claim(rows)[0]
        assert claims == {rows[0][0]: Claim.CHECK, rows[1][0]: Claim.SEND}  # 'sending' may have been created
        assert second.claimed_by_others(key for key, _, _ in rows) == set()
    finally:
        first.close()
        second.close()


def test_the_claim_of_a_run_that_died_is_checked_not_busy(path):
    # a real run in another process: claims, marks its row 'sending', dies without closing
    script = f"""
        from pathlib import Path
        import os
        from importer.ledger import Record, RowState, SqliteLedger, assign_keys, Origin
        from importer.records import PlannedRow
        row = PlannedRow(2, "opp-1", {json.dumps(body("a"))})
        key = assign_keys([row])[2]
        ledger = SqliteLedger.open(Path({str(path)!r}), {HOST!r}, {ORG!r})
        ledger.claim([(key, row, Origin("visits.csv", 2))])[0]
        ledger.record([Record(key, row, RowState.SENDING)])
        os._exit(0)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    rows = claimable([planned(2, "a")])

    with open_ledger(path) as ledger:
        assert ledger.claimed_by_others([rows[0][0]]) == set()
        assert ledger.claim(rows)[0] == {rows[0][0]: Claim.CHECK}


def _foreign_run(
    path: Path, run_id: str, *, host: str, pid: int, started: float | None, heartbeat: float
) -> None:
    """A run registered by another process (or machine), holding the row of note 'a' as 'sending'."""
    key = claimable([planned(2, "a")])[0][0]
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, '2026-12-01T00:00:00+00:00', ?, 0)",
            (run_id, pid, host, started, heartbeat),
        )
        db.execute(
            "UPDATE rows SET claim_run = ?, state = 'sending' WHERE digest = ? AND occurrence = ?",
            (run_id, key.digest, key.occurrence),
        )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("same machine, pid gone", Claim.CHECK),
        ("same machine, pid reused by another process", Claim.CHECK),
        ("same machine, alive", Claim.BUSY),
        ("other machine, heartbeat fresh", Claim.BUSY),
        ("other machine, heartbeat old", Claim.CHECK),
    ],
)
def test_a_claim_is_busy_only_while_its_run_is_alive(path, where, expected):
    rows = claimable([planned(2, "a")])
    with open_ledger(path) as setup:
        setup.claim(rows)[0]
    here, me = socket.gethostname(), os.getpid()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=False
    )
    run = {
        "same machine, pid gone": {
            "host": here,
            "pid": int(gone.stdout),
            "started": None,
            "heartbeat": time.time(),
        },
        "same machine, pid reused by another process": {
            "host": here,
            "pid": me,
            "started": 1.0,
            "heartbeat": time.time(),
        },
        "same machine, alive": {"host": here, "pid": me, "started": _process_started(me), "heartbeat": 0.0},
        "other machine, heartbeat fresh": {
            "host": "elsewhere",
            "pid": 1,
            "started": None,
            "heartbeat": time.time(),
        },
        "other machine, heartbeat old": {
            "host": "elsewhere",
            "pid": 1,
            "started": None,
            "heartbeat": time.time() - DEAD_AFTER_S - 1,
        },
    }[where]
    _foreign_run(path, "other-run", **run)  # type: ignore[arg-type]

    with open_ledger(path) as ledger:
        assert ledger.claim(rows)[0] == {rows[0][0]: expected}


# --- what a row keeps


def test_record_keeps_activity_id_time_origin_and_why_it_failed(path):
    rows = claimable([planned(2, "a"), planned(3, "b"), planned(4, "c")], file="visits-2026-12-01.csv")
    (ka, ra, _), (kb, rb, _), (kc, _, _) = rows
    with open_ledger(path) as ledger:
        ledger.claim(rows)[0]
        ledger.record([Record(ka, ra, RowState.SENDING), Record(kb, rb, RowState.SENDING)])
        ledger.record(
            [
                Record(ka, ra, RowState.POSTED, "act-1"),
                Record(kb, rb, RowState.FAILED, message="Invalid lead ID"),
            ]
        )
        ledger.record([Record(ka, ra, RowState.POSTED)])  # a later write without the id keeps it
        failed_at = ledger.entries([kb])[kb].failed_at
        ledger.record([Record(kb, rb, RowState.FAILED)])  # failed again: the message of the first stays

        entries = ledger.entries([ka, kb, kc, RowKey("nothing", 0)])
        ledger.record([Record(kb, rb, RowState.SENDING)])  # sent again: when it failed before is kept
        assert ledger.entries([kb])[kb].failed_at == failed_at is not None

    a, b, c = entries[ka], entries[kb], entries[kc]
    assert RowKey("nothing", 0) not in entries
    assert (a.state, a.activity_id, a.origin) == (
        RowState.POSTED,
        "act-1",
        Origin("visits-2026-12-01.csv", 2),
    )
    assert a.posted_at is not None
    assert a.posted_at.startswith(time.strftime("%Y-", time.gmtime()))
    assert (b.state, b.message, b.origin) == (
        RowState.FAILED,
        "Invalid lead ID",
        Origin("visits-2026-12-01.csv", 3),
    )
    assert b.failed_at is not None
    assert b.posted_at is None
    assert (c.state, c.activity_id, c.posted_at) == (RowState.PENDING, None, None)


def test_a_row_keeps_its_first_origin_when_another_file_claims_it(path):
    with open_ledger(path) as ledger:
        first = claimable([planned(2, "a")], file="monday.csv")
        ledger.claim(first)[0]
        ledger.claim(claimable([planned(9, "a")], file="tuesday.csv"))[0]

        assert ledger.entries([first[0][0]])[first[0][0]].origin == Origin("monday.csv", 2)


def test_find_origins_finds_a_row_by_digest_file_and_row(path):
    rows = claimable([planned(2, "a"), planned(3, "a")], file="visits.csv")
    with open_ledger(path) as ledger:
        ledger.claim(rows)[0]
        digest = rows[0][0].digest

        found = ledger.find_origins(
            [
                (digest, Origin("visits.csv", 3)),
                (digest, Origin("visits.csv", 4)),
                ("other", Origin("visits.csv", 2)),
            ]
        )

    assert found == {(digest, Origin("visits.csv", 3)): RowKey(digest, 1)}


def test_posted_on_gives_ids_and_the_bodies_posted_without_one(path):
    rows = claimable(
        [
            planned(2, "a"),
            planned(3, "b"),
            planned(4, "c"),
            planned(5, "d", event=202),
            planned(6, "e", "opp-2"),
            planned(7, "f"),
            planned(8, "g"),
        ]
    )
    with open_ledger(path) as ledger:
        ledger.claim(rows)[0]
        ledger.record(
            [Record(k, r, RowState.POSTED, f"act-{r.source_row}") for k, r, _ in rows if r.source_row < 7]
        )
        ledger.record([Record(rows[1][0], rows[1][1], RowState.FAILED)])  # rejected: not in LeadSquared
        count_only = [Record(k, r, RowState.POSTED) for k, r, _ in rows[5:]]  # a count-only reply: no ids
        ledger.record(count_only[::-1])

        ids, bodies = ledger.posted_on("opp-1", 201)
        nothing = ledger.posted_on("opp-9", 201)

    assert ids == {"act-2", "act-4"}
    assert bodies == [body("f"), body("g")]  # oldest first: the order they were claimed in
    assert nothing == (set(), [])


# --- opening: the wrong account, a damaged file, an old journal


@pytest.mark.parametrize(
    ("host", "org", "other"),
    [
        ("https://api-in22.leadsquared.com", ORG, "api-in22.leadsquared.com-10001"),
        (HOST, "20002", "api-in21.leadsquared.com-20002"),
    ],
    ids=["another host", "another org"],
)
def test_a_ledger_of_another_account_is_a_usage_error_naming_both(path, host, org, other):
    open_ledger(path).close()

    with pytest.raises(UsageError) as caught:
        open_ledger(path, host, org)

    message = str(caught.value)
    assert str(path) in message
    assert "api-in21.leadsquared.com-10001" in message
    assert other in message


def test_the_same_account_typed_another_way_opens_the_same_ledger(path):
    rows = claimable([planned(2, "a")])
    with open_ledger(path) as ledger:
        ledger.claim(rows)[0]
        ledger.record([Record(rows[0][0], rows[0][1], RowState.POSTED, "act-1")])

    with open_ledger(path, "https://API-in21.LeadSquared.com/") as again:
        assert again.claim(rows)[0] == {rows[0][0]: Claim.POSTED}


@pytest.mark.parametrize(
    ("content", "advice"),
    [
        (b"", "the ledger is empty (0 bytes)"),
        (b"this is not a database, it was overwritten " * 200, "the file is damaged"),
    ],
    ids=["0 bytes", "garbage"],
)
def test_an_empty_or_garbage_file_is_a_ledger_error_naming_the_path(path, content, advice):
    path.parent.mkdir(parents=True)
    path.write_bytes(content)

    with pytest.raises(LedgerError) as caught:
        open_ledger(path)

    assert str(path) in str(caught.value)
    assert advice in str(caught.value)
    assert caught.value.exit_status is ExitStatus.LEDGER_ERROR
    assert path.read_bytes() == content  # never overwritten as a new ledger


def test_an_old_journal_given_as_the_ledger_is_refused(path):
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('host', ?), ('schema', '1')", (HOST,))

    with pytest.raises(LedgerError, match="not an lsq-import ledger"):
        open_ledger(path)


def test_a_ledger_that_cannot_be_created_is_a_ledger_error_naming_the_path():
    # tests run as root, so a read-only folder would still be written; /proc refuses new files to anyone
    path = Path("/proc/self/lsq-ledger.sqlite")

    with pytest.raises(LedgerError) as caught:
        open_ledger(path)

    assert str(path) in str(caught.value)
    assert "check the file and its folder" in str(caught.value)  # SQLite says "unable to open database file"


def _old_journal(folder: Path, name: str, host: str, rows: list[tuple[PlannedRow, str, str | None]]) -> Path:
    """A per-file journal as versions before the ledger wrote it (schema 1, meta 'host')."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    keys = assign_keys([row for row, _, _ in rows])
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE rows (digest TEXT NOT NULL, occurrence INTEGER NOT NULL, opportunity_id TEXT NOT NULL,"
            " body TEXT NOT NULL, state TEXT NOT NULL, activity_id TEXT, message TEXT, source_row INTEGER,"
            " updated_at TEXT NOT NULL, PRIMARY KEY (digest, occurrence));"
        )
        db.execute("INSERT INTO meta VALUES ('host', ?), ('schema', '1')", (host,))
        for row, state, activity_id in rows:
            key = keys[row.source_row]
            db.execute(
                "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, NULL, ?, '2026-11-30T20:00:00+00:00')",
                (
                    key.digest,
                    key.occurrence,
                    row.opportunity_id,
                    json.dumps(row.body),
                    state,
                    activity_id,
                    row.source_row,
                ),
            )
    return path


def test_old_per_file_journals_of_the_host_are_adopted_once_into_a_new_ledger(tmp_path, path):
    environ = {"LSQ_IMPORT_STATE_DIR": str(tmp_path / "state")}
    journals = tmp_path / "state" / "journals"
    posted, sending, failed, elsewhere = planned(2, "a"), planned(3, "b"), planned(4, "c"), planned(5, "z")
    old = _old_journal(
        journals,
        "visits-0123456789ab.sqlite",
        HOST + "/",
        [(posted, "posted", "act-1"), (sending, "sending", None), (failed, "failed", None)],
    )
    _old_journal(
        journals, "other-ba9876543210.sqlite", "https://api.leadsquared.com", [(elsewhere, "posted", "act-9")]
    )
    (journals / "broken-000000000000.sqlite").write_bytes(b"not a database " * 100)  # told, not fatal
    rows = claimable([posted, sending, failed, elsewhere])

    with open_ledger(path, environ=environ) as ledger:
        claims = ledger.claim(rows)[0]
        entries = ledger.entries(key for key, _, _ in rows)

    assert [claims[key] for key, _, _ in rows] == [Claim.POSTED, Claim.CHECK, Claim.SEND, Claim.SEND]
    first = entries[rows[0][0]]
    assert (first.activity_id, first.origin, first.posted_at) == (
        "act-1",
        Origin("visits", 2),
        "2026-11-30T20:00:00+00:00",
    )
    assert entries[rows[1][0]].state is RowState.UNKNOWN

    # the ledger exists now: a journal changed later is not read again
    later = planned(6, "d")
    key = assign_keys([later])[6]
    with sqlite3.connect(old) as db:
        db.execute("UPDATE rows SET state = 'posted'")
        db.execute(
            "INSERT INTO rows VALUES (?, 0, 'opp-1', ?, 'posted', 'act-6', NULL, 6, '2026-12-01T20:00:00+00:00')",
            (key.digest, json.dumps(later.body)),
        )
    with open_ledger(path, environ=environ) as again:
        claims = again.claim([*rows, *claimable([later])])[0]
    assert (claims[rows[2][0]], claims[key]) == (Claim.SEND, Claim.SEND)


# --- a ledger that cannot be written mid-run


def test_a_full_ledger_mid_run_is_a_ledger_error_saying_the_disk_is_full(path):
    rows = claimable([planned(n, f"row {n}") for n in range(2, 40)])
    ledger = open_ledger(path)
    try:
        ledger.claim(rows)[0]
        ledger.record([Record(key, row, RowState.SENDING) for key, row, _ in rows[:5]])
        pages = ledger._db.execute("PRAGMA page_count").fetchone()[0]
        ledger._db.execute(
            f"PRAGMA max_page_count = {pages}"
        )  # SQLite's own limit: SQLITE_FULL, as a full disk

        with pytest.raises(LedgerError) as caught:
            ledger.record([Record(key, row, RowState.FAILED, message="x" * 20_000) for key, row, _ in rows])
    finally:
        ledger.close()

    assert str(path) in str(caught.value)
    assert "the disk is full" in str(caught.value)
    with open_ledger(path) as again:  # what was written before stays: nothing lost
        entries = again.entries(key for key, _, _ in rows)
    assert [entries[key].state for key, _, _ in rows[:6]] == [RowState.SENDING] * 5 + [RowState.PENDING]


_FILE_LIMITED = """
import resource, signal, sys
from pathlib import Path
from importer.ledger import LedgerError, Record, RowState, SqliteLedger, assign_keys, Origin
from importer.records import PlannedRow
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(), not a killed process
rows = [PlannedRow(n, "opp-1", {"ActivityEvent": 201, "ActivityNote": f"row {n}"}) for n in range(2, 400)]
keys = assign_keys(rows)
ledger = SqliteLedger.open(Path(sys.argv[1]), "https://api-in21.leadsquared.com", "10001")
ledger.claim([(keys[r.source_row], r, Origin("visits.csv", r.source_row)) for r in rows])[0]
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))
try:
    for row in rows:
        ledger.record([Record(keys[row.source_row], row, RowState.FAILED, message="x" * 4000)])
except LedgerError as exc:
    print(exc)
    sys.exit(4)
"""


def test_a_ledger_over_the_file_size_limit_is_one_ledger_error(path):
    done = subprocess.run(
        [sys.executable, "-c", _FILE_LIMITED, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 4, done.stdout + done.stderr
    assert str(path) in done.stdout
    assert "ulimit -f" in done.stdout
    assert "Traceback" not in done.stderr


# --- end to end: the CLI when the ledger fills its disk mid-run

ROWS = make_rows(300, seed=31, bad_every=25)  # 288 valid rows, 12 with a bad amount


@pytest.fixture
def night(tmp_path: Path):
    """A sandbox account, a 300-row file, and the command that imports it (state in tmp/state)."""
    source = write_csv(tmp_path / "visits.csv", ROWS)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    with Sandbox(rate_limit=(4000, 1.0)) as sandbox:
        env = {**os.environ, **sandbox_env(sandbox, tmp_path)}
        command = [sys.executable, "-m", "importer", "run", str(source), "--mapping", str(mapping)]
        command += ["--rate-limit", "4000/1", "--no-progress", "--settle-time", "0", "--batch-size", "5"]
        command += ["--summary-json", str(tmp_path / "summary.json")]
        yield sandbox, env, command


def _run(command: list[str], env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )  # type: ignore[call-overload]


def _assert_stopped_mid_run(
    full: subprocess.CompletedProcess[str], ledger: Path, advice: str, summary: Path
) -> None:
    """Exit 4, the ledger's trouble in the summary with its path and advice; sending stopped mid-run."""
    assert full.returncode == ExitStatus.LEDGER_ERROR, full.stdout + full.stderr
    written = json.loads(summary.read_text())
    assert written["exit_code"] == 4
    assert str(ledger) in written["ledger_problem"]
    assert advice in written["ledger_problem"]
    assert 0 < written["rows_posted"] < sum(valid(ROWS).values())  # it stopped mid-run


def _assert_told_once(full: subprocess.CompletedProcess[str], ledger: Path, advice: str) -> None:
    """One line names the ledger and the advice (mid-run, the closing lines on stdout); no traceback."""
    assert "Traceback" not in full.stderr, full.stderr
    said = (full.stdout + full.stderr).splitlines()
    assert len([line for line in said if str(ledger) in line and advice in line]) == 1, said


def _limit_file_size(limit: int):
    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited


LEDGER_LIMIT = 500 * 1024  # 300 rows: the claim (~350 KiB of WAL) fits, the writes while sending soon do not


def test_the_cli_stops_with_one_message_at_the_file_size_limit_and_a_rerun_finishes(tmp_path, night):
    sandbox, env, command = night

    full = _run(command, env, preexec_fn=_limit_file_size(LEDGER_LIMIT))

    (ledger,) = (tmp_path / "state" / "ledgers").glob("*.sqlite")
    _assert_stopped_mid_run(full, ledger, "file size limit (ulimit -f)", tmp_path / "summary.json")
    _assert_told_once(full, ledger, "file size limit (ulimit -f)")
    again = _run(command, env)
    assert again.returncode == ExitStatus.ROWS_FAILED, again.stderr  # the bad amounts, nothing else
    assert stored(sandbox) == valid(ROWS)
    assert json.loads((tmp_path / "summary.json").read_text())["rows_unknown"] == 0


def _can_mount_tmpfs(folder: Path) -> bool:
    """Whether this machine lets us mount a small tmpfs in a private mount namespace (root, Linux)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def test_the_cli_stops_with_one_message_on_a_full_disk_and_a_rerun_finishes(tmp_path, night):
    # a real full disk: the state folder is a 600 KiB tmpfs, seen only by the import's process
    sandbox, env, command = night
    state, saved = tmp_path / "state", tmp_path / "saved"
    state.mkdir()
    if not _can_mount_tmpfs(state):
        pytest.skip("cannot mount a tmpfs here (needs unshare and CAP_SYS_ADMIN)")
    # the tmpfs goes when its namespace ends: keep what the run left on it, as a disk would
    script = f'mount -t tmpfs -o size=600k tmpfs "$0" && "$@"; code=$?; cp -a "$0" {shlex.quote(str(saved))}; exit $code'

    full = _run(["unshare", "-m", "sh", "-c", script, str(state), *command], env)

    (ledger,) = (saved / "ledgers").glob("*.sqlite")
    told = state / "ledgers" / ledger.name  # the path the run saw
    _assert_stopped_mid_run(full, told, "the disk is full", tmp_path / "summary.json")
    again = _run(command, {**env, "LSQ_IMPORT_STATE_DIR": str(saved)})  # space freed: the same ledger
    assert again.returncode == ExitStatus.ROWS_FAILED, again.stderr  # the bad amounts, nothing else
    assert stored(sandbox) == valid(ROWS)
    assert json.loads((tmp_path / "summary.json").read_text())["rows_unknown"] == 0
    assert "Traceback" not in full.stderr, full.stderr  # the limiter beside the ledger fails quietly too
    _assert_told_once(full, told, "the disk is full")


def _open_together(path: Path, runs: int) -> tuple[list[SqliteLedger], list[BaseException]]:
    barrier = threading.Barrier(runs)
    ledgers: list[SqliteLedger] = []
    problems: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            ledgers.append(open_ledger(path))
        except Exception as exc:  # any failure to open is the finding
            problems.append(exc)

    threads = [threading.Thread(target=start) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ledgers, problems


def test_runs_starting_together_on_a_new_ledger_all_open_it(tmp_path):
    """The ledger appears whole: none of several runs creating it at once sees a half-made file."""
    for attempt in range(15):
        path = tmp_path / f"race{attempt}" / "ledger.sqlite"
        ledgers, problems = _open_together(path, 6)
        for ledger in ledgers:
            ledger.close()
        assert problems == []
        assert len(ledgers) == 6
        assert [p.name for p in path.parent.iterdir() if p.name.endswith(".new")] == []  # no temp left
