"""Find each row's opportunity when the sheet carries the lead's email or phone, not the opportunity id.

A mapping with `opportunity_id: {lookup: {lead_field, column, opportunity_type}}` puts the
normalised lead value (an email case-folded, a phone as LeadSquared stores it, `+91-XXXXXXXXXX`)
in each row's opportunity id; `resolve` then makes one GetOpportunitiesByUniqueLeadField call per
distinct value (newest first), through the run's rate limiter, and either puts the opportunity's
id in the row or fails the row at stage `lookup` before anything is sent:

- no lead has that value (or the lead has no opportunity at all);
- the lead has no opportunity of the mapped type;
- the lead has several of that type: they are listed, and none is chosen unless `pick: newest`.

A mapping of plain ids that names `opportunity_type` has its distinct ids checked in bulk with
GetOpportunitiesById (2,000 a call), so an unknown id fails its rows instead of costing a call each.

Answers are kept per account in the cache folder (`lookups-<host>-org<org>.json`): an opportunity
found for `LOOKUP_TTL_HOURS` (a week: a nightly run does not repeat yesterday's look-ups), a value
that found none for `MISS_TTL_HOURS` (an hour: a rerun right after makes no call, while a lead
created in LeadSquared since is found the next night). `--refresh-metadata` ignores them.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from importer._cache import read_entries, write_entries
from importer.mapping import LookupSpec, Mapping
from importer.planner import plan_batches
from importer.records import PlannedRow, RowError, Stage

if TYPE_CHECKING:
    from importer.client import LsqClient
    from importer.runner import Prepared
    from importer.throttle import RateLimiter

log = logging.getLogger(__name__)

LOOKUP_TTL_HOURS = 24.0 * 7
MISS_TTL_HOURS = 1.0
MAX_IDS_PER_CALL = 2000  # GetOpportunitiesById (CONTRACT.md)
PAGE_SIZE = 25
_MAX_LISTED = 10
_CACHE_VERSION = 1
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_PHONE_PUNCTUATION = re.compile(r"[\s\-().\u00a0/]+")
_EXCEL_MANGLED = re.compile(r"^\d(\.\d+)?[eE]\+\d+$")
_NATIONAL_DIGITS = 10  # an Indian mobile number; other lengths must be written with their country code


# --- Values as LeadSquared stores them -------------------------------------------------------


def is_phone_field(lead_field: str) -> bool:
    folded = lead_field.casefold()
    return "phone" in folded or "mobile" in folded


def is_email_field(lead_field: str) -> bool:
    return "email" in lead_field.casefold()


def normalise_phone(text: str, default_country_code: str = "91") -> str:
    """A phone number as LeadSquared stores it, '+CC-NNNNNNNNNN'; ValueError when it cannot be told.

    '98765 43210', '098765-43210', '(987) 654-3210', '+91 98765 43210', '0091-9876543210',
    '919876543210' and '+91-9876543210' are all '+91-9876543210' with the default code 91.
    """
    raw = text.strip()
    if _EXCEL_MANGLED.match(raw):
        raise ValueError(f"'{raw}' looks corrupted by Excel (a long number shown in scientific notation)")
    explicit = re.match(r"^\s*(?:\+|00)(\d{1,4})\s*-", raw)  # '+1-5551234567': the code is written apart
    compact = _PHONE_PUNCTUATION.sub("", raw)
    international = compact.startswith(("+", "00"))
    digits = compact.removeprefix("+") if compact.startswith("+") else compact
    if international and not compact.startswith("+"):
        digits = compact[2:]
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(f"not a phone number: '{raw}'")
    code = default_country_code
    if explicit:
        code, national = explicit.group(1), digits[len(explicit.group(1)) :]
    elif digits.startswith(code) and len(digits) == len(code) + _NATIONAL_DIGITS:
        national = digits[len(code) :]
    elif international:
        raise ValueError(
            f"cannot tell the country code of '{raw}': write it as +CC-NUMBER (LeadSquared stores "
            f"+{default_country_code}-XXXXXXXXXX)"
        )
    else:
        national = digits[1:] if digits.startswith("0") else digits
        if len(national) != _NATIONAL_DIGITS:
            raise ValueError(
                f"'{raw}' has {len(national)} digits, not the {_NATIONAL_DIGITS} of a mobile number "
                f"(write other numbers with their country code, as +CC-NUMBER)"
            )
    if not national:
        raise ValueError(f"not a phone number: '{raw}'")
    return f"+{code}-{national}"


def normalise_email(text: str) -> str:
    value = text.strip().casefold()
    if not _EMAIL.match(value):
        raise ValueError(f"not a valid email address: '{text.strip()}'")
    return value


def lookup_converter(spec: LookupSpec) -> Callable[[str], str]:
    """Trimmed cell text to the value looked up (ValueError: the row fails validation)."""
    if is_phone_field(spec.lead_field):
        return lambda text: normalise_phone(text, spec.default_country_code)
    if is_email_field(spec.lead_field):
        return normalise_email
    return str.strip


# --- The answers, kept per account -----------------------------------------------------------


class LookupCache:
    """One JSON file per account of look-up answers, each stamped with when it was fetched."""

    def __init__(
        self,
        path: Path | None,
        *,
        hit_ttl_hours: float = LOOKUP_TTL_HOURS,
        miss_ttl_hours: float = MISS_TTL_HOURS,
        refresh: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._ttl = {True: hit_ttl_hours * 3600, False: miss_ttl_hours * 3600}
        self._refresh = refresh
        self._clock = clock
        self._entries: dict[str, Any] | None = None
        self._dirty = False

    def get(self, key: str) -> Any:
        if self._refresh:
            return None
        entry = self._load().get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("at"), int | float):
            return None
        age = self._clock() - entry["at"]
        return entry.get("data") if 0 <= age < self._ttl[bool(entry.get("data"))] else None

    def put(self, key: str, data: object) -> None:
        self._load()[key] = {"at": self._clock(), "data": data}
        self._dirty = True

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        now = self._clock()
        longest = max(self._ttl.values())
        entries = {key: e for key, e in self._load().items() if now - e.get("at", 0) < longest}
        if write_entries(
            self.path,
            _CACHE_VERSION,
            entries,
            "the look-up cache",
            "cannot keep the look-ups (%s); they are made again next run",
        ):
            self._dirty = False

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = read_entries(self.path, _CACHE_VERSION)
        return self._entries


def lookup_cache_path(cache_dir: Path, base_url: str, org: str | None) -> Path:
    """The look-up cache of one host and account, beside the account's metadata cache."""
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", (urlsplit(base_url).netloc or base_url).lower())
    if org:
        name += "-org" + re.sub(r"[^A-Za-z0-9.-]+", "_", org)
    return cache_dir / f"lookups-{name}.json"


# --- Reading the answers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An opportunity a look-up found: its id (None when the answer left it out), type, lead, creation."""

    opportunity_id: str | None
    opportunity_type: int | None
    lead_id: str | None
    created_on: str

    def to_json(self) -> list[object]:
        return [self.opportunity_id, self.opportunity_type, self.lead_id, self.created_on]

    @classmethod
    def from_json(cls, data: list[Any]) -> Candidate:
        return cls(data[0], data[1], data[2], data[3])


def _items(data: object) -> tuple[list[dict[str, Any]], int | None]:
    if isinstance(data, list):
        return [item for item in data if isinstance(item, dict)], None
    if not isinstance(data, dict):
        return [], None
    items: list[Any] = next(
        (data[key] for key in ("List", "Opportunities", "Data") if isinstance(data.get(key), list)), []
    )
    count = data.get("RecordCount")
    return [item for item in items if isinstance(item, dict)], count if isinstance(count, int) else None


def parse_candidate(item: dict[str, Any]) -> Candidate:
    """One opportunity of an answer; its id is `OpportunityId` or `ProspectActivityId` (CONTRACT.md)."""
    ident = next((item[k] for k in ("OpportunityId", "ProspectActivityId") if item.get(k)), None)
    kind = next((item[k] for k in ("OpportunityEvent", "EventCode", "ActivityEvent") if item.get(k)), None)
    lead = next((item[k] for k in ("RelatedProspectId", "ProspectId", "LeadId") if item.get(k)), None)
    created = next((item[k] for k in ("CreatedOn", "CreatedOnUtc", "ModifiedOn") if item.get(k)), "")
    kind_code = int(kind) if isinstance(kind, int | str) and str(kind).strip().isdigit() else None
    return Candidate(str(ident) if ident else None, kind_code, str(lead) if lead else None, str(created))


# --- The look-ups ----------------------------------------------------------------------------


@dataclass
class LookupReport:
    """What the look-up step did: calls made, and the rows it failed."""

    calls: int = 0
    cached: int = 0  # distinct values answered from the cache
    errors: list[RowError] = field(default_factory=list)


class Resolver:
    """Looks up lead values and opportunity ids through one client and limiter, with the cache."""

    def __init__(
        self,
        client: LsqClient,
        cache: LookupCache,
        *,
        limiter: RateLimiter | None = None,
        attempts: int = 4,
        on_call: Callable[[], None] | None = None,
    ) -> None:
        self._client, self._cache, self._limiter, self._attempts = client, cache, limiter, attempts
        self._on_call = on_call or (lambda: None)
        self.calls = 0

    def _called(self) -> None:
        self.calls += 1
        self._on_call()

    def candidates(self, lead_field: str, value: str, opportunity_type: int) -> list[Candidate] | None:
        """The lead's opportunities of the type, newest first ([]: none of it; None: no opportunity at all)."""
        key = f"lead/{lead_field}/{value}"
        cached = self._cache.get(key)
        if cached is None:
            found = self._fetch_by_lead_field(lead_field, value)
            cached = [c.to_json() for c in found]
            self._cache.put(key, cached)
        found = [Candidate.from_json(item) for item in cached]
        if not found:
            return None
        of_type = [c for c in found if c.opportunity_type == opportunity_type]
        if any(c.opportunity_id is None for c in of_type):
            of_type = self._of_lead(of_type, opportunity_type)
        return of_type

    def _fetch_by_lead_field(self, lead_field: str, value: str) -> list[Candidate]:
        found: list[Candidate] = []
        page = 1
        while True:
            self._called()
            data = self._client.opportunities_by_lead_field(
                lead_field,
                value,
                page=page,
                page_size=PAGE_SIZE,
                limiter=self._limiter,
                attempts=self._attempts,
            )
            items, count = _items(data)
            found.extend(parse_candidate(item) for item in items)
            if not items or count is None or len(found) >= count or len(items) < PAGE_SIZE:
                return found
            page += 1

    def _of_lead(self, partial: list[Candidate], opportunity_type: int) -> list[Candidate]:
        """The answer left out the opportunities' ids: ask GetOpportunitiesOfLead for each lead."""
        result: list[Candidate] = []
        for lead in dict.fromkeys(c.lead_id for c in partial if c.lead_id):
            key = f"of-lead/{lead}/{opportunity_type}"
            cached = self._cache.get(key)
            if cached is None:
                self._called()
                data = self._client.opportunities_of_lead(
                    lead, opportunity_type, limiter=self._limiter, attempts=self._attempts
                )
                cached = [parse_candidate(item).to_json() for item in _items(data)[0]]
                self._cache.put(key, cached)
            result.extend(
                replace(c, opportunity_type=c.opportunity_type or opportunity_type, lead_id=c.lead_id or lead)
                for c in map(Candidate.from_json, cached)
                if c.opportunity_id
            )
        return sorted(result, key=lambda c: c.created_on, reverse=True)

    def existing_ids(self, ids: Iterable[str], types: list[int]) -> set[str]:
        """Which of `ids` are opportunities of the types: GetOpportunitiesById, 2,000 ids a call in all."""
        label = ",".join(map(str, types))
        known: set[str] = set()
        unknown: list[str] = []
        for ident in dict.fromkeys(ids):
            cached = self._cache.get(f"id/{label}/{ident}")
            if cached:
                known.add(ident)
            else:
                unknown.append(ident)
        per_call = MAX_IDS_PER_CALL // len(types)  # each type's search lists the ids again
        for start in range(0, len(unknown), per_call):
            chunk = unknown[start : start + per_call]
            self._called()
            data = self._client.opportunities_by_id(
                chunk, types, limiter=self._limiter, attempts=self._attempts
            )
            found = _found_ids(data) & set(chunk)
            for ident in chunk:  # found ids are kept a week; a miss an hour
                self._cache.put(f"id/{label}/{ident}", ident in found)
            known |= found
        return known


def _found_ids(data: object) -> set[str]:
    groups = data if isinstance(data, list) else [data]
    found: set[str] = set()
    for group in groups:
        if isinstance(group, dict):
            items = group.get("Opportunities", group.get("List"))
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    ident = parse_candidate(item).opportunity_id
                    if ident:
                        found.add(ident)
    return found


def describe(spec: LookupSpec, value: str, found: list[Candidate] | None) -> str | Candidate:
    """The candidate a row posts to, or the message of the row's `lookup` error."""
    what = f"{spec.lead_field} '{value}'"
    if found is None:
        return f"no lead with {what} has an opportunity in LeadSquared (is the value right, or the lead new?)"
    if not found:
        return f"the lead with {what} has no opportunity of type {spec.opportunity_type}"
    if len(found) > 1 and spec.pick != "newest":
        listed = ", ".join(f"{c.opportunity_id} (created {c.created_on or '?'})" for c in found[:_MAX_LISTED])
        more = f", ... ({len(found)} in all)" if len(found) > _MAX_LISTED else ""
        return (
            f"the lead with {what} has {len(found)} opportunities of type {spec.opportunity_type}: "
            f"{listed}{more}; put the opportunity id in the sheet, or add 'pick: newest' to the look-up"
        )
    return found[0]


def planned_calls(mapping: Mapping, rows: list[PlannedRow]) -> int:
    """The look-up calls a run would make with nothing kept: one per distinct value, or per 2,000 ids."""
    source = mapping.opportunity_id
    distinct = len({row.opportunity_id for row in rows})
    if source.lookup is not None:
        return distinct
    if source.opportunity_types():
        return -(-distinct // (MAX_IDS_PER_CALL // len(source.opportunity_types())))
    return 0


def needs_lookup(mapping: Mapping) -> bool:
    source = mapping.opportunity_id
    return source.lookup is not None or source.opportunity_type is not None


def resolve_rows(
    mapping: Mapping, rows: list[PlannedRow], resolver: Resolver
) -> tuple[list[PlannedRow], LookupReport]:
    """Each row with its opportunity's id, or a `lookup` error; one look-up per distinct value."""
    source = mapping.opportunity_id
    column = mapping.column_for("opportunity_id")
    report = LookupReport()
    kept: list[PlannedRow] = []
    before = resolver.calls
    if source.lookup is not None:
        spec = source.lookup
        outcome: dict[str, str | Candidate] = {}
        for value in dict.fromkeys(row.opportunity_id for row in rows):
            outcome[value] = describe(
                spec, value, resolver.candidates(spec.lead_field, value, spec.opportunity_type)
            )
        for row in rows:
            answer = outcome[row.opportunity_id]
            if isinstance(answer, Candidate) and answer.opportunity_id:  # Resolver fills every id
                kept.append(row._replace(opportunity_id=answer.opportunity_id))
            else:
                message = (
                    answer if isinstance(answer, str) else "LeadSquared answered without the opportunity's id"
                )
                report.errors.append(RowError(row.source_row, Stage.LOOKUP, message, column))
    elif source.opportunity_types():
        types = source.opportunity_types()
        known = resolver.existing_ids((row.opportunity_id for row in rows), types)
        kinds = f"type {types[0]}" if len(types) == 1 else f"types {', '.join(map(str, types))}"
        for row in rows:
            if row.opportunity_id in known:
                kept.append(row)
            else:
                message = (
                    f"'{row.opportunity_id}' is not an opportunity of {kinds} in this account: "
                    "check the id (it was not sent)"
                )
                report.errors.append(RowError(row.source_row, Stage.LOOKUP, message, column))
    else:
        kept = list(rows)
    report.calls = resolver.calls - before
    return kept, report


def resolve(
    prepared: Prepared,
    client: LsqClient,
    limiter: RateLimiter | None,
    *,
    cache_dir: Path | None,
    org: str | None,
    batch_size: int,
    refresh: bool = False,
    attempts: int = 4,
    on_call: Callable[[], None] | None = None,
) -> tuple[Prepared, LookupReport]:
    """The look-up step of a run: rows get their opportunity ids, or fail at stage `lookup`."""
    mapping = prepared.mapping
    if not needs_lookup(mapping):
        return prepared, LookupReport()
    path = lookup_cache_path(cache_dir, client.base_url, org) if cache_dir else None
    cache = LookupCache(path, refresh=refresh)
    resolver = Resolver(client, cache, limiter=limiter, attempts=attempts, on_call=on_call)
    try:
        rows, report = resolve_rows(mapping, prepared.validated.rows, resolver)
    finally:
        cache.save()
    errors = sorted(prepared.validated.errors + report.errors, key=lambda error: error.source_row)
    validated = copy.copy(prepared.validated)  # not importer.validate's class here: it imports this module
    validated.rows, validated.errors = rows, errors
    if report.calls:
        log.info("look-ups: %d calls", report.calls)
    return replace(prepared, validated=validated, batches=plan_batches(rows, batch_size)), report
