"""The sandbox speaks the API of CONTRACT.md over real loopback HTTP, faults included."""

from __future__ import annotations

import ast
import http.client
import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

import importer.sandbox
from importer.sandbox import (
    ACTIVITY_SETTING_PATH,
    ACTIVITY_TYPES_PATH,
    BULK_ADD_PATH,
    DEFAULT_LEADS,
    DEFAULT_OPPORTUNITIES,
    DEFAULT_OPPORTUNITY_RECORDS,
    DEFAULT_USERS,
    GET_ACTIVITIES_PATH,
    OPPORTUNITIES_BY_ID_PATH,
    OPPORTUNITIES_BY_LEAD_FIELD_PATH,
    OPPORTUNITIES_OF_LEAD_PATH,
    OPPORTUNITY_TYPE,
    SANDBOX_ACCESS_KEY,
    SANDBOX_SECRET_KEY,
    USER_PATH,
    Account,
    Faults,
    ItemShape,
    Sandbox,
    endpoint_name,
)

OPPORTUNITY = DEFAULT_OPPORTUNITIES[0]
OTHER_OPPORTUNITY = DEFAULT_OPPORTUNITIES[1]
OWNER = DEFAULT_USERS[0]
KEY_HEADERS = {"x-LSQ-AccessKey": SANDBOX_ACCESS_KEY, "x-LSQ-SecretKey": SANDBOX_SECRET_KEY}
_DROP = object()  # in activity(), removes the key instead of setting it


def activity(**changes: Any) -> dict[str, Any]:
    """A valid "Document Collected" activity object, with some keys changed or dropped."""
    row: dict[str, Any] = {
        "ActivityEvent": 201,
        "ActivityOwnerEmail": OWNER,
        "ActivityNote": "PAN collected",
        "ActivityDateTime": "2024-03-26 14:15:00",
        "Fields": [{"SchemaName": "mx_Custom_1", "Value": "AAAAA1111A"}],
    }
    row.update(changes)
    return {key: value for key, value in row.items() if value is not _DROP}


def with_fields(*pairs: tuple[str, Any]) -> dict[str, Any]:
    """A valid activity whose Fields are mx_Custom_1 plus the given (SchemaName, Value) pairs."""
    fields = [{"SchemaName": "mx_Custom_1", "Value": "AAAAA1111A"}]
    fields += [{"SchemaName": name, "Value": value} for name, value in pairs]
    return activity(Fields=fields)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(rate_limit=None) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as client:
        client.headers.update(KEY_HEADERS)
        yield client


def post_bulk(
    session: requests.Session,
    sandbox: Sandbox,
    rows: Any,
    opportunity: str | None = OPPORTUNITY,
) -> requests.Response:
    params = {"opportunityId": opportunity} if opportunity else {}
    return session.post(sandbox.url + BULK_ADD_PATH, params=params, json=rows, timeout=5)


def get_activities(
    session: requests.Session, sandbox: Sandbox, paging: Any, **params: Any
) -> requests.Response:
    params.setdefault("opportunityId", OPPORTUNITY)
    return session.post(sandbox.url + GET_ACTIVITIES_PATH, params=params, json=paging, timeout=5)


def assert_envelope(response: requests.Response, status: int, exception_type: str) -> str:
    """Check an error envelope and return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Status"] == "Error"
    assert body["ExceptionType"] == exception_type
    return body["ExceptionMessage"]


def raw_exchange(sandbox: Sandbox, data: bytes) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    host, port = sandbox.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(data)
        connection.shutdown(socket.SHUT_WR)  # the client has nothing more to say
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- Authentication ------------------------------------------------------------------------


def test_auth_headers_accepted(sandbox: Sandbox, session: requests.Session) -> None:
    response = session.get(sandbox.url + ACTIVITY_TYPES_PATH, timeout=5)
    assert response.status_code == 200


def test_auth_header_names_case_insensitive(sandbox: Sandbox) -> None:
    headers = {"X-LSQ-ACCESSKEY": SANDBOX_ACCESS_KEY, "x-lsq-secretkey": SANDBOX_SECRET_KEY}
    response = requests.get(sandbox.url + ACTIVITY_TYPES_PATH, headers=headers, timeout=5)
    assert response.status_code == 200


def test_auth_query_keys_accepted(sandbox: Sandbox) -> None:
    params = {"accessKey": SANDBOX_ACCESS_KEY, "secretKey": SANDBOX_SECRET_KEY}
    response = requests.get(sandbox.url + ACTIVITY_TYPES_PATH, params=params, timeout=5)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"x-LSQ-AccessKey": SANDBOX_ACCESS_KEY, "x-LSQ-SecretKey": "wrong"}, {}),
        ({"x-LSQ-AccessKey": "wrong", "x-LSQ-SecretKey": SANDBOX_SECRET_KEY}, {}),
        ({"x-LSQ-AccessKey": SANDBOX_ACCESS_KEY}, {}),
        ({}, {"accessKey": SANDBOX_ACCESS_KEY, "secretKey": "wrong"}),
        ({}, {"AccessKey": SANDBOX_ACCESS_KEY, "SecretKey": SANDBOX_SECRET_KEY}),
    ],
    ids=["none", "bad-secret", "bad-access", "no-secret", "bad-query-secret", "query-name-case"],
)
def test_auth_bad_keys_rejected_401(
    sandbox: Sandbox, headers: dict[str, str], params: dict[str, str]
) -> None:
    response = requests.post(
        sandbox.url + BULK_ADD_PATH,
        params={"opportunityId": OPPORTUNITY, **params},
        headers=headers,
        json=[activity()],
        timeout=5,
    )
    message = assert_envelope(response, 401, "MXUnAuthorizedAccessException")
    assert message == "Invalid access key or secret key"
    assert sandbox.activities() == []


def test_auth_other_region_key_names_host() -> None:
    account = Account(other_region_keys={"u$us-key": "api-us11.leadsquared.com"})
    headers = {"x-LSQ-AccessKey": "u$us-key", "x-LSQ-SecretKey": "its-secret"}
    with Sandbox(account=account) as sandbox:
        response = requests.get(sandbox.url + USER_PATH, headers=headers, timeout=5)
    message = assert_envelope(response, 401, "MXUnAuthorizedAccessException")
    assert "another region" in message
    assert "api-us11.leadsquared.com" in message


# --- Routing and protocol ------------------------------------------------------------------


def test_routing_unknown_path_404_envelope(sandbox: Sandbox, session: requests.Session) -> None:
    response = session.get(sandbox.url + "/v2/ProspectActivity.svc/NoSuchThing", timeout=5)
    assert_envelope(response, 404, "MXInvalidAPIException")


def test_routing_wrong_method_405(sandbox: Sandbox, session: requests.Session) -> None:
    response = session.get(sandbox.url + BULK_ADD_PATH, timeout=5)
    assert_envelope(response, 405, "MXInvalidAPIException")


def test_protocol_keep_alive_reuses_one_connection(sandbox: Sandbox) -> None:
    host, port = sandbox.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        statuses, sockets = [], []
        for _ in range(3):
            connection.request("GET", ACTIVITY_TYPES_PATH, headers=KEY_HEADERS)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert statuses == [200, 200, 200]
    assert sockets[0] is not None
    assert sockets.count(sockets[0]) == 3


def test_protocol_huge_content_length_413(sandbox: Sandbox) -> None:
    answer = raw_exchange(
        sandbox,
        f"POST {BULK_ADD_PATH}?opportunityId={OPPORTUNITY} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n[]".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"MXRequestTooLargeException" in answer


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/9.9\r\n\r\n", b"505"),
        (b"OPTIONS /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", b"501"),
        (b"POST /v2/ HTTP/1.1\r\nContent-Length: -5\r\n\r\n", b"400"),
        (b"POST /v2/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
    ],
    ids=["request-line", "version", "method", "content-length", "chunked"],
)
def test_protocol_garbage_answered_with_envelope(sandbox: Sandbox, raw: bytes, status: bytes) -> None:
    answer = raw_exchange(sandbox, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == status
    assert json.loads(body)["Status"] == "Error"
    # the server is still serving
    response = requests.get(sandbox.url + ACTIVITY_TYPES_PATH, headers=KEY_HEADERS, timeout=5)
    assert response.status_code == 200


def test_protocol_client_leaving_mid_body_is_harmless(sandbox: Sandbox) -> None:
    answer = raw_exchange(
        sandbox,
        f"POST {BULK_ADD_PATH} HTTP/1.1\r\nContent-Length: 100\r\n\r\n[".encode(),
    )
    # the body never arrives whole: no answer, nothing stored, no request served
    assert answer == b""
    assert sandbox.activities() == []
    assert sandbox.request_log == []


# --- Bulk add: bodies and rows -------------------------------------------------------------


def test_bulk_add_valid_rows_stored_in_order(sandbox: Sandbox, session: requests.Session) -> None:
    rows = [activity(ActivityNote=f"note {n}") for n in range(1, 26)]
    response = post_bulk(session, sandbox, rows)
    assert response.status_code == 200
    results = response.json()["Response"]
    assert [result["RowNumber"] for result in results] == list(range(1, 26))
    assert all(result["ActivityCreated"] for result in results)
    stored = sandbox.activities(OPPORTUNITY)
    assert [a.note for a in stored] == [f"note {n}" for n in range(1, 26)]
    assert [a.id for a in stored] == [result["ProspectActivityId"] for result in results]
    assert stored[0].fields == {"mx_Custom_1": "AAAAA1111A"}
    assert stored[0].activity_datetime == "2024-03-26 14:15:00"
    assert sandbox.stats.rows_created == 25


def test_bulk_add_mixed_rows_store_only_valid(sandbox: Sandbox, session: requests.Session) -> None:
    rows = [
        activity(ActivityNote="good 1"),
        with_fields(("mx_Custom_2", "abc")),
        activity(ActivityNote="good 2"),
    ]
    response = post_bulk(session, sandbox, rows)
    assert response.status_code == 200
    assert response.json()["Response"][1] == {
        "RowNumber": 2,
        "ActivityCreated": False,
        "ProspectActivityId": None,
        "ExceptionMessage": "Invalid value 'abc' for mx_Custom_2 (Number)",
    }
    assert [a.note for a in sandbox.activities()] == ["good 1", "good 2"]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (activity(ActivityEvent=_DROP), "ActivityEvent is mandatory"),
        (activity(ActivityEvent="201"), "ActivityEvent must be an integer"),
        (activity(ActivityEvent=True), "ActivityEvent must be an integer"),
        (activity(ActivityEvent=201.0), "ActivityEvent must be an integer"),
        (activity(ActivityEvent=999), "ActivityEvent 999 is not an activity type"),
        (activity(ActivityOwnerEmail=_DROP), "ActivityOwnerEmail is mandatory"),
        (activity(ActivityOwnerEmail=42), "ActivityOwnerEmail must be a string"),
        (activity(ActivityOwnerEmail="nobody@example.com"), "is not a user"),
        (activity(ActivityNote=7), "ActivityNote must be a string"),
        (activity(ActivityNote=None), "ActivityNote must be a string"),
        (activity(ActivityDateTime="2024-03-26T14:15:00"), "Invalid ActivityDateTime"),
        (activity(ActivityDateTime="2024-03-26"), "Invalid ActivityDateTime"),
        (activity(ActivityDateTime="2024-02-30 10:00:00"), "Invalid ActivityDateTime"),
        (activity(ValidateDropDownOptions="true"), "ValidateDropDownOptions must be true or false"),
        (activity(ActivityOwner=OWNER), "Unknown attribute 'ActivityOwner'"),
        (activity(Fields={"mx_Custom_1": "X"}), "Fields must be a list"),
        (activity(Fields=[{"SchemaName": "mx_Custom_1"}]), "Each entry of Fields"),
        (activity(Fields=[["mx_Custom_1", "X"]]), "Each entry of Fields"),
        (with_fields(("mx_Custom_9", "x")), "mx_Custom_9"),
        (with_fields(("mx_Custom_2", 12)), "Value of mx_Custom_2 must be a JSON string"),
        (with_fields(("mx_Custom_7", True)), "Value of mx_Custom_7 must be a JSON string"),
        (with_fields(("mx_Custom_2", "abc")), "Invalid value 'abc' for mx_Custom_2 (Number)"),
        (with_fields(("mx_Custom_2", "1,000")), "for mx_Custom_2 (Number)"),
        (with_fields(("mx_Custom_2", "")), "for mx_Custom_2 (Number)"),
        (with_fields(("mx_Custom_2", "\u0661\u0662")), "for mx_Custom_2 (Number)"),
        (with_fields(("mx_Custom_3", "2024-13-01")), "for mx_Custom_3 (Date)"),
        (with_fields(("mx_Custom_3", "26/03/2024")), "for mx_Custom_3 (Date)"),
        (with_fields(("mx_Custom_4", "branch")), "for mx_Custom_4 (Dropdown)"),
        (with_fields(("mx_Custom_6", "PAN Card,Aadhaar")), "for mx_Custom_6 (MultiSelect)"),
        (with_fields(("mx_Custom_6", "PAN Card; Aadhaar")), "for mx_Custom_6 (MultiSelect)"),
        (with_fields(("mx_Custom_7", "True")), "for mx_Custom_7 (Boolean)"),
        (with_fields(("mx_Custom_1", "again")), "mx_Custom_1 is given more than once"),
        (activity(Fields=[{"SchemaName": "mx_Custom_2", "Value": "5"}]), "Mandatory field mx_Custom_1"),
        (activity(Fields=_DROP), "Mandatory field mx_Custom_1"),
        (activity(Fields=[{"SchemaName": "mx_Custom_1", "Value": "  "}]), "Mandatory field mx_Custom_1"),
        (
            activity(ActivityEvent=202, Fields=[{"SchemaName": "mx_Custom_3", "Value": "2024-03-26"}]),
            "for mx_Custom_3 (DateTime)",
        ),
        ("not an object", "must be a JSON object"),
    ],
)
def test_bulk_add_invalid_row_rejected(
    sandbox: Sandbox, session: requests.Session, row: Any, expected: str
) -> None:
    response = post_bulk(session, sandbox, [row])
    assert response.status_code == 200
    (result,) = response.json()["Response"]
    assert result["ActivityCreated"] is False
    assert result["ProspectActivityId"] is None
    assert expected in result["ExceptionMessage"]
    assert sandbox.activities() == []


@pytest.mark.parametrize(
    "row",
    [
        activity(ActivityNote=_DROP),
        activity(ActivityOwnerEmail=OWNER.upper()),
        with_fields(("mx_Custom_2", "-12.50")),
        with_fields(("mx_Custom_3", "2024-02-29")),
        with_fields(("mx_Custom_3", "2024-03-26 00:00:00")),
        with_fields(("mx_Custom_4", "Online")),
        with_fields(("mx_Custom_5", "")),
        with_fields(("mx_Custom_6", "Bank Statement;PAN Card")),
        with_fields(("mx_Custom_7", "false")),
        activity(ActivityEvent=202, Fields=[{"SchemaName": "mx_Custom_3", "Value": "2024-03-26 09:30:00"}]),
        activity(ActivityEvent=203, Fields=[{"SchemaName": "mx_Custom_1", "Value": "2500"}]),
    ],
)
def test_bulk_add_valid_variant_created(sandbox: Sandbox, session: requests.Session, row: Any) -> None:
    response = post_bulk(session, sandbox, [row])
    (result,) = response.json()["Response"]
    assert result["ActivityCreated"] is True, result["ExceptionMessage"]
    assert len(sandbox.activities()) == 1


def test_bulk_add_validate_dropdown_options_true_skips_check(
    sandbox: Sandbox, session: requests.Session
) -> None:
    row = with_fields(("mx_Custom_4", "Walk-in"), ("mx_Custom_6", "Form 16"))
    row["ValidateDropDownOptions"] = True
    checked = {**row, "ValidateDropDownOptions": False}
    response = post_bulk(session, sandbox, [row, checked])
    created = [result["ActivityCreated"] for result in response.json()["Response"]]
    assert created == [True, False]
    assert sandbox.activities()[0].fields["mx_Custom_4"] == "Walk-in"


def test_bulk_add_missing_datetime_gets_server_utc_time(sandbox: Sandbox, session: requests.Session) -> None:
    post_bulk(session, sandbox, [activity(ActivityDateTime=_DROP)])
    (stored,) = sandbox.activities()
    assert len(stored.activity_datetime) == 19
    assert stored.activity_datetime == stored.created_on
    assert stored.note == "PAN collected"


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (b"[{", "application/json", "not valid JSON"),
        (b"", "application/json", "not valid JSON"),
        (b"[NaN]", "application/json", "not valid JSON"),
        (b"\xff\xfe[]", "application/json", "not valid JSON"),
        (b"[" * 100_000, "application/json", "not valid JSON"),
        (b"{}", "application/json", "JSON array of 1 to 25"),
        (b"[]", "application/json", "JSON array of 1 to 25"),
        (json.dumps([activity()] * 26).encode(), "application/json", "max 25"),
        (json.dumps([activity()]).encode(), "text/plain", "Content-Type must be application/json"),
    ],
    ids=["truncated", "empty", "nan", "not-utf8", "deep", "object", "empty-array", "26", "text"],
)
def test_bulk_add_bad_body_400(
    sandbox: Sandbox, session: requests.Session, data: bytes, content_type: str, expected: str
) -> None:
    response = session.post(
        sandbox.url + BULK_ADD_PATH,
        params={"opportunityId": OPPORTUNITY},
        data=data,
        headers={"Content-Type": content_type},
        timeout=5,
    )
    assert expected in assert_envelope(response, 400, "MXInvalidInputException")
    assert sandbox.activities() == []


def test_bulk_add_missing_opportunity_id_400(sandbox: Sandbox, session: requests.Session) -> None:
    response = post_bulk(session, sandbox, [activity()], opportunity=None)
    assert "opportunityId" in assert_envelope(response, 400, "MXInvalidInputException")


def test_bulk_add_unknown_opportunity_rejects_whole_call(sandbox: Sandbox, session: requests.Session) -> None:
    response = post_bulk(session, sandbox, [activity()], opportunity="no-such-opportunity")
    message = assert_envelope(response, 500, "MXInvalidInputException")
    assert "no-such-opportunity does not exist or you do not have access" in message
    assert sandbox.activities() == []


def test_bulk_add_count_only_dialect(sandbox: Sandbox, session: requests.Session) -> None:
    sandbox.faults = Faults(count_only=True)
    response = post_bulk(session, sandbox, [activity(), activity(ActivityEvent=999), activity()])
    assert response.json() == {"Status": "Success", "Message": {"Count": 2}}
    assert len(sandbox.activities()) == 2


def test_bulk_add_whole_batch_rejects_call_without_naming_row(
    sandbox: Sandbox, session: requests.Session
) -> None:
    sandbox.faults = Faults(row_errors="whole_batch")
    response = post_bulk(session, sandbox, [activity(), with_fields(("mx_Custom_2", "abc"))])
    message = assert_envelope(response, 500, "MXInvalidInputException")
    assert "mx_Custom_2" not in message
    assert "2" not in message
    assert sandbox.activities() == []
    assert post_bulk(session, sandbox, [activity()]).json()["Response"][0]["ActivityCreated"]


# --- Rate limit ----------------------------------------------------------------------------


def test_rate_limit_fourth_quick_call_429(session: requests.Session) -> None:
    with Sandbox(rate_limit=(3, 0.5)) as sandbox:
        statuses = [post_bulk(session, sandbox, [activity()]).status_code for _ in range(3)]
        response = post_bulk(session, sandbox, [activity()])
        stats = sandbox.stats
        stored = len(sandbox.activities())
    assert statuses == [200, 200, 200]
    message = assert_envelope(response, 429, "MXAPIRateLimitExceededException")
    assert message == "API calls exceeded the limit of 3 in 0.5 second(s)"
    assert "Retry-After" not in response.headers
    assert (stats.throttled, stats.bulk_calls, len(stats.arrivals), stored) == (1, 4, 4, 3)


def test_rate_limit_window_slides_and_throttled_calls_count(session: requests.Session) -> None:
    now = [0.0]
    with Sandbox(rate_limit=(3, 0.5), clock=lambda: now[0]) as sandbox:
        url = sandbox.url + ACTIVITY_TYPES_PATH

        def status_at(moment: float) -> int:
            now[0] = moment
            return session.get(url, timeout=5).status_code

        statuses = [status_at(t) for t in (0.0, 0.0, 0.0, 0.4, 0.45, 0.5, 0.5, 0.96)]
        throttled = sandbox.stats.throttled
    # at 0.5 the three calls of 0.0 have left the window, the throttled 0.4 and 0.45 have not
    assert statuses == [200, 200, 200, 429, 429, 200, 429, 200]
    assert throttled == 3


def test_rate_limit_ignores_unauthenticated_calls(session: requests.Session) -> None:
    with Sandbox(rate_limit=(2, 60.0)) as sandbox:
        url = sandbox.url + ACTIVITY_TYPES_PATH
        rejected = [requests.get(url, timeout=5).status_code for _ in range(3)]
        accepted = [session.get(url, timeout=5).status_code for _ in range(3)]
    assert rejected == [401, 401, 401]
    assert accepted == [200, 200, 429]


# --- Faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "statuses", "stored"),
    [
        ("429", {429}, 0),
        ("500_mx", {500}, 0),
        ("500_before", {500, 502, 503}, 0),
        ("500_after", {500}, 1),
        ("ok", {200}, 1),
    ],
)
def test_faults_queued_kind_answered(
    sandbox: Sandbox, session: requests.Session, kind: str, statuses: set[int], stored: int
) -> None:
    sandbox.queue_faults(kind)
    response = post_bulk(session, sandbox, [activity()])
    assert response.status_code in statuses
    assert len(sandbox.activities()) == stored
    is_json = response.headers["Content-Type"].startswith("application/json")
    assert is_json == (kind in ("429", "500_mx", "ok"))
    if kind in ("429", "500_mx"):
        assert response.json()["ExceptionType"].startswith("MX")
    assert sandbox.stats.faults == ({} if kind == "ok" else {kind: 1})
    assert sandbox.stats.spurious_429 == (1 if kind == "429" else 0)
    # the queue is spent: the next call is answered normally
    assert post_bulk(session, sandbox, [activity()]).status_code == 200


def test_faults_drop_after_stores_rows_then_drops(sandbox: Sandbox, session: requests.Session) -> None:
    sandbox.queue_faults("drop_after")
    with pytest.raises(requests.ConnectionError):
        post_bulk(session, sandbox, [activity(), activity()])
    assert len(sandbox.activities()) == 2
    assert sandbox.request_log[-1].status is None
    assert sandbox.stats.faults == {"drop_after": 1}


def test_faults_drop_before_stores_nothing(sandbox: Sandbox, session: requests.Session) -> None:
    sandbox.queue_faults("drop_before")
    with pytest.raises(requests.ConnectionError):
        post_bulk(session, sandbox, [activity()])
    assert sandbox.activities() == []
    assert post_bulk(session, sandbox, [activity()]).status_code == 200


def test_faults_queue_runs_in_order_before_random(sandbox: Sandbox, session: requests.Session) -> None:
    sandbox.faults = Faults(p_500_mx=1.0)
    sandbox.queue_faults("ok", "429")
    statuses = [post_bulk(session, sandbox, [activity()]).status_code for _ in range(3)]
    assert statuses == [200, 429, 500]


def test_faults_after_kind_applies_even_to_invalid_call(sandbox: Sandbox, session: requests.Session) -> None:
    sandbox.queue_faults("500_after")
    response = post_bulk(session, sandbox, [activity()], opportunity="no-such-opportunity")
    assert response.status_code == 500
    assert sandbox.activities() == []


def test_faults_unknown_kind_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        sandbox.queue_faults("500", "ok")


@pytest.mark.parametrize(
    "faults",
    [{"p_throttle": 1.5}, {"p_500_mx": 0.6, "p_drop_after": 0.6}, {"row_errors": "some"}],
)
def test_faults_invalid_settings_refused(faults: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Faults(**faults)


def test_faults_random_draws_reproducible_from_seed(sandbox: Sandbox, session: requests.Session) -> None:
    def run() -> list[int]:
        return [post_bulk(session, sandbox, [activity()]).status_code for _ in range(12)]

    sandbox.faults = Faults(seed=7, p_500_after=0.5)
    first = run()
    stats = sandbox.stats
    sandbox.reset()
    assert run() == first
    assert set(first) == {200, 500}
    assert stats.faults == {"500_after": first.count(500)}
    assert stats.rows_created == 12  # 500_after stores the rows before failing


def test_faults_latency_delays_answers(session: requests.Session) -> None:
    with Sandbox(faults=Faults(latency_ms=(2000, 2000))) as sandbox, pytest.raises(requests.Timeout):
        session.get(sandbox.url + ACTIVITY_TYPES_PATH, timeout=0.2)


def test_faults_latency_lets_client_time_out_after_storing(session: requests.Session) -> None:
    with Sandbox(faults=Faults(latency_ms=(400, 400))) as sandbox:
        with pytest.raises(requests.Timeout):
            session.post(
                sandbox.url + BULK_ADD_PATH,
                params={"opportunityId": OPPORTUNITY},
                json=[activity()],
                timeout=0.1,
            )
        assert len(sandbox.activities()) == 1


# --- Reading activities back ---------------------------------------------------------------


def seed_activities(sandbox: Sandbox, count: int) -> None:
    for n in range(count):
        event = 202 if n % 3 == 0 else 201
        fields = [{"SchemaName": "mx_Custom_2", "Value": "12.5"}] if event == 201 else []
        body = {"ActivityEvent": event, "ActivityOwnerEmail": OWNER, "ActivityNote": f"n{n}"}
        sandbox.add_activity(OPPORTUNITY, {**body, "Fields": fields})
    sandbox.add_activity(OTHER_OPPORTUNITY, {"ActivityEvent": 201, "ActivityOwnerEmail": OWNER})


def test_get_activities_pages_newest_first(sandbox: Sandbox, session: requests.Session) -> None:
    seed_activities(sandbox, 30)
    pages = [
        get_activities(session, sandbox, {"Paging": {"PageIndex": i, "PageSize": 25}}).json()
        for i in (1, 2, 3)
    ]
    assert [page["RecordCount"] for page in pages] == [30, 30, 30]
    assert [len(page["List"]) for page in pages] == [25, 5, 0]
    notes = [item["ActivityNote"] for page in pages for item in page["List"]]
    assert notes == [f"n{n}" for n in reversed(range(30))]
    item = pages[0]["List"][0]
    assert set(item) == {
        "ProspectActivityId",
        "ActivityEvent",
        "ActivityNote",
        "ActivityDateTime",
        "ActivityOwnerEmail",
        "Fields",
        "CreatedOn",
    }
    assert item["Fields"] == [{"SchemaName": "mx_Custom_2", "Value": "12.5"}]


def test_get_activities_filters_by_event(sandbox: Sandbox, session: requests.Session) -> None:
    seed_activities(sandbox, 30)
    paging = {"Paging": {"PageIndex": 1, "PageSize": 100}}
    body = get_activities(session, sandbox, paging, activityEventCode="202").json()
    assert body["RecordCount"] == 10
    assert {item["ActivityEvent"] for item in body["List"]} == {202}


def test_get_activities_shows_bulk_added_rows(sandbox: Sandbox, session: requests.Session) -> None:
    results = post_bulk(session, sandbox, [activity()]).json()["Response"]
    body = get_activities(session, sandbox, {"Paging": {"PageIndex": 1, "PageSize": 25}}).json()
    (item,) = body["List"]
    assert item["ProspectActivityId"] == results[0]["ProspectActivityId"]
    assert item["ActivityDateTime"] == "2024-03-26 14:15:00"
    assert item["ActivityOwnerEmail"] == OWNER


@pytest.mark.parametrize(
    "paging",
    [
        [],
        {"Paging": []},
        {"Paging": {"PageIndex": 0, "PageSize": 25}},
        {"Paging": {"PageIndex": 1, "PageSize": 0}},
        {"Paging": {"PageIndex": "1", "PageSize": 25}},
        {"Paging": {"Offset": "-1", "RowCount": "5"}},
        {"Paging": {"Offset": 0, "RowCount": "many"}},
    ],
)
def test_get_activities_bad_paging_400(sandbox: Sandbox, session: requests.Session, paging: Any) -> None:
    response = get_activities(session, sandbox, paging)
    assert "Paging" in assert_envelope(response, 400, "MXInvalidInputException")


def test_get_activities_unknown_opportunity_500(sandbox: Sandbox, session: requests.Session) -> None:
    paging = {"Paging": {"PageIndex": 1, "PageSize": 25}}
    response = get_activities(session, sandbox, paging, opportunityId="nope")
    assert "does not exist" in assert_envelope(response, 500, "MXInvalidInputException")


def test_get_activities_alternative_read_shapes(sandbox: Sandbox, session: requests.Session) -> None:
    sandbox.add_activity(
        OPPORTUNITY,
        {
            "ActivityEvent": 201,
            "ActivityOwnerEmail": OWNER,
            "ActivityDateTime": "2026-07-31 17:33:50",
            "Fields": [
                {"SchemaName": "mx_Custom_1", "Value": "AAAAA1111A"},
                {"SchemaName": "mx_Custom_2", "Value": "12.5"},
            ],
        },
    )
    paging = {"Paging": {"PageIndex": 1, "PageSize": 25}}
    sandbox.faults = Faults(read_shape="data")
    (data_item,) = get_activities(session, sandbox, paging).json()["List"]
    sandbox.faults = Faults(read_shape="flat")
    (flat_item,) = get_activities(session, sandbox, paging).json()["List"]
    assert data_item["EventCode"] == 201
    assert data_item["OwnerEmailAddress"] == OWNER
    assert data_item["CreatedOn"] == "7/31/2026 5:33:50 PM"
    assert {"Key": "mx_Custom_2", "Value": "12.50"} in data_item["Data"]
    assert "Id" in data_item
    assert flat_item["ActivityId"] == data_item["Id"]
    assert flat_item["mx_Custom_2"] == "12.50"
    assert flat_item["mx_Custom_1"] == "AAAAA1111A"


# --- Metadata and identity -----------------------------------------------------------------


def test_activity_setting_option_set_is_json_string(sandbox: Sandbox, session: requests.Session) -> None:
    response = session.get(sandbox.url + ACTIVITY_SETTING_PATH, params={"code": 201}, timeout=5)
    assert response.status_code == 200
    setting = response.json()
    assert (setting["Name"], setting["DisplayName"]) == ("DocumentCollected", "Document Collected")
    fields = {f["SchemaName"]: f for f in setting["Fields"]}
    channel = fields["mx_Custom_4"]
    assert channel["DataType"] == "Dropdown"
    assert isinstance(channel["OptionSet"], str)
    assert json.loads(channel["OptionSet"]) == [
        {"Value": "Branch"},
        {"Value": "Online"},
        {"Value": "Phone"},
        {"Value": "Partner"},
    ]
    assert fields["mx_Custom_1"]["IsMandatory"] is True
    assert fields["mx_Custom_2"]["OptionSet"] == "[]"


@pytest.mark.parametrize(("code", "status"), [("999", 500), ("abc", 400), ("", 400)])
def test_activity_setting_bad_code_rejected(
    sandbox: Sandbox, session: requests.Session, code: str, status: int
) -> None:
    response = session.get(sandbox.url + ACTIVITY_SETTING_PATH, params={"code": code}, timeout=5)
    assert_envelope(response, status, "MXInvalidInputException")


def test_activity_types_get_lists_codes(sandbox: Sandbox, session: requests.Session) -> None:
    response = session.get(sandbox.url + ACTIVITY_TYPES_PATH, timeout=5)
    assert response.json() == [
        {"ActivityEvent": 201, "ActivityEventName": "Document Collected"},
        {"ActivityEvent": 202, "ActivityEventName": "Site Visit"},
        {"ActivityEvent": 203, "ActivityEventName": "Payment Received"},
    ]


def test_user_by_access_key_reports_own_host(sandbox: Sandbox, session: requests.Session) -> None:
    user = session.get(sandbox.url + USER_PATH, timeout=5).json()
    assert user["EmailAddress"] == DEFAULT_USERS[0]
    assert (user["FirstName"], user["LastName"]) == ("Sandbox", "User")
    assert user["LSQCommonServiceURLs"]["api"] == sandbox.url.removeprefix("http://")


def test_user_by_access_key_reports_configured_host(session: requests.Session) -> None:
    with Sandbox(account=Account(api_host="api-in21.leadsquared.com")) as sandbox:
        user = session.get(sandbox.url + USER_PATH, timeout=5).json()
    assert user["LSQCommonServiceURLs"]["api"] == "api-in21.leadsquared.com"


# --- The Python side: log, stats, seeding, lifecycle ---------------------------------------


def test_request_log_keeps_keys_out_of_url(sandbox: Sandbox, session: requests.Session) -> None:
    response = post_bulk(session, sandbox, [activity()])
    (record,) = sandbox.request_log
    assert (record.method, record.path, record.status) == ("POST", BULK_ADD_PATH, 200)
    assert record.query == {"opportunityId": [OPPORTUNITY]}
    assert {"x-LSQ-AccessKey", "x-LSQ-SecretKey"} <= set(record.header_names)
    assert record.body_bytes == response.request.body
    assert sandbox.stats.requests == 1


def test_request_log_shows_query_keys(sandbox: Sandbox) -> None:
    params = {"accessKey": SANDBOX_ACCESS_KEY, "secretKey": SANDBOX_SECRET_KEY}
    requests.get(sandbox.url + ACTIVITY_TYPES_PATH, params=params, timeout=5)
    assert sandbox.request_log[0].query["secretKey"] == [SANDBOX_SECRET_KEY]


def test_reset_forgets_activities_stats_and_log(sandbox: Sandbox, session: requests.Session) -> None:
    post_bulk(session, sandbox, [activity()])
    sandbox.queue_faults("429")
    sandbox.reset()
    assert (sandbox.activities(), sandbox.request_log, sandbox.stats.requests) == ([], [], 0)
    assert post_bulk(session, sandbox, [activity()]).status_code == 200


def test_add_activity_seeds_without_validation(sandbox: Sandbox) -> None:
    seeded = sandbox.add_activity(OTHER_OPPORTUNITY, {"ActivityEvent": 999, "ActivityNote": "old"})
    assert sandbox.activities(OTHER_OPPORTUNITY) == [seeded]
    assert sandbox.activities(OPPORTUNITY) == []
    assert sandbox.stats.rows_created == 0
    seeded.fields["x"] = "changed"
    assert sandbox.activities()[0].fields == {}


def test_default_opportunities_are_stable_uuid5() -> None:
    assert len(set(DEFAULT_OPPORTUNITIES)) == 100
    assert DEFAULT_OPPORTUNITIES[0] == "88b9a6ec-76fa-580e-8243-d3818f9d4a37"


def finishes_soon(action: Callable[[], object]) -> bool:
    """Run action in a thread; True if it ended within 3 s (a bound, not a measurement)."""
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    thread.join(timeout=3)
    return not thread.is_alive()


def test_stop_is_prompt_and_idempotent_with_open_connection(session: requests.Session) -> None:
    sandbox = Sandbox().start()
    url = sandbox.url
    assert session.get(url + ACTIVITY_TYPES_PATH, timeout=5).status_code == 200
    # an idle keep-alive connection would hold a plain shutdown for the handler's 60 s timeout
    assert finishes_soon(lambda: (sandbox.stop(), sandbox.stop()))
    with pytest.raises(requests.ConnectionError):
        session.get(url + ACTIVITY_TYPES_PATH, timeout=5)


def test_stop_interrupts_injected_latency() -> None:
    sandbox = Sandbox(faults=Faults(latency_ms=(5000, 5000))).start()
    host, port = sandbox.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(f"GET {ACTIVITY_TYPES_PATH} HTTP/1.1\r\n\r\n".encode())
        time.sleep(0.05)
        assert finishes_soon(sandbox.stop)  # rather than after the 5 s of latency


def test_url_before_start_refused() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = Sandbox().url


# --- The package itself --------------------------------------------------------------------


def test_package_imports_only_stdlib_and_itself() -> None:
    package = Path(importer.sandbox.__file__).parent
    outside = []
    for module in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module.name}: relative import"
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                inside = name == "importer.sandbox" or name.startswith("importer.sandbox.")
                if not inside and (top == "importer" or top not in sys.stdlib_module_names):
                    outside.append(f"{module.name}: {name}")
    assert outside == []
    assert len(list(package.glob("*.py"))) >= 6  # the checks above really looked at the package


# --- Per-endpoint latency ------------------------------------------------------------------


def test_latency_by_endpoint_slows_only_that_endpoint(session: requests.Session) -> None:
    faults = Faults(latency_ms_by_endpoint={"GetActivitiesOfOpportunity": (2000, 2000)})
    with Sandbox(faults=faults, rate_limit=None) as sandbox:
        assert session.get(sandbox.url + ACTIVITY_TYPES_PATH, timeout=1).status_code == 200
        assert post_bulk(session, sandbox, [activity()]).status_code == 200
        with pytest.raises(requests.Timeout):
            session.post(
                sandbox.url + GET_ACTIVITIES_PATH, params={"opportunityId": OPPORTUNITY}, timeout=0.2
            )


def test_latency_by_endpoint_accepts_paths_and_refuses_unknown_names() -> None:
    faults = Faults(latency_ms_by_endpoint={BULK_ADD_PATH: (5, 9)})
    assert faults.latency_for(BULK_ADD_PATH) == (5, 9)
    assert faults.latency_for(USER_PATH) == (0, 0)
    assert endpoint_name(BULK_ADD_PATH) == "Bulk/CustomActivity/Add/ByOpportunityId"
    with pytest.raises(ValueError, match="must be endpoint names"):
        Faults(latency_ms_by_endpoint={"NoSuchEndpoint": (1, 2)})


# --- Read lag ------------------------------------------------------------------------------


def test_read_lag_hides_new_activities_until_it_passes(session: requests.Session) -> None:
    now = [100.0]
    with Sandbox(faults=Faults(read_lag_s=5.0), rate_limit=None, clock=lambda: now[0]) as sandbox:
        sandbox.add_activity(OPPORTUNITY, activity(ActivityNote="old"))  # existing data: no lag
        assert post_bulk(session, sandbox, [activity(ActivityNote="new")]).status_code == 200

        def listed_at(moment: float) -> list[str]:
            now[0] = moment
            body = get_activities(session, sandbox, None).json()
            assert body["RecordCount"] == len(body["List"])
            return [item["ActivityNote"] for item in body["List"]]

        seen = [listed_at(t) for t in (100.0, 104.9, 105.0)]
        stored = len(sandbox.activities())
    assert seen == [["old"], ["old"], ["new", "old"]]
    assert stored == 2


# --- Read shapes ---------------------------------------------------------------------------

SHAPE_ACTIVITY = {
    "ActivityEvent": 201,
    "ActivityOwnerEmail": OWNER,
    "ActivityNote": "PAN collected",
    "ActivityDateTime": "2026-07-31 17:33:50",
    "Fields": [
        {"SchemaName": "mx_Custom_1", "Value": "AAAAA1111A"},
        {"SchemaName": "mx_Custom_2", "Value": "12.5"},
    ],
}
EPOCH_MS = int(datetime(2026, 7, 31, 17, 33, 50, tzinfo=UTC).timestamp()) * 1000


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (
            "object",
            {
                "Id": "<id>",
                "ActivityEvent": "201",
                "ActivityEvent_Note": "PAN collected",
                "CreatedByEmailAddress": OWNER,
                "CreatedOn": f"/Date({EPOCH_MS}+0000)/",
                "ActivityFields": {"mx_Custom_1": "AAAAA1111A", "mx_Custom_2": "12.50"},
            },
        ),
        (
            "millis",
            {
                "ProspectActivityId": "<id>",
                "EventCode": "201",
                "ActivityEvent_Note": "PAN collected",
                "CreatedByEmailAddress": OWNER,
                "ActivityDateTime": "2026-07-31 17:33:50.000",
                "Fields": [
                    {"SchemaName": "mx_Custom_1", "Value": "AAAAA1111A"},
                    {"SchemaName": "mx_Custom_2", "Value": "12.50"},
                ],
            },
        ),
        (
            ItemShape(id_key="ActivityId", owner_key="OwnerEmailAddress", fields_form="Data", time_form="us"),
            {
                "ActivityId": "<id>",
                "ActivityEvent": 201,
                "ActivityNote": "PAN collected",
                "OwnerEmailAddress": OWNER,
                "ActivityDateTime": "7/31/2026 5:33:50 PM",
                "Data": [
                    {"Key": "mx_Custom_1", "Value": "AAAAA1111A"},
                    {"Key": "mx_Custom_2", "Value": "12.5"},
                ],
            },
        ),
    ],
    ids=["object", "millis", "item-shape"],
)
def test_get_activities_read_shape_items_exact(
    sandbox: Sandbox, session: requests.Session, shape: Any, expected: dict[str, Any]
) -> None:
    stored = sandbox.add_activity(OPPORTUNITY, SHAPE_ACTIVITY)
    sandbox.faults = Faults(read_shape=shape)
    (item,) = get_activities(session, sandbox, None).json()["List"]
    id_key = next(key for key, value in expected.items() if value == "<id>")
    assert item == {**expected, id_key: stored.id}


def test_get_activities_mixed_shape_varies_per_item_and_is_stable(
    sandbox: Sandbox, session: requests.Session
) -> None:
    for _ in range(60):
        sandbox.add_activity(OPPORTUNITY, SHAPE_ACTIVITY)
    sandbox.faults = Faults(read_shape="mixed", seed=4)
    paging = {"Paging": {"PageIndex": 1, "PageSize": 100}}
    items = get_activities(session, sandbox, paging).json()["List"]
    assert get_activities(session, sandbox, paging).json()["List"] == items
    keys = set().union(*(item.keys() for item in items))
    assert {"ProspectActivityId", "Id", "ActivityId"} <= keys
    assert {"ActivityNote", "ActivityEvent_Note", "ActivityEvent", "EventCode"} <= keys
    assert {"ActivityOwnerEmail", "OwnerEmailAddress", "CreatedByEmailAddress"} <= keys
    assert {"Fields", "Data", "ActivityFields", "mx_Custom_2", "ActivityDateTime", "CreatedOn"} <= keys
    events = {item.get("ActivityEvent", item.get("EventCode")) for item in items}
    assert events == {201, "201"}
    times = {item.get("ActivityDateTime", item.get("CreatedOn")) for item in items}
    assert times == {
        "2026-07-31 17:33:50",
        "2026-07-31 17:33:50.000",
        "7/31/2026 5:33:50 PM",
        f"/Date({EPOCH_MS}+0000)/",
    }
    assert {amount_of(item) for item in items} == {"12.5", "12.50"}


def amount_of(item: dict[str, Any]) -> str:
    """mx_Custom_2 of an item, whichever way its fields are written."""
    if "Fields" in item:
        return next(entry["Value"] for entry in item["Fields"] if entry["SchemaName"] == "mx_Custom_2")
    if "Data" in item:
        return next(entry["Value"] for entry in item["Data"] if entry["Key"] == "mx_Custom_2")
    return str(item.get("ActivityFields", item)["mx_Custom_2"])


def test_read_shape_invalid_refused() -> None:
    with pytest.raises(ValueError, match="must be"):
        Faults(read_shape="fancy")
    with pytest.raises(ValueError, match="must be one of"):
        ItemShape(time_form="iso")  # type: ignore[arg-type]


# --- Paging and sorting as the doc page --------------------------------------------------


def notes(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["ActivityNote"] for item in response.json()["List"]]


def test_get_activities_without_paging_answers_25(sandbox: Sandbox, session: requests.Session) -> None:
    seed_activities(sandbox, 30)
    for body in (None, {}):
        response = get_activities(session, sandbox, body)
        assert response.json()["RecordCount"] == 30
        assert notes(response) == [f"n{n}" for n in range(29, 4, -1)]


def test_get_activities_offset_and_row_count(sandbox: Sandbox, session: requests.Session) -> None:
    seed_activities(sandbox, 10)
    response = get_activities(session, sandbox, {"Paging": {"Offset": "2", "RowCount": "3"}})
    assert notes(response) == ["n7", "n6", "n5"]
    assert response.json()["RecordCount"] == 10


def test_get_activities_page_size_above_1000_cut(sandbox: Sandbox, session: requests.Session) -> None:
    for n in range(1200):
        sandbox.add_activity(
            OPPORTUNITY, {"ActivityEvent": 201, "ActivityOwnerEmail": OWNER, "ActivityNote": f"n{n}"}
        )
    pages = [get_activities(session, sandbox, {"Paging": {"PageIndex": i, "PageSize": 5000}}) for i in (1, 2)]
    assert [len(notes(page)) for page in pages] == [1000, 200]
    assert notes(pages[1])[-1] == "n0"
    assert [page.json()["RecordCount"] for page in pages] == [1200, 1200]


@pytest.mark.parametrize(
    ("sorting", "expected"),
    [
        ({"ColumnName": "CreatedOn", "Direction": 1}, ["late", "early", "middle"]),
        ({"ColumnName": "CreatedOn", "Direction": "0"}, ["middle", "early", "late"]),
        ({"ColumnName": "ActivityDateTime", "Direction": 1}, ["late", "middle", "early"]),
        ({"ColumnName": "ActivityDateTime", "Direction": 0}, ["early", "middle", "late"]),
    ],
)
def test_get_activities_sorting(
    sandbox: Sandbox, session: requests.Session, sorting: dict[str, Any], expected: list[str]
) -> None:
    for note, when in (
        ("middle", "2024-05-01 10:00:00"),
        ("early", "2024-01-01 10:00:00"),
        ("late", "2024-09-01 10:00:00"),
    ):
        sandbox.add_activity(OPPORTUNITY, activity(ActivityNote=note, ActivityDateTime=when))
    assert notes(get_activities(session, sandbox, {"Sorting": sorting})) == expected


@pytest.mark.parametrize("sorting", [{"ColumnName": "Name"}, {"ColumnName": "CreatedOn", "Direction": 2}, []])
def test_get_activities_bad_sorting_400(sandbox: Sandbox, session: requests.Session, sorting: Any) -> None:
    response = get_activities(session, sandbox, {"Sorting": sorting})
    assert "Sorting" in assert_envelope(response, 400, "MXInvalidInputException")


def test_get_activities_plain_get_405(sandbox: Sandbox, session: requests.Session) -> None:
    response = session.get(
        sandbox.url + GET_ACTIVITIES_PATH, params={"opportunityId": OPPORTUNITY}, timeout=5
    )
    assert_envelope(response, 405, "MXInvalidAPIException")


# --- Count-only partials -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["probability", "queued"])
def test_bulk_add_partial_creates_some_and_answers_count(
    sandbox: Sandbox, session: requests.Session, how: str
) -> None:
    if how == "probability":
        sandbox.faults = Faults(p_partial=1.0, seed=3)
    else:
        sandbox.queue_faults("partial")
    rows = [activity(ActivityNote=f"r{n}") for n in range(10)] + [activity(ActivityEvent=999)]
    response = post_bulk(session, sandbox, rows)
    assert response.status_code == 200
    count = response.json()["Message"]["Count"]
    assert response.json() == {"Status": "Success", "Message": {"Count": count}}
    assert 0 < count < 10
    assert len(sandbox.activities()) == count
    assert sandbox.stats.faults == {"partial": 1}


def test_bulk_add_partial_reproducible_from_seed(session: requests.Session) -> None:
    def stored_notes() -> list[str | None]:
        with Sandbox(faults=Faults(p_partial=1.0, seed=11), rate_limit=None) as sandbox:
            post_bulk(session, sandbox, [activity(ActivityNote=f"r{n}") for n in range(20)])
            return [a.note for a in sandbox.activities()]

    assert stored_notes() == stored_notes()


def test_bulk_add_count_only_zero_when_every_row_invalid(sandbox: Sandbox, session: requests.Session) -> None:
    sandbox.faults = Faults(count_only=True)
    response = post_bulk(session, sandbox, [activity(ActivityEvent=999), with_fields(("mx_Custom_2", "x"))])
    assert response.status_code == 200
    assert response.json() == {"Status": "Success", "Message": {"Count": 0}}
    assert sandbox.activities() == []


# --- Status: Error faults and odd bodies ---------------------------------------------------

NULL_REFERENCE = {
    "Status": "Error",
    "ExceptionType": "NullReferenceException",
    "ExceptionMessage": "There was an error processing the request.",
}


@pytest.mark.parametrize(
    ("kind", "body", "stored"),
    [
        ("200_null_before", NULL_REFERENCE, 0),
        ("200_null_after", NULL_REFERENCE, 2),
        ("200_invalid_lead", {"Status": "Error", "ExceptionMessage": "Invalid lead ID"}, 0),
    ],
)
def test_faults_200_status_error(
    sandbox: Sandbox, session: requests.Session, kind: str, body: dict[str, str], stored: int
) -> None:
    sandbox.queue_faults(kind)
    response = post_bulk(session, sandbox, [activity(), activity(), activity(ActivityEvent=999)])
    assert (response.status_code, response.json()) == (200, body)
    assert len(sandbox.activities()) == stored
    assert sandbox.stats.faults == {kind: 1}


@pytest.mark.parametrize(("kind", "stored"), [("200_not_json_before", 0), ("200_not_json_after", 1)])
def test_faults_200_not_json(sandbox: Sandbox, session: requests.Session, kind: str, stored: int) -> None:
    sandbox.queue_faults(kind)
    response = post_bulk(session, sandbox, [activity()])
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    assert len(sandbox.activities()) == stored


def test_faults_200_error_drawn_by_probability(sandbox: Sandbox, session: requests.Session) -> None:
    sandbox.faults = Faults(p_200_null_after=1.0)
    response = post_bulk(session, sandbox, [activity()])
    assert response.json() == NULL_REFERENCE
    assert len(sandbox.activities()) == 1


def test_routing_unknown_path_plain_text_404(session: requests.Session) -> None:
    with Sandbox(faults=Faults(plain_404=True), rate_limit=None) as sandbox:
        response = session.post(sandbox.url + "/v2/NoSuch.svc/Thing", timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "Not Found" in response.text
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


# --- Throttling as LeadSquared does it -----------------------------------------------------


def test_rate_limit_403_with_the_real_limit(session: requests.Session) -> None:
    now = [0.0]
    with Sandbox(rate_limit=(10, 5.0), faults=Faults(throttle_status=403), clock=lambda: now[0]) as sandbox:
        statuses = [post_bulk(session, sandbox, [activity()]).status_code for _ in range(10)]
        refused = post_bulk(session, sandbox, [activity()])
        now[0] = 5.0  # the first ten left the window; the refused one has not
        later = post_bulk(session, sandbox, [activity()]).status_code
        stats = sandbox.stats
    assert statuses == [200] * 10
    message = assert_envelope(refused, 403, "MXAPIRateLimitExceededException")
    assert message == "API calls exceeded the limit of 10 in 5 second(s)"
    assert later == 200
    assert (stats.throttled, stats.throttled_by_status) == (1, {403: 1})


def test_rate_limit_shared_by_every_endpoint_and_key_style(session: requests.Session) -> None:
    now = [0.0]
    with Sandbox(rate_limit=(4, 5.0), clock=lambda: now[0]) as sandbox:
        answers = [
            post_bulk(session, sandbox, [activity()]).status_code,
            get_activities(session, sandbox, None).status_code,
            session.get(sandbox.url + USER_PATH, timeout=5).status_code,
            requests.get(
                sandbox.url + ACTIVITY_TYPES_PATH,
                params={"accessKey": SANDBOX_ACCESS_KEY, "secretKey": SANDBOX_SECRET_KEY},
                timeout=5,
            ).status_code,
            session.get(sandbox.url + ACTIVITY_SETTING_PATH, params={"code": 201}, timeout=5).status_code,
        ]
        stats = sandbox.stats
    assert answers == [200, 200, 200, 200, 429]
    assert stats.calls == {
        "Bulk/CustomActivity/Add/ByOpportunityId": 1,
        "GetActivitiesOfOpportunity": 1,
        "UserByAccessKey.Get": 1,
        "ActivityTypes.Get": 1,
        "CustomActivity/GetActivitySetting": 1,
    }
    assert stats.throttled_by_status == {429: 1}
    assert stats.call_arrivals == [now[0]] * 5  # every call's arrival, the throttled one too
    assert stats.arrivals == [now[0]]  # the bulk call's alone


def test_rate_limit_injected_throttle_uses_status_and_is_counted(
    sandbox: Sandbox, session: requests.Session
) -> None:
    sandbox.faults = Faults(throttle_status=200)
    sandbox.queue_faults("429")
    response = post_bulk(session, sandbox, [activity()])
    message = assert_envelope(response, 200, "MXAPIRateLimitExceededException")
    assert message == "API calls exceeded the limit of 25 in 5 second(s)"
    assert sandbox.activities() == []
    stats = sandbox.stats
    assert (stats.spurious_429, stats.throttled, stats.throttled_by_status) == (1, 0, {200: 1})


def test_daily_cap_refuses_until_the_next_day(session: requests.Session) -> None:
    now = [1000.0]
    with Sandbox(rate_limit=(2, 1.0), daily_limit=3, clock=lambda: now[0]) as sandbox:

        def status_at(moment: float) -> requests.Response:
            now[0] = moment
            return session.get(sandbox.url + ACTIVITY_TYPES_PATH, timeout=5)

        admitted = [status_at(t).status_code for t in (1000.0, 1010.0, 1020.0)]
        refused = [status_at(t) for t in (1030.0, 1030.0 + 3600, 86_399.0)]
        next_day = status_at(86_400.0).status_code
        stats = sandbox.stats
    assert admitted == [200, 200, 200]
    messages = {assert_envelope(response, 429, "MXAPIRateLimitExceededException") for response in refused}
    assert messages == {"API calls exceeded the daily limit of 3 calls for this account"}
    assert next_day == 200
    assert (stats.daily_refused, stats.daily_used, stats.throttled) == (3, 1, 0)


# --- Leads and opportunities (issue 13) ----------------------------------------------------

LEAD_FIELD_PATH = OPPORTUNITIES_BY_LEAD_FIELD_PATH


def by_lead_field(session: requests.Session, sandbox: Sandbox, name: str, value: str) -> requests.Response:
    body = {
        "Parameter": {"LookupName": name, "LookupValue": value, "SqlOperator": "="},
        "Columns": {"Include_CSV": "OpportunityId"},
        "Sorting": {"ColumnName": "CreatedOn", "Direction": "1"},
        "Paging": {"PageIndex": 1, "PageSize": 25},
    }
    return session.post(sandbox.url + LEAD_FIELD_PATH, json=body, timeout=5)


def test_default_leads_and_opportunities_consistent() -> None:
    records = {record.id: record for record in DEFAULT_OPPORTUNITY_RECORDS}
    assert set(records) == set(DEFAULT_OPPORTUNITIES)
    assert {record.lead_id for record in records.values()} <= {lead.id for lead in DEFAULT_LEADS}
    assert all(re.fullmatch(r"\+91-[0-9]{10}", lead.mobile or "") for lead in DEFAULT_LEADS)
    per_lead = Counter((record.lead_id, record.event_code) for record in records.values())
    assert per_lead[(DEFAULT_LEADS[45].id, OPPORTUNITY_TYPE)] == 2
    assert not any(lead_id == DEFAULT_LEADS[54].id for lead_id, _ in per_lead)


def test_opportunities_by_email_any_case(sandbox: Sandbox, session: requests.Session) -> None:
    response = by_lead_field(session, sandbox, "EmailAddress", "Customer1@Example.com")
    body = response.json()
    assert body["RecordCount"] == 2
    by_type = {item["OpportunityEvent"]: item for item in body["List"]}
    assert set(by_type) == {"12000", "12001"}
    item = by_type["12000"]
    assert item["OpportunityId"] == item["ProspectActivityId"] == DEFAULT_OPPORTUNITIES[0]
    assert item["RelatedProspectId"] == item["ProspectId"] == DEFAULT_LEADS[0].id
    assert by_type["12001"]["OpportunityId"] == DEFAULT_OPPORTUNITIES[45]


@pytest.mark.parametrize(
    ("value", "count"),
    [("+91-9000000046", 2), ("+91-9000000055", 0), ("9000000046", 0), ("+91 90000 00046", 0)],
)
def test_opportunities_by_mobile_exact_stored_form(
    sandbox: Sandbox, session: requests.Session, value: str, count: int
) -> None:
    body = by_lead_field(session, sandbox, "Mobile", value).json()
    assert body["RecordCount"] == len(body["List"]) == count
    if count:
        assert {item["OpportunityId"] for item in body["List"]} == set(DEFAULT_OPPORTUNITIES[90:92])


def test_opportunities_by_lead_field_bad_lookup_400(sandbox: Sandbox, session: requests.Session) -> None:
    response = by_lead_field(session, sandbox, "FavouriteColour", "blue")
    assert "LookupName" in assert_envelope(response, 400, "MXInvalidInputException")
    response = session.post(sandbox.url + LEAD_FIELD_PATH, json={"Paging": {}}, timeout=5)
    assert "Parameter" in assert_envelope(response, 400, "MXInvalidInputException")


@pytest.mark.parametrize(
    ("lead", "opportunity_type", "expected"),
    [(45, "12000", [90, 91]), (0, "12001", [45]), (0, None, [0, 45]), (54, "12000", [])],
)
def test_opportunities_of_lead(
    sandbox: Sandbox, session: requests.Session, lead: int, opportunity_type: str | None, expected: list[int]
) -> None:
    params = {"leadId": DEFAULT_LEADS[lead].id, "opportunityType": opportunity_type}
    body = session.post(sandbox.url + OPPORTUNITIES_OF_LEAD_PATH, params=params, timeout=5).json()
    assert body["RecordCount"] == len(expected)
    assert sorted(item["OpportunityId"] for item in body["List"]) == sorted(
        DEFAULT_OPPORTUNITIES[i] for i in expected
    )


def test_opportunities_of_unknown_lead(sandbox: Sandbox, session: requests.Session) -> None:
    response = session.post(sandbox.url + OPPORTUNITIES_OF_LEAD_PATH, params={"leadId": "nope"}, timeout=5)
    assert assert_envelope(response, 500, "MXInvalidEntityReferenceException") == "Lead not found"
    response = session.post(sandbox.url + OPPORTUNITIES_OF_LEAD_PATH, timeout=5)
    assert "leadId" in assert_envelope(response, 400, "MXInvalidInputException")


def test_opportunities_by_id_per_event_code(sandbox: Sandbox, session: requests.Session) -> None:
    ids = [DEFAULT_OPPORTUNITIES[0], DEFAULT_OPPORTUNITIES[50], "no-such-id"]
    body = {
        "SearchParameters": [
            {"EventCode": 12000, "ProspectActivityId": ids, "Columns": {"Include_CSV": ""}},
            {"EventCode": 12001, "ProspectActivityId": ids},
        ]
    }
    answer = session.post(sandbox.url + OPPORTUNITIES_BY_ID_PATH, json=body, timeout=5).json()
    assert [(entry["EventCode"], entry["RecordCount"]) for entry in answer] == [(12000, 1), (12001, 1)]
    assert answer[0]["Opportunities"][0]["ProspectActivityId"] == DEFAULT_OPPORTUNITIES[0]
    assert answer[0]["Opportunities"][0]["ProspectId"] == DEFAULT_LEADS[0].id
    assert answer[1]["Opportunities"][0]["ProspectActivityId"] == DEFAULT_OPPORTUNITIES[50]
    assert sandbox.stats.calls == {"GetOpportunitiesById": 1}


def test_opportunities_by_id_at_most_2000(sandbox: Sandbox, session: requests.Session) -> None:
    def post(count: int) -> requests.Response:
        search = {"EventCode": 12000, "ProspectActivityId": [f"id-{n}" for n in range(count)]}
        return session.post(
            sandbox.url + OPPORTUNITIES_BY_ID_PATH, json={"SearchParameters": [search]}, timeout=5
        )

    assert post(2000).json() == [{"EventCode": 12000, "RecordCount": 0, "Opportunities": []}]
    assert "2000" in assert_envelope(post(2001), 400, "MXInvalidInputException")


def test_lookup_calls_counted_in_stats(sandbox: Sandbox, session: requests.Session) -> None:
    for value in ("customer1@example.com", "customer2@example.com"):
        by_lead_field(session, sandbox, "EmailAddress", value)
    session.post(sandbox.url + OPPORTUNITIES_OF_LEAD_PATH, params={"leadId": DEFAULT_LEADS[0].id}, timeout=5)
    assert sandbox.stats.calls == {"GetOpportunitiesByUniqueLeadField": 2, "GetOpportunitiesOfLead": 1}
