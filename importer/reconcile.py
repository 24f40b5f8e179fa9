"""Settle rows whose outcome is unknown by looking at what the opportunity already holds.

A timeout, a dropped connection, a server fault or a count-only partial reply may or may not
have created activities. Before such rows are sent again, the opportunity's activities of that
event are read (newest first, large pages, stopping once they are older than the uncertain
call) and matched to the rows: an activity is a row's only if every field agrees both ways, and
rows and activities are paired by a maximum matching, so identical rows count as many times as
they occur and no activity serves two rows. Every item shape CONTRACT.md lists is read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from importer.client import ReadError
from importer.records import ActivityBody
from importer.throttle import RateLimiter

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # LeadSquared cuts larger pages to 1000: one read normally covers an opportunity
SMALL_PAGE_SIZE = 100  # for a service that refuses 1000
MAX_PAGES = 100
CLOCK_SKEW = timedelta(minutes=10)  # our clock against LeadSquared's, when deciding to stop paging


class Reader(Protocol):
    def activities_of_opportunity(
        self,
        opportunity_id: str,
        event: int,
        *,
        page: int,
        page_size: int,
        newest_first: bool = False,
        limiter: RateLimiter | None = None,
        attempts: int = 4,
    ) -> Any: ...


@dataclass(frozen=True)
class Found:
    """An activity read back from LeadSquared, normalised for matching."""

    activity_id: str | None
    event: int | None
    note: str
    owner: str
    when: str | None
    fields: dict[str, str]
    created_on: str | None = None  # when LeadSquared stored it (CreatedOn), 'YYYY-MM-DD HH:MM:SS'


def fetch_activities(
    client: Reader, limiter: RateLimiter, opportunity_id: str, event: int, *, since: datetime | None = None
) -> list[Found]:
    """The activities of `event` on the opportunity, newest first, back to `since` when given.

    Raises ReadError/AuthError when it cannot read them.
    """
    size = PAGE_SIZE
    try:
        return _pages(client, limiter, opportunity_id, event, since=since, size=size)
    except ReadError as exc:
        if "PageSize" not in str(exc):
            raise
        log.info("%s: page size %d refused; reading %d at a time", opportunity_id, size, SMALL_PAGE_SIZE)
        return _pages(client, limiter, opportunity_id, event, since=since, size=SMALL_PAGE_SIZE)


def _pages(
    client: Reader,
    limiter: RateLimiter,
    opportunity_id: str,
    event: int,
    *,
    since: datetime | None,
    size: int,
) -> list[Found]:
    found: list[Found] = []
    oldest_wanted = (since - CLOCK_SKEW).strftime("%Y-%m-%d %H:%M:%S") if since else None
    for page in range(1, MAX_PAGES + 1):
        data = client.activities_of_opportunity(
            opportunity_id, event, page=page, page_size=size, newest_first=True, limiter=limiter
        )
        items = data.get("List") if isinstance(data, dict) else None
        items = items if isinstance(items, list) else []
        batch = [read_item(item) for item in items if isinstance(item, dict)]
        found.extend(batch)
        total = data.get("RecordCount") if isinstance(data, dict) else None
        if not items or (isinstance(total, int) and len(found) >= total) or len(items) < size:
            break
        last = batch[-1].created_on if batch else None
        if oldest_wanted and last and last < oldest_wanted:
            break  # newest first: everything further is older than the uncertain call
    return found


def read_item(item: dict[str, Any]) -> Found:
    """One item of GetActivitiesOfOpportunity, whichever names it uses."""
    activity_id = _first(item, "ProspectActivityId", "Id", "ActivityId")
    event = _first(item, "ActivityEvent", "EventCode")
    when = _first(item, "ActivityDateTime", "CreatedOn")
    created = item.get("CreatedOn")
    return Found(
        activity_id=str(activity_id) if activity_id else None,
        event=_int_or_none(event),
        note=_text(_first(item, "ActivityNote", "ActivityEvent_Note")),
        owner=_text(
            _first(item, "ActivityOwnerEmail", "OwnerEmailAddress", "CreatedByEmailAddress")
        ).casefold(),
        when=moment(when) if when else None,
        fields=_fields(item),
        created_on=moment(created) if created else None,
    )


def _first(item: dict[str, Any], *names: str) -> Any:
    return next((item[name] for name in names if item.get(name) not in (None, "")), None)


def _fields(item: dict[str, Any]) -> dict[str, str]:
    """Custom fields with a value, from Fields, Data, an ActivityFields object or flat mx_ keys."""
    fields: dict[str, str] = {}
    for entry in _list(item.get("Fields")):
        if isinstance(entry, dict) and entry.get("SchemaName"):
            fields[str(entry["SchemaName"])] = _text(entry.get("Value"))
    for entry in _list(item.get("Data")):
        if isinstance(entry, dict) and entry.get("Key"):
            fields[str(entry["Key"])] = _text(entry.get("Value"))
    nested = item.get("ActivityFields")
    for source in (nested if isinstance(nested, dict) else {}, item):
        for key, value in source.items():
            if str(key).startswith("mx_"):
                fields[str(key)] = _text(value)
    return {key: value for key, value in fields.items() if value != ""}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def matches(body: ActivityBody, found: Found) -> bool:
    """Whether an activity read back is the one this body would have created: all fields, both ways."""
    if found.event is not None and found.event != body["ActivityEvent"]:
        return False
    if found.owner and found.owner != body["ActivityOwnerEmail"].casefold():
        return False
    if _text(body.get("ActivityNote")) != found.note:
        return False
    sent_when = body.get("ActivityDateTime")
    if sent_when and found.when is not None and moment(sent_when) != found.when:
        return False
    sent = {f["SchemaName"]: _text(f["Value"]) for f in body.get("Fields", []) if _text(f["Value"]) != ""}
    if set(sent) != set(found.fields):  # an activity with a field the row lacks is not that row
        return False
    return all(_same_value(value, found.fields[name]) for name, value in sent.items())


def assign(
    unknown: Sequence[ActivityBody],
    found: Iterable[Found],
    taken: set[str],
    posted_without_id: Sequence[ActivityBody] = (),
) -> list[tuple[bool, str | None]]:
    """For each unknown row (in order): whether a distinct matching activity exists, and its id.

    Activities whose ids the ledger already holds are not candidates. Rows the ledger knows as
    posted without an id (count-only replies) are matched first and keep their match; then the
    unknown rows are added by augmenting paths (Kuhn's algorithm), which gives a maximum matching:
    a first-come choice could take the one activity a later row alone could match.
    """
    pool = [item for item in found if item.activity_id is None or item.activity_id not in taken]
    rows = [*posted_without_id, *unknown]
    edges = [[j for j, item in enumerate(pool) if matches(body, item)] for body in rows]
    owner_of: dict[int, int] = {}  # activity index -> row index
    for i in range(len(rows)):
        _augment(i, edges, owner_of, set())
    row_of = {i: j for j, i in owner_of.items()}
    offset = len(posted_without_id)
    results = []
    for i in range(offset, len(rows)):
        j = row_of.get(i)
        results.append((j is not None, pool[j].activity_id if j is not None else None))
    return results


def _augment(i: int, edges: list[list[int]], owner_of: dict[int, int], seen: set[int]) -> bool:
    free = next((j for j in edges[i] if j not in owner_of), None)
    if free is not None:  # a free activity first: keeps the pairing in reading order
        owner_of[free] = i
        return True
    for j in edges[i]:
        if j in seen:
            continue
        seen.add(j)
        if j not in owner_of or _augment(owner_of[j], edges, owner_of, seen):
            owner_of[j] = i
            return True
    return False


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


_READ_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y")
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def moment(value: object) -> str:
    """A date-time in any format the read APIs use, as 'YYYY-MM-DD HH:MM:SS' UTC (else the text)."""
    text = _text(value)
    ms_date = _MS_DATE.match(text)
    if ms_date:  # /Date(ms+0000)/: milliseconds since the epoch, UTC; the offset is display only
        return datetime.fromtimestamp(int(ms_date.group(1)) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC)
        return parsed.strftime("%Y-%m-%d %H:%M:%S")
    for fmt in _READ_FORMATS:
        try:
            return datetime.strptime(text, fmt).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    return text


def _same_value(sent: str, found: str) -> bool:
    if sent.strip().casefold() == found.strip().casefold():
        return True
    try:  # numbers may come back normalised: "12.5" as "12.50"
        return Decimal(sent) == Decimal(found)
    except InvalidOperation:
        return moment(sent) == moment(found)  # dates as "2024-03-31" or "3/31/2024 12:00:00 AM"
