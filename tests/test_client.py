from __future__ import annotations

import json

import pytest

from importer.client import Credentials, Outcome, ReplyKind, base_url, read_reply
from importer.errors import UsageError

MX = json.dumps(
    {
        "Status": "Error",
        "ExceptionType": "MXInvalidInputException",
        "ExceptionMessage": "Opportunity not found",
    }
)


def outcomes(reply):
    return [(r.outcome, r.message, r.activity_id) for r in reply.rows]


def test_reply_per_row_results_mix_created_and_rejected():
    body = json.dumps(
        {
            "Response": [
                {
                    "RowNumber": 1,
                    "ActivityCreated": True,
                    "ProspectActivityId": "a1",
                    "ExceptionMessage": None,
                },
                {
                    "RowNumber": 2,
                    "ActivityCreated": False,
                    "ProspectActivityId": None,
                    "ExceptionMessage": "Invalid value for mx_Custom_2",
                },
            ]
        }
    )
    reply = read_reply(200, body, 2)
    assert reply.kind is ReplyKind.ROWS
    assert outcomes(reply) == [
        (Outcome.POSTED, None, "a1"),
        (Outcome.FAILED, "Invalid value for mx_Custom_2", None),
    ]


def test_reply_rows_not_mentioned_are_unknown_not_guessed():
    body = json.dumps({"Response": [{"RowNumber": 2, "ActivityCreated": True, "ProspectActivityId": "b"}]})
    reply = read_reply(200, body, 3)
    assert [r.outcome for r in reply.rows] == [Outcome.UNKNOWN, Outcome.POSTED, Outcome.UNKNOWN]


@pytest.mark.parametrize(
    ("status", "body", "count", "expected"),
    [
        (200, '{"Status": "Success", "Message": {"Count": 3}}', 3, [Outcome.POSTED] * 3),
        (200, '{"Status": "Success", "Message": {"Count": 2}}', 3, [Outcome.UNKNOWN] * 3),
        (200, '{"Status": "Success", "Message": {"Id": "x"}}', 1, [Outcome.POSTED]),
        (200, '{"Status": "Success", "Message": {"Id": "x"}}', 2, [Outcome.UNKNOWN] * 2),
        (200, '{"Status": "Error", "ExceptionMessage": "nope"}', 2, [Outcome.FAILED] * 2),
        (200, "<html>oops</html>", 2, [Outcome.UNKNOWN] * 2),
        (400, MX, 2, [Outcome.FAILED] * 2),
        (500, MX, 2, [Outcome.FAILED] * 2),
        (400, "bad request", 1, [Outcome.FAILED]),
        (500, "<html>Internal Server Error</html>", 2, [Outcome.UNKNOWN] * 2),
        (502, "", 1, [Outcome.UNKNOWN]),
        (503, '{"Status": "Error", "Message": "busy"}', 1, [Outcome.UNKNOWN]),
        (504, "", 1, [Outcome.UNKNOWN]),
    ],
)
def test_reply_shapes(status, body, count, expected):
    reply = read_reply(status, body, count)
    assert reply.kind is ReplyKind.ROWS
    assert [r.outcome for r in reply.rows] == expected


def test_reply_mx_500_keeps_the_message():
    (row,) = read_reply(500, MX, 1).rows
    assert row.message == "MXInvalidInputException: Opportunity not found"


def test_reply_429_is_throttled_and_reads_retry_after():
    reply = read_reply(
        429, '{"Status":"Error","ExceptionType":"MXAPIRateLimitExceededException"}', 3, {"retry-after": "2"}
    )
    assert (reply.kind, reply.retry_after, reply.rows) == (ReplyKind.THROTTLED, 2.0, ())
    assert read_reply(429, "", 3).retry_after is None


def test_reply_401_stops():
    assert (
        read_reply(
            401,
            '{"Status":"Error","ExceptionType":"MXUnAuthorizedAccessException","ExceptionMessage":"Invalid keys"}',
            1,
        ).kind
        is ReplyKind.AUTH
    )


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("api-in21.leadsquared.com", "https://api-in21.leadsquared.com"),
        ("https://api.leadsquared.com/v2/", "https://api.leadsquared.com"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("http://localhost:9", "http://localhost:9"),
        ("http://[::1]:9", "http://[::1]:9"),
    ],
)
def test_base_url(host, url):
    assert base_url(host) == url


@pytest.mark.parametrize(
    "host", ["http://api.leadsquared.com", "http://10.0.0.5:80", "ftp://x", "", "https://"]
)
def test_base_url_refuses_clear_text_off_loopback_and_nonsense(host):
    with pytest.raises(UsageError):
        base_url(host)


def test_credentials_come_from_the_environment_and_hide_in_repr():
    creds = Credentials.from_env({"LSQ_ACCESS_KEY": "u$abc", "LSQ_SECRET_KEY": "s3cr3t-value"})
    assert creds.headers() == {"x-LSQ-AccessKey": "u$abc", "x-LSQ-SecretKey": "s3cr3t-value"}
    assert "s3cr3t" not in repr(creds)
    with pytest.raises(UsageError, match="LSQ_SECRET_KEY not set"):
        Credentials.from_env({"LSQ_ACCESS_KEY": "u$abc"})
