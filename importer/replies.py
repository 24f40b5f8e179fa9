"""Reading LeadSquared's replies to a bulk add: every status and body CONTRACT.md lists, as rows.

`read_reply` never guesses which rows were created when a body does not say: such rows are
UNKNOWN, and the run settles them by look-up before it ends (importer.resume). The
`ExceptionMessage` of any reply reaches the row's message, since it is the only reason a user
will ever see.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

UNKNOWN_ADVICE = "looked up in LeadSquared before it is sent again"
NONE_CREATED = "LeadSquared created none of these and gave no reason"
_LIMIT = re.compile(r"exceeded the limit of\s+(\d+)\s+in\s+(\d+(?:\.\d+)?)\s+second", re.IGNORECASE)


class Outcome(StrEnum):
    POSTED = "posted"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RowResult:
    outcome: Outcome
    message: str | None = None
    activity_id: str | None = None


class ReplyKind(StrEnum):
    ROWS = "rows"  # each row has an outcome (posted, failed or unknown)
    THROTTLED = "throttled"  # over the rate limit (429, 403 or 200 saying so): nothing created
    RETRY = "retry"  # never reached the server (connection refused): safe to send again
    AUTH = "auth"  # 401: stop the run
    STOP = "stop"  # 404: wrong host or path for every call; stop the run, nothing created


@dataclass(frozen=True)
class Reply:
    kind: ReplyKind
    rows: tuple[RowResult, ...] = ()
    message: str = ""
    retry_after: float | None = None
    whole_call: bool = False  # the call was rejected as a whole, without saying which row is at fault
    limit: tuple[int, float] | None = None  # (N calls, S seconds) when the service told its limit
    created: int | None = None  # a count-only reply: how many of the call's rows were created

    @classmethod
    def all_rows(
        cls,
        count: int,
        outcome: Outcome,
        message: str | None = None,
        *,
        whole_call: bool = False,
        created: int | None = None,
    ) -> Reply:
        rows = tuple(RowResult(outcome, message) for _ in range(count))
        return cls(ReplyKind.ROWS, rows, whole_call=whole_call, created=created)


def read_reply(status: int, body: str, count: int, headers: dict[str, str] | None = None) -> Reply:
    """Read one bulk-add reply for a call of `count` activities."""
    data = json_or_none(body)
    throttled = throttle_of(status, body, headers)
    if throttled is not None:
        return throttled
    if status == 200:
        return _read_success(data, count)
    return _read_failure(status, data, body, count)


def throttle_of(status: int, body: str, headers: dict[str, str] | None = None) -> Reply | None:
    """A THROTTLED reply when the answer says the call was over the limit (any status), else None."""
    data = json_or_none(body)
    limit = limit_of(data, body)
    if limit is None and status != 429 and not _is_rate_error(data):
        return None
    return Reply(
        ReplyKind.THROTTLED,
        message=error_text(data) or f"HTTP {status}: over the rate limit",
        retry_after=retry_after(headers or {}),
        limit=limit,
    )


def _read_failure(status: int, data: Any, body: str, count: int) -> Reply:
    if status == 401:
        return Reply(
            ReplyKind.AUTH,
            message=error_text(data) or "401 Unauthorized: check LSQ_ACCESS_KEY and LSQ_SECRET_KEY",
        )
    if status == 404:
        return Reply(
            ReplyKind.STOP,
            message=f"HTTP 404 ({error_text(data) or snippet(body)}): the host or the API path is wrong; "
            "nothing was created",
        )
    if mx_error(data) is not None:
        # An MX...Exception body is LeadSquared rejecting the input: nothing created, retrying cannot help.
        return Reply.all_rows(count, Outcome.FAILED, mx_error(data), whole_call=True)
    if 400 <= status < 500:
        reason = error_text(data) or snippet(body)
        return Reply.all_rows(
            count, Outcome.FAILED, f"rejected with HTTP {status}: {reason}", whole_call=True
        )
    reason = error_text(data) or "without an explanation"
    return Reply.all_rows(count, Outcome.UNKNOWN, f"HTTP {status} {reason}; {UNKNOWN_ADVICE}")


def _read_success(data: Any, count: int) -> Reply:
    if isinstance(data, dict) and str(data.get("Status", "")).lower() == "error":
        return _read_status_error(data, count)
    rows = data.get("Response") if isinstance(data, dict) else data
    if isinstance(rows, list) and rows and all(isinstance(row, dict) for row in rows):
        return _read_row_results(rows, count)
    message = data.get("Message") if isinstance(data, dict) else None
    if isinstance(message, dict) and "Count" in message:
        return read_count(message["Count"], count)
    if isinstance(message, dict) and message.get("Id") and count == 1:
        return Reply(ReplyKind.ROWS, (RowResult(Outcome.POSTED, None, str(message["Id"])),))
    return Reply.all_rows(count, Outcome.UNKNOWN, f"unreadable success reply; {UNKNOWN_ADVICE}")


def _read_status_error(data: dict[str, Any], count: int) -> Reply:
    """200 with Status: Error: an MX type or no type is a rejection; any other type is a server fault."""
    kind = str(data.get("ExceptionType") or "")
    text = error_text(data) or "LeadSquared answered Status: Error without a reason"
    if not kind or kind.startswith("MX"):
        return Reply.all_rows(count, Outcome.FAILED, text, whole_call=True)
    # NullReferenceException and the like: whether anything was stored is not known, and
    # splitting the call to find "the bad row" would send stored rows again.
    return Reply.all_rows(count, Outcome.UNKNOWN, f"server fault ({text}); {UNKNOWN_ADVICE}")


def _read_row_results(rows: list[dict[str, Any]], count: int) -> Reply:
    by_number: dict[int, RowResult] = {}
    for position, row in enumerate(rows, start=1):
        number = row.get("RowNumber", position)
        if not isinstance(number, int) or isinstance(number, bool):
            number = position
        created = row.get("ActivityCreated")
        activity_id = row.get("ProspectActivityId") or row.get("Id")
        if created is True or (created is None and activity_id):
            by_number[number] = RowResult(Outcome.POSTED, None, str(activity_id) if activity_id else None)
        elif created is False:
            by_number[number] = RowResult(Outcome.FAILED, str(row.get("ExceptionMessage") or "not created"))
    missing = RowResult(Outcome.UNKNOWN, f"the reply did not mention this row; {UNKNOWN_ADVICE}")
    return Reply(ReplyKind.ROWS, tuple(by_number.get(n, missing) for n in range(1, count + 1)))


def read_count(created: Any, count: int) -> Reply:
    """A count-only reply: all created, none created (rejected), or some (settled by look-up)."""
    if isinstance(created, int) and not isinstance(created, bool):
        if created == count:
            return Reply.all_rows(count, Outcome.POSTED, created=created)
        if created == 0:
            return Reply.all_rows(count, Outcome.FAILED, NONE_CREATED, created=0)
    number = created if isinstance(created, int) and 0 < created < count else None
    return Reply.all_rows(
        count,
        Outcome.UNKNOWN,
        f"LeadSquared reported {created} of {count} created without saying which; {UNKNOWN_ADVICE}",
        created=number,
    )


def json_or_none(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def mx_error(data: Any) -> str | None:
    """'MXType: message' for an MX...Exception body, else None."""
    if isinstance(data, dict) and str(data.get("ExceptionType", "")).startswith("MX"):
        return f"{data['ExceptionType']}: {data.get('ExceptionMessage') or ''}".strip()
    return None


def error_text(data: Any) -> str | None:
    """What an error body says: 'Type: message', the message alone, or None."""
    if not isinstance(data, dict):
        return None
    kind, message = data.get("ExceptionType"), data.get("ExceptionMessage") or data.get("Message")
    message = message if isinstance(message, str) and message.strip() else None
    if kind and message:
        return f"{kind}: {message}"
    return message or (str(kind) if kind else None)


def limit_of(data: Any, body: str) -> tuple[int, float] | None:
    """(N, S) from "API calls exceeded the limit of N in S second(s)", wherever it appears."""
    text = error_text(data) if isinstance(data, dict) else None
    match = _LIMIT.search(text or body or "")
    return (int(match.group(1)), float(match.group(2))) if match else None


def _is_rate_error(data: Any) -> bool:
    return isinstance(data, dict) and str(data.get("ExceptionType", "")) == "MXAPIRateLimitExceededException"


def retry_after(headers: dict[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def snippet(body: str, limit: int = 200) -> str:
    text = " ".join(body.split())
    return text[:limit] + ("..." if len(text) > limit else "")
