"""A call on a new connection leaves only once the connection is open (over the internet, a TLS
handshake later): the client says so and the limiter counts the call from then."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import urllib3.connection

from importer.client import Credentials, LsqClient, ReplyKind
from importer.runner import ImportConfig, run_import
from importer.sandbox import DEFAULT_USERS, Account, Faults, Sandbox
from importer.throttle import RateLimit, RateLimiter
from tests.helpers import write_csv, write_yaml
from tests.test_runs import MAPPING


def test_the_client_tells_each_new_connection_before_its_request_leaves(sandbox):
    told: list[tuple[int, int]] = []  # (requests the sandbox had seen, thread) at each new connection
    client = LsqClient(
        sandbox.url,
        Credentials(sandbox.access_key, sandbox.secret_key),
        on_connect=lambda: told.append((sandbox.stats.bulk_calls, threading.get_ident())),
    )
    body = {"ActivityEvent": 201, "ActivityNote": "n", "ActivityDateTime": "2024-01-01 10:00:00"}
    opportunity = next(iter(Account().opportunities))
    client.post_activities(opportunity, [body])
    client.post_activities(opportunity, [body])  # the kept-alive connection: nothing to tell
    assert told == [(0, threading.get_ident())]
    client.close()
    client.who_am_i()  # a read without a limiter takes no slot: its new connection is not told
    assert told == [(0, threading.get_ident())]
    client.close()


def test_reads_paced_by_a_limiter_tell_their_new_connections(sandbox):
    told: list[int] = []
    limiter = RateLimiter(RateLimit(25, 5.0))
    client = LsqClient(
        sandbox.url, Credentials(sandbox.access_key, sandbox.secret_key), on_connect=lambda: told.append(1)
    )
    client.who_am_i(limiter=limiter)
    client.who_am_i(limiter=limiter)
    assert told == [1]
    client.close()


@pytest.fixture
def slow_handshakes(monkeypatch):
    """Every new connection takes 0.3 s to open, as a TLS handshake far from the host does."""
    connect = urllib3.connection.HTTPConnection.connect

    def slowly(self: urllib3.connection.HTTPConnection) -> None:
        connect(self)
        time.sleep(0.3)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "connect", slowly)


def test_calls_on_new_connections_do_not_crowd_the_next_window(tmp_path: Path, slow_handshakes):
    """Five workers open five connections for the first window's calls; the next window's calls,
    on kept-alive connections, would arrive 0.3 s closer to them than the limit allows."""
    opportunities = [f"opp-{n:02d}" for n in range(14)]
    rows = [
        {"Opportunity": o, "Owner": DEFAULT_USERS[0], "PAN": f"P{n}"} for n, o in enumerate(opportunities)
    ]
    source = write_csv(tmp_path / "visits.csv", rows)
    with Sandbox(Account(opportunities=set(opportunities)), Faults(), rate_limit=(5, 1.0)) as sandbox:
        config = ImportConfig(
            input_path=source,
            mapping_path=write_yaml(tmp_path, MAPPING),
            host=sandbox.url,
            credentials=Credentials(sandbox.access_key, sandbox.secret_key),
            rate_limit=RateLimit(5, 1.0),
            concurrency=5,
            state_dir=tmp_path / "state",
            journal_path=tmp_path / "journal.sqlite",
            errors_path=tmp_path / "visits.errors.xlsx",
        )
        result = run_import(config)
        stats = sandbox.stats
        stored = sorted(a.fields["mx_Custom_1"] for a in sandbox.activities())
    assert (result.rows_posted, result.throttled) == (14, 0)
    assert stats.throttled == 0
    assert stored == sorted(f"P{n}" for n in range(14))


def test_a_limiter_failing_to_hear_of_a_connection_does_not_fail_the_request(sandbox, caplog):
    def broken() -> None:
        raise RuntimeError("the limiter's file is gone")

    client = LsqClient(sandbox.url, Credentials(sandbox.access_key, sandbox.secret_key), on_connect=broken)
    body = {"ActivityEvent": 201, "ActivityNote": "n", "ActivityDateTime": "2024-01-01 10:00:00"}
    reply = client.post_activities(next(iter(Account().opportunities)), [body])
    client.close()
    assert reply.kind is ReplyKind.ROWS  # LeadSquared's answer, not a transport failure
    assert sandbox.stats.bulk_calls == 1
    assert "could not tell the rate limiter" in caplog.text
