"""Requests and replies as the service sees them, and reading a request's parts strictly."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from typing import Any

from importer.sandbox._account import DEFAULT_PAGE_SIZE, MAX_ACTIVITIES_PER_CALL, MAX_PAGE_SIZE
from importer.sandbox._rules import show

INVALID_INPUT = "MXInvalidInputException"
UNAUTHORIZED = "MXUnAuthorizedAccessException"
RATE_LIMITED = "MXAPIRateLimitExceededException"
_INTEGER_RE = re.compile(r"-?[0-9]+")
_DIGITS_RE = re.compile(r"[0-9]+")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    arrived: float


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False  # close the connection after answering (the body may be unread)
    drop: bool = False  # close the connection without answering
    delay: float = 0.0  # seconds to wait before answering


def json_reply(status: int, payload: object) -> Reply:
    return Reply(status, json.dumps(payload).encode())


def error(status: int, message: str, exception_type: str | None = INVALID_INPUT) -> Reply:
    """The error envelope; exception_type None leaves ExceptionType out (seen on sibling endpoints)."""
    envelope = {"Status": "Error", "ExceptionType": exception_type, "ExceptionMessage": message}
    if exception_type is None:
        del envelope["ExceptionType"]
    return json_reply(status, envelope)


def plain_error(status: int) -> Reply:
    # what a gateway in front of the API answers: HTML, not the JSON envelope
    title = f"{status} {HTTPStatus(status).phrase}"
    return Reply(status, f"<html><body><h1>{title}</h1></body></html>".encode(), "text/html")


def plain_text(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), "text/plain; charset=utf-8")


class Rejected(Exception):
    """Raised while handling a request to answer it with an error envelope."""

    def __init__(self, status: int, message: str, exception_type: str = INVALID_INPUT) -> None:
        super().__init__(message)
        self.reply = error(status, message, exception_type)


def is_digits(text: str) -> bool:
    return _DIGITS_RE.fullmatch(text) is not None


def query_value(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


def required_param(request: Request, name: str) -> str:
    value = query_value(request, name)
    if not value:
        raise Rejected(400, f"The query parameter {name} is required")
    return value


def integer_param(request: Request, name: str) -> int | None:
    raw = query_value(request, name)
    if not raw:
        return None
    if _INTEGER_RE.fullmatch(raw) is None:
        raise Rejected(400, f"The query parameter {name} must be an integer, not {show(raw)}")
    return int(raw)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def json_body(request: Request) -> object:
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise Rejected(400, f"Content-Type must be application/json, not {show(content_type)}")
    try:
        return json.loads(request.body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise Rejected(400, f"The request body is not valid JSON: {exc}") from None


def object_body(request: Request) -> dict[str, Any]:
    """An optional JSON object body: no body at all reads as {}."""
    if not request.body.strip():
        return {}
    body = json_body(request)
    if not isinstance(body, dict):
        raise Rejected(400, 'The body must be a JSON object, e.g. {"Paging": {...}}')
    return body


def activity_array(request: Request) -> list[object]:
    body = json_body(request)
    if not isinstance(body, list) or not body:
        raise Rejected(400, "The body must be a JSON array of 1 to 25 activity objects")
    if len(body) > MAX_ACTIVITIES_PER_CALL:
        raise Rejected(
            400,
            f"At most {MAX_ACTIVITIES_PER_CALL} activities can be posted in one call (max 25), "
            f"got {len(body)}",
        )
    return body


def _count(value: object, *, strings: bool) -> int | None:
    """An int, or with strings=True also a string of digits ("50"); None otherwise."""
    if type(value) is int:
        return value
    if strings and isinstance(value, str) and is_digits(value):
        return int(value)
    return None


_PAGING_HELP = 'Paging must be {"PageIndex": >= 1, "PageSize": >= 1} or {"Offset": >= 0, "RowCount": >= 1}'


def paging(body: dict[str, Any]) -> tuple[int, int]:
    """(rows to skip, page size) from a body's Paging; page sizes above MAX_PAGE_SIZE are cut."""
    if "Paging" not in body:
        return 0, DEFAULT_PAGE_SIZE
    given = body["Paging"]
    if isinstance(given, dict) and ("Offset" in given or "RowCount" in given):
        offset = _count(given.get("Offset", 0), strings=True)
        size = _count(given.get("RowCount", DEFAULT_PAGE_SIZE), strings=True)
        if offset is not None and size is not None and offset >= 0 and size >= 1:
            return offset, min(size, MAX_PAGE_SIZE)
    elif isinstance(given, dict):
        index = _count(given.get("PageIndex"), strings=False)
        size = _count(given.get("PageSize"), strings=False)
        if index is not None and size is not None and index >= 1 and size >= 1:
            size = min(size, MAX_PAGE_SIZE)
            return (index - 1) * size, size
    raise Rejected(400, _PAGING_HELP)


_SORT_COLUMNS = ("CreatedOn", "ActivityDateTime")
_DIRECTIONS = {0: False, 1: True, "0": False, "1": True}  # 1: descending (newest first)


def sorting(body: dict[str, Any], default_column: str = "CreatedOn") -> tuple[str, bool]:
    """(column, descending) from a body's Sorting; newest first by CreatedOn without one."""
    if "Sorting" not in body:
        return default_column, True
    given = body["Sorting"]
    column = given.get("ColumnName") if isinstance(given, dict) else None
    direction = given.get("Direction", 1) if isinstance(given, dict) else None
    if column in _SORT_COLUMNS and type(direction) in (int, str) and direction in _DIRECTIONS:
        return str(column), _DIRECTIONS[direction]
    raise Rejected(
        400, f'Sorting must be {{"ColumnName": one of {", ".join(_SORT_COLUMNS)}, "Direction": 0 or 1}}'
    )
