from __future__ import annotations

import json

import pytest

from importer.replies import NONE_CREATED, Outcome, ReplyKind, read_reply


@pytest.mark.parametrize("status", [429, 403, 200])
def test_read_reply_throttle_message_on_any_status_is_throttled_with_its_limit(status):
    body = json.dumps(
        {
            "Status": "Error",
            "ExceptionType": "MXAPIRateLimitExceededException",
            "ExceptionMessage": "API calls exceeded the limit of 10 in 5 second(s)",
        }
    )
    reply = read_reply(status, body, 3)
    assert reply.kind is ReplyKind.THROTTLED
    assert reply.limit == (10, 5.0)


def test_read_reply_404_stops_the_run():
    assert read_reply(404, "Not Found", 2).kind is ReplyKind.STOP


def test_read_reply_server_fault_in_a_200_leaves_rows_unknown_and_is_not_split():
    body = json.dumps(
        {
            "Status": "Error",
            "ExceptionType": "NullReferenceException",
            "ExceptionMessage": "There was an error processing the request.",
        }
    )
    reply = read_reply(200, body, 4)
    assert {row.outcome for row in reply.rows} == {Outcome.UNKNOWN}
    assert not reply.whole_call
    assert "There was an error processing the request." in (reply.rows[0].message or "")


def test_read_reply_exception_message_without_a_type_reaches_the_row():
    reply = read_reply(200, json.dumps({"Status": "Error", "ExceptionMessage": "Invalid lead ID"}), 2)
    assert [row.outcome for row in reply.rows] == [Outcome.FAILED, Outcome.FAILED]
    assert reply.rows[0].message == "Invalid lead ID"


@pytest.mark.parametrize("status", [500, 502, 400])
def test_read_reply_exception_message_reaches_the_row_whatever_the_status(status):
    reply = read_reply(
        status, json.dumps({"Status": "Error", "ExceptionMessage": "Opportunity is locked"}), 1
    )
    assert "Opportunity is locked" in (reply.rows[0].message or "")


@pytest.mark.parametrize(
    ("created", "outcome", "count"),
    [(3, Outcome.POSTED, 3), (0, Outcome.FAILED, None), (2, Outcome.UNKNOWN, 2)],
)
def test_read_reply_count_only(created, outcome, count):
    reply = read_reply(200, json.dumps({"Status": "Success", "Message": {"Count": created}}), 3)
    assert {row.outcome for row in reply.rows} == {outcome}
    if outcome is Outcome.FAILED:
        assert reply.rows[0].message == NONE_CREATED
    assert reply.created == (count if outcome is not Outcome.FAILED else 0)
