"""Settle rows whose outcome is unknown by looking at what the opportunity already holds.

A timeout or a dropped connection may or may not have created activities. Before such rows are
sent again, the opportunity's activities of that event are paged through and each row's payload
is matched against them, counting multiplicity, tolerating every item shape CONTRACT.md lists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from importer.client import LsqClient
from importer.records import ActivityBody
from importer.throttle import RateLimiter

log = logging.getLogger(__name__)

ACTIVITIES_PATH = "/v2/OpportunityManagement.svc/GetActivitiesOfOpportunity"
PAGE_SIZE = 25
MAX_PAGES = 400  # 10,000 activities of one event on one opportunity: far beyond any real import


@dataclass(frozen=True)
class Found:
    """An activity read back from LeadSquared, normalised for matching."""

    activity_id: str | None
    event: int | None
    note: str
    owner: str
    when: str | None
    fields: dict[str, str]


def fetch_activities(client: LsqClient, limiter: RateLimiter, opportunity_id: str, event: int) -> list[Found]:
    """Every activity of `event` on the opportunity (raises ReadError/AuthError if it cannot)."""
    found: list[Found] = []
    for page in range(1, MAX_PAGES + 1):
        data = client.read(
            "POST",
            ACTIVITIES_PATH,
            params={"opportunityId": opportunity_id, "activityEventCode": event},
            body={"Paging": {"PageIndex": page, "PageSize": PAGE_SIZE}},
            limiter=limiter,
        )
        items = data.get("List") if isinstance(data, dict) else None
        items = items if isinstance(items, list) else []
        found.extend(read_item(item) for item in items if isinstance(item, dict))
        total = data.get("RecordCount") if isinstance(data, dict) else None
        if not items or (isinstance(total, int) and len(found) >= total) or len(items) < PAGE_SIZE:
            break
    return found


def read_item(item: dict[str, Any]) -> Found:
    """One item of GetActivitiesOfOpportunity, whichever names it uses."""
    activity_id = _first(item, "ProspectActivityId", "Id", "ActivityId")
    event = _first(item, "ActivityEvent", "EventCode")
    when = _first(item, "ActivityDateTime", "CreatedOn")
    return Found(
        activity_id=str(activity_id) if activity_id else None,
        event=_int_or_none(event),
        note=_text(item.get("ActivityNote")),
        owner=_text(_first(item, "ActivityOwnerEmail", "OwnerEmailAddress")).casefold(),
        when=_moment(when) if when else None,
        fields=_fields(item),
    )


def _first(item: dict[str, Any], *names: str) -> Any:
    return next((item[name] for name in names if item.get(name) not in (None, "")), None)


def _fields(item: dict[str, Any]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for entry in item.get("Fields") or []:
        if isinstance(entry, dict) and entry.get("SchemaName"):
            fields[str(entry["SchemaName"])] = _text(entry.get("Value"))
    for entry in item.get("Data") or []:
        if isinstance(entry, dict) and entry.get("Key"):
            fields[str(entry["Key"])] = _text(entry.get("Value"))
    for key, value in item.items():
        if key.startswith("mx_"):
            fields[key] = _text(value)
    return fields


def matches(body: ActivityBody, found: Found) -> bool:
    """Whether an activity read back is the one this body would have created."""
    if found.event is not None and found.event != body["ActivityEvent"]:
        return False
    if found.owner and found.owner != body["ActivityOwnerEmail"].casefold():
        return False
    if _text(body.get("ActivityNote")) != found.note:
        return False
    sent_when = body.get("ActivityDateTime")
    if sent_when and found.when is not None and _moment(sent_when) != found.when:
        return False
    return all(_same_value(f["Value"], found.fields.get(f["SchemaName"])) for f in body.get("Fields", []))


def assign(
    unknown: list[ActivityBody],
    found: Iterable[Found],
    taken: set[str],
    posted_without_id: list[ActivityBody] = (),  # type: ignore[assignment]
) -> list[tuple[bool, str | None]]:
    """For each unknown row (in order): whether a distinct matching activity exists, and its id.

    Activities whose ids the journal already holds are not candidates; rows the journal knows as
    posted without an id (count-only replies) claim their matches first. So identical rows are
    counted, never collapsed: two identical unknown rows need two matching activities.
    """
    pool = [item for item in found if item.activity_id is None or item.activity_id not in taken]
    used = [False] * len(pool)
    for body in posted_without_id:
        _claim(body, pool, used)
    return [_claim(body, pool, used) for body in unknown]


def _claim(body: ActivityBody, pool: list[Found], used: list[bool]) -> tuple[bool, str | None]:
    for index, item in enumerate(pool):
        if not used[index] and matches(body, item):
            used[index] = True
            return True, item.activity_id
    return False, None


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


_READ_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y")


def _moment(value: object) -> str:
    """A date-time in any format the read APIs use, as 'YYYY-MM-DD HH:MM:SS' (else the text)."""
    text = _text(value)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        pass
    for fmt in _READ_FORMATS:
        try:
            return datetime.strptime(text, fmt).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    return text


def _same_value(sent: str, found: str | None) -> bool:
    if found is None:
        return False
    if sent.strip().casefold() == found.strip().casefold():
        return True
    try:  # numbers may come back normalised: "12.5" as "12.50"
        return Decimal(sent) == Decimal(found)
    except InvalidOperation:
        return _moment(sent) == _moment(found)  # dates as "2024-03-31" or "3/31/2024 12:00:00 AM"
