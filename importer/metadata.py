"""Know the account before sending: whose keys, which region, and what its activity types accept.

`preflight` is the online step of a run, between validation and the first activity sent: it checks
the keys and the host (UserByAccessKey.Get, one call), reads the activity types in use and their
fields (ActivityTypes.Get and GetActivitySetting, kept on disk per host and account for a while),
checks the mapping against those fields, and checks every valid row against them, so a wrong
schema name or dropdown value is found before minutes of rate-limited calls, not after.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from importer.atomic import write_json_atomically
from importer.client import LsqClient, ReadError
from importer.errors import ApiUnusableError, AuthError, MappingError, OutputError, UsageError
from importer.mapping import FieldType, Mapping
from importer.planner import plan_batches
from importer.records import ActivityBody, RowError, Stage
from importer.throttle import RateLimiter
from importer.validate import Converter, Validated, converter_for

if TYPE_CHECKING:
    from importer.runner import ImportConfig, Prepared

log = logging.getLogger(__name__)

ACTIVITY_TYPES_PATH = "/v2/ProspectActivity.svc/ActivityTypes.Get"
ACTIVITY_SETTING_PATH = "/v2/ProspectActivity.svc/CustomActivity/GetActivitySetting"
CACHE_DIR_ENV = "LSQ_IMPORT_CACHE_DIR"
# A nightly job finds yesterday's copy expired and fetches once a day; runs within hours share it.
DEFAULT_TTL_HOURS = 12.0
MULTI_SELECT_SEPARATOR = ";"  # CONTRACT.md: assumed
_CACHE_VERSION = 1
_MAX_LISTED = 30  # options or types listed in one message
_HOST_IN_TEXT = re.compile(r"\b(?:[a-z0-9-]+\.)+leadsquared\.com\b", re.IGNORECASE)

Kind = Literal["text", "number", "date", "datetime", "boolean", "dropdown", "multiselect"]


# --- Settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetadataSettings:
    """Where and for how long the account's metadata is kept on disk (no `cache_dir`: not kept)."""

    cache_dir: Path | None = None
    ttl_hours: float = DEFAULT_TTL_HOURS
    refresh: bool = False  # fetch again even when the kept copy is fresh


def default_cache_dir(environ: dict[str, str]) -> Path:
    """$LSQ_IMPORT_CACHE_DIR, else lsq-import in the user's cache folder ($XDG_CACHE_HOME or ~/.cache)."""
    if environ.get(CACHE_DIR_ENV, "").strip():
        return Path(environ[CACHE_DIR_ENV].strip()).expanduser()
    if environ.get("XDG_CACHE_HOME", "").strip():
        return Path(environ["XDG_CACHE_HOME"].strip()) / "lsq-import"
    if sys.platform == "win32" and environ.get("LOCALAPPDATA"):
        return Path(environ["LOCALAPPDATA"]) / "lsq-import" / "Cache"
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".cache" / "lsq-import"


# --- Who the keys belong to ------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who the API keys belong to, as UserByAccessKey.Get tells it."""

    user: str
    org: str | None
    api_host: str | None  # LSQCommonServiceURLs.api, as a host[:port]

    @classmethod
    def of(cls, data: dict[str, Any]) -> Identity:
        name = " ".join(str(data[key]) for key in ("FirstName", "LastName") if data.get(key))
        email = data.get("EmailAddress")
        user = f"{name} <{email}>" if name and email else str(name or email or "an unnamed user")
        org = next(
            (str(data[key]) for key in ("OrgId", "OrgID", "OrgCode") if data.get(key) not in (None, "")), None
        )
        urls = data.get("LSQCommonServiceURLs")
        api = urls.get("api") if isinstance(urls, dict) else None
        return cls(user, org, host_of(api) if isinstance(api, str) and api.strip() else None)


def host_of(url_or_host: str) -> str:
    """'https://api-in21.leadsquared.com/v2/' and 'api-in21.leadsquared.com' -> 'api-in21.leadsquared.com'."""
    text = url_or_host.strip()
    parts = urlsplit(text if "://" in text else f"https://{text}")
    return (parts.netloc or text).lower()


def check_keys(client: LsqClient, limiter: RateLimiter | None = None, attempts: int = 4) -> Identity:
    """One UserByAccessKey.Get; a 401 that names another region's host says which --host to use."""
    try:
        data = client.who_am_i(limiter=limiter, attempts=attempts)
    except AuthError as exc:
        here = host_of(client.base_url)
        other = next((host for host in _HOST_IN_TEXT.findall(str(exc)) if host.lower() != here), None)
        if other:
            raise AuthError(_region_advice(here, other.lower())) from None
        raise AuthError(
            f"{exc}. Check LSQ_ACCESS_KEY and LSQ_SECRET_KEY, and that {here} is your account's API host"
        ) from None
    return Identity.of(data)


def region_problem(identity: Identity, base_url: str) -> str | None:
    """The fix when the account's API host is not the one in use, else None."""
    here = host_of(base_url)
    if identity.api_host and identity.api_host != here:
        return _region_advice(here, identity.api_host)
    return None


def _region_advice(here: str, host: str) -> str:
    return f"{here} is not your account's API host: these keys belong to {host}: use --host {host}"


# --- What the account's activity types look like ---------------------------------------------


@dataclass(frozen=True)
class FieldMeta:
    """One custom field of an activity type, as GetActivitySetting describes it."""

    schema_name: str
    display_name: str
    data_type: str
    mandatory: bool = False
    options: tuple[str, ...] = ()

    @property
    def kind(self) -> Kind:
        return data_kind(self.data_type)

    @property
    def label(self) -> str:
        return f"{self.schema_name} ({self.display_name})" if self.display_name else self.schema_name


@dataclass(frozen=True)
class ActivityMeta:
    """An activity type: its code, its name and its custom fields by schema name."""

    code: int
    display_name: str
    fields: dict[str, FieldMeta]

    @property
    def label(self) -> str:
        return f"{self.display_name} ({self.code})"

    def field_list(self) -> str:
        return ", ".join(meta.label for meta in self.fields.values()) or "none"


_KINDS: list[tuple[Kind, Callable[[str], bool]]] = [
    ("multiselect", lambda t: "multiselect" in t or t in {"checkboxes", "multiplechoice"}),
    (
        "dropdown",
        lambda t: "dropdown" in t or t in {"select", "radio", "radiobutton", "picklist", "combobox"},
    ),
    ("datetime", lambda t: "datetime" in t),
    ("date", lambda t: "date" in t),
    (
        "number",
        lambda t: t in {"number", "decimal", "integer", "int", "double", "float", "currency", "numeric"},
    ),
    ("boolean", lambda t: t in {"boolean", "bool", "checkbox", "yesno"}),
]


def data_kind(data_type: str) -> Kind:
    """How a DataType is checked; an unknown DataType is text (sent as it is)."""
    folded = re.sub(r"[^a-z]", "", data_type.casefold())
    return next((kind for kind, matches in _KINDS if matches(folded)), "text")


def parse_option_set(raw: object) -> tuple[str, ...]:
    """The options of a field: OptionSet is a JSON *string* like '[{"Value": "Branch"}]'."""
    if isinstance(raw, str):
        if not raw.strip():
            return ()
        try:
            raw = json.loads(raw)
        except ValueError:
            log.warning("an OptionSet is not JSON; its field's values are not checked: %.80s", raw)
            return ()
    if not isinstance(raw, list):
        return ()
    values = (item.get("Value", item.get("Text")) if isinstance(item, dict) else item for item in raw)
    options = [str(value) for value in values if isinstance(value, str | int | float) and str(value).strip()]
    return tuple(dict.fromkeys(options))


def parse_activity_setting(code: int, data: object) -> ActivityMeta:
    """Read a GetActivitySetting answer."""
    items = data.get("Fields") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(items, list | None):
        raise ReadError(f"GetActivitySetting for activity type {code} answered an unexpected shape")
    fields: dict[str, FieldMeta] = {}
    for item in items or []:
        if isinstance(item, dict) and isinstance(item.get("SchemaName"), str):
            meta = FieldMeta(
                item["SchemaName"],
                str(item.get("DisplayName") or ""),
                str(item.get("DataType") or "String"),
                item.get("IsMandatory") in (True, "true", "True", 1),
                parse_option_set(item.get("OptionSet")),
            )
            fields[meta.schema_name] = meta
    return ActivityMeta(code, str(data.get("DisplayName") or data.get("Name") or code), fields)


def parse_activity_types(data: object) -> dict[int, str]:
    """Read an ActivityTypes.Get answer: code -> name."""
    items = data
    if isinstance(data, dict):
        items = next(
            (data[key] for key in ("List", "ActivityTypes", "Data") if isinstance(data.get(key), list)), None
        )
    if not isinstance(items, list):
        raise ReadError("ActivityTypes.Get answered an unexpected shape")
    types: dict[int, str] = {}
    for item in items:
        code = item.get("ActivityEvent", item.get("EventCode")) if isinstance(item, dict) else None
        if isinstance(code, int | str) and not isinstance(code, bool) and str(code).strip().isdigit():
            name = item.get("ActivityEventName") or item.get("DisplayName") or item.get("Name") or code
            types[int(code)] = str(name)
    return types


def describe_types(types: dict[int, str]) -> str:
    listed = [f"{code} {name}" for code, name in sorted(types.items())]
    more = f", ... ({len(listed)} in all)" if len(listed) > _MAX_LISTED else ""
    return ", ".join(listed[:_MAX_LISTED]) + more if listed else "none"


def find_type(name: str, types: dict[int, str]) -> int:
    """The code of the activity type called `name` (case and spaces ignored); ValueError if none."""
    folded = {_fold_name(type_name): code for code, type_name in types.items()}
    code = folded.get(_fold_name(name))
    if code is None:
        close = difflib.get_close_matches(name, list(types.values()), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(
            f"no activity type of this account is named '{name}'{hint}; its types: {describe_types(types)}"
        )
    return code


def _fold_name(text: str) -> str:
    return re.sub(r"\W+", "", text.casefold())


# --- Fetching, and keeping on disk -----------------------------------------------------------


class MetadataCache:
    """One JSON file of raw answers, each stamped with when it was fetched; never holds keys."""

    def __init__(
        self, path: Path | None, ttl_hours: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self._ttl_s = ttl_hours * 3600
        self._clock = clock
        self._entries: dict[str, Any] | None = None

    def get(self, key: str) -> Any:
        entry = self._load().get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("fetched_at"), int | float):
            return None
        age = self._clock() - entry["fetched_at"]
        return entry.get("data") if 0 <= age < self._ttl_s else None

    def put(self, key: str, data: object) -> None:
        entries = self._load()
        entries[key] = {"fetched_at": self._clock(), "data": data}
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomically(
                    self.path,
                    {"version": _CACHE_VERSION, "entries": entries},
                    "the metadata cache",
                    indent=None,
                )
            except (OSError, OutputError) as exc:
                log.warning("cannot keep the account's metadata (%s); it is fetched again next run", exc)

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None and self.path.is_file():
                try:
                    stored = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    stored = None  # a damaged cache is only a missed shortcut
                if isinstance(stored, dict) and stored.get("version") == _CACHE_VERSION:
                    self._entries = dict(stored.get("entries") or {})
        return self._entries


def cache_path(cache_dir: Path, base_url: str, org: str | None) -> Path:
    """The cache file of one host and account: activity types differ between accounts of a host."""
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", host_of(base_url))
    if org:
        name += "-org" + re.sub(r"[^A-Za-z0-9.-]+", "_", org)
    return cache_dir / f"{name}.json"


class AccountMetadata:
    """The account's activity types and their fields: each fetched at most once a run, kept on disk."""

    def __init__(
        self,
        client: LsqClient,
        identity: Identity,
        settings: MetadataSettings,
        *,
        limiter: RateLimiter | None = None,
        attempts: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        path = cache_path(settings.cache_dir, client.base_url, identity.org) if settings.cache_dir else None
        self.cache = MetadataCache(path, settings.ttl_hours, clock=clock)
        self._client, self._limiter, self._attempts = client, limiter, attempts
        self._refresh = settings.refresh
        self._types: dict[int, str] | None = None
        self._activities: dict[int, ActivityMeta] = {}

    def activity_types(self) -> dict[int, str]:
        if self._types is None:
            self._types = parse_activity_types(self._fetch("activity-types", ACTIVITY_TYPES_PATH, None))
        return self._types

    def code_of(self, event: int | str) -> int:
        """The code of an event given by code or by name; ValueError listing the account's types."""
        types = self.activity_types()
        if isinstance(event, str):
            return find_type(event, types)
        if event not in types:
            raise ValueError(
                f"{event} is not an activity type of this account; its types: {describe_types(types)}"
            )
        return event

    def activity(self, code: int) -> ActivityMeta:
        if code not in self._activities:
            data = self._fetch(f"activity-setting/{code}", ACTIVITY_SETTING_PATH, {"code": code})
            self._activities[code] = parse_activity_setting(code, data)
        return self._activities[code]

    def _fetch(self, key: str, path: str, params: dict[str, object] | None) -> Any:
        cached = None if self._refresh else self.cache.get(key)
        if cached is not None:
            return cached
        data = self._client.read("GET", path, params=params, limiter=self._limiter, attempts=self._attempts)
        self.cache.put(key, data)
        return data


def open_account(
    client: LsqClient, settings: MetadataSettings, *, limiter: RateLimiter | None = None, attempts: int = 4
) -> AccountMetadata:
    """Check the keys and the host (one call), then read the account's metadata through `client`."""
    identity = check_keys(client, limiter, attempts)
    problem = region_problem(identity, client.base_url)
    if problem:
        raise ApiUnusableError(problem)
    return AccountMetadata(client, identity, settings, limiter=limiter, attempts=attempts)


# --- The mapping against the account ---------------------------------------------------------


def mapped_event(mapping: Mapping, account: AccountMetadata, mapping_path: object) -> int | None:
    """The event code of a mapping with one event for all rows (None: it is read from a column)."""
    source = mapping.activity_event
    if source.column is not None:
        return None
    key, event = ("name", source.name) if source.name is not None else ("value", source.value)
    try:
        return account.code_of(event)  # type: ignore[arg-type]
    except ValueError as exc:
        raise MappingError(mapping_path, f"'activity_event.{key}': {exc}") from None


def check_mapping(mapping: Mapping, activities: Iterable[ActivityMeta], mapping_path: object) -> list[str]:
    """Raise MappingError for fields the activity types lack or mandatory fields left out; return warnings."""
    problems: list[str] = []
    warnings: list[str] = []
    for activity in activities:
        for schema_name, source in mapping.fields.items():
            meta = activity.fields.get(schema_name)
            if meta is None:
                problems.append(
                    f"'fields.{schema_name}': {activity.label} has no field {schema_name}; "
                    f"its fields are {activity.field_list()}"
                )
            elif "type" in source.model_fields_set and not _type_fits(source.type, meta.kind):
                warnings.append(
                    f"'fields.{schema_name}' is declared type {source.type}, but {meta.label} is a "
                    f"{meta.data_type} field of {activity.label}: its values are checked as {meta.kind}"
                )
        missing = [
            meta.label
            for meta in activity.fields.values()
            if meta.mandatory and meta.schema_name not in mapping.fields
        ]
        if missing:
            problems.append(
                f"'fields': {activity.label} requires {', '.join(missing)}, which the mapping leaves out"
            )
    if problems:
        raise MappingError(mapping_path, "; ".join(problems))
    return warnings


def _type_fits(declared: FieldType, kind: Kind) -> bool:
    return declared == kind or (declared == "text" and kind in {"dropdown", "multiselect"})


# --- Rows against the account ----------------------------------------------------------------


def check_rows(
    validated: Validated,
    mapping: Mapping,
    activities: dict[int, ActivityMeta],
    mapping_path: object,
    *,
    known_types: dict[int, str] | None = None,
    event_code: int | None = None,
) -> Validated:
    """Check valid rows against their activity type's fields; failures become `validation` row errors.

    Bodies are corrected in place: a number or date in the wire format, a dropdown value in the
    option's exact spelling, `event_code` for a mapping that names its event. Each field's distinct
    values are checked once, so a large sheet costs about a dictionary lookup per cell.
    """
    checkers = {
        code: _ActivityChecker(activity, mapping, mapping_path) for code, activity in activities.items()
    }
    event_column = mapping.column_for("activity_event")
    result = Validated(errors=list(validated.errors))
    for row in validated.rows:
        body = row.body
        if event_code is not None:
            body["ActivityEvent"] = event_code
        checker = checkers.get(body["ActivityEvent"])
        if checker is None:
            message = (
                f"activity event {body['ActivityEvent']} is not an activity type of this account; "
                f"its types: {describe_types(known_types or {})}"
            )
            result.errors.append(RowError(row.source_row, Stage.VALIDATION, message, event_column))
            continue
        problems = checker.check(body)
        if problems:
            result.errors.extend(
                RowError(row.source_row, Stage.VALIDATION, text, column) for column, text in problems
            )
        else:
            result.rows.append(row)
    result.errors.sort(key=lambda error: error.source_row)
    return result


class _ActivityChecker:
    """The checks of one activity type's fields, with a memo of each field's distinct values."""

    def __init__(self, activity: ActivityMeta, mapping: Mapping, mapping_path: object) -> None:
        self._mapping_path = mapping_path
        self._fields: dict[str, tuple[Converter, dict[str, tuple[bool, str]], str | None]] = {}
        for schema_name in mapping.fields:
            meta = activity.fields.get(schema_name)
            check = _value_check(meta, mapping.skip_dropdown_validation) if meta else None
            if check is not None:
                self._fields[schema_name] = (check, {}, mapping.column_for(f"fields.{schema_name}"))
        self._mandatory = [
            (
                meta.schema_name,
                mapping.column_for(f"fields.{meta.schema_name}"),
                f"is empty, but {meta.label} is mandatory for {activity.label}",
            )
            for meta in activity.fields.values()
            if meta.mandatory
        ]

    def check(self, body: ActivityBody) -> list[tuple[str | None, str]]:
        """(column, message) of each problem; fixes the values that pass."""
        problems: list[tuple[str | None, str]] = []
        fields = body.get("Fields", [])
        for position, item in enumerate(fields):
            entry = self._fields.get(item["SchemaName"])
            if entry is None:
                continue
            check, memo, column = entry
            value = item["Value"]
            hit = memo.get(value)
            if hit is None:
                hit = memo[value] = self._run(check, value, item["SchemaName"], column)
            if hit[0]:
                if hit[1] != value:  # a new entry: validate shares one entry among the rows of a value
                    fields[position] = {"SchemaName": item["SchemaName"], "Value": hit[1]}
            else:
                problems.append((column, hit[1]))
        for schema_name, column, message in self._mandatory:
            if not any(item["SchemaName"] == schema_name for item in fields):
                problems.append((column, message))
        return problems

    def _run(self, check: Converter, value: str, schema_name: str, column: str | None) -> tuple[bool, str]:
        try:
            return True, check(value) or ""
        except ValueError as exc:
            if column is None:  # a constant of the mapping: every row would fail the same way
                raise MappingError(self._mapping_path, f"'fields.{schema_name}.value': {exc}") from None
            return False, str(exc)


def _value_check(meta: FieldMeta, skip_options: bool) -> Converter | None:
    """A wire value to its checked, normalised form (ValueError if the field cannot take it)."""
    kind = meta.kind
    if kind in {"dropdown", "multiselect"}:
        if skip_options or not meta.options:
            return None
        return _options_check(meta, multi=kind == "multiselect")
    if kind == "text":
        return None
    convert = converter_for(kind)  # type: ignore[arg-type]

    def check(value: str) -> str | None:
        try:
            return convert(value)
        except ValueError as exc:
            raise ValueError(f"{exc} ({meta.label} is a {meta.data_type} field)") from None

    return check


def _options_check(meta: FieldMeta, *, multi: bool) -> Converter:
    exact = {_fold_option(option): option for option in meta.options}
    listed = ", ".join(meta.options[:_MAX_LISTED])
    if len(meta.options) > _MAX_LISTED:
        listed += f", ... ({len(meta.options)} in all)"

    def check(value: str) -> str:
        if not multi:
            option = exact.get(_fold_option(value))
            if option is None:
                raise ValueError(f"'{value}' is not an option of {meta.label}: {listed}")
            return option
        parts = [part.strip() for part in value.split(MULTI_SELECT_SEPARATOR) if part.strip()]
        wrong = [part for part in parts if _fold_option(part) not in exact]
        if wrong or not parts:
            shown = ", ".join(f"'{part}'" for part in wrong) if wrong else f"'{value}'"
            raise ValueError(
                f"{shown} {'is' if len(wrong) <= 1 else 'are'} not among the options of {meta.label} "
                f"(separate several with '{MULTI_SELECT_SEPARATOR}'): {listed}"
            )
        return MULTI_SELECT_SEPARATOR.join(exact[_fold_option(part)] for part in parts)

    return check


def _fold_option(text: str) -> str:
    return " ".join(text.split()).casefold()


# --- The online step of a run ----------------------------------------------------------------


def preflight(config: ImportConfig, prepared: Prepared, client: LsqClient, limiter: RateLimiter) -> Prepared:
    """Check keys, host, mapping and rows against the account; returns the rows that may be sent.

    Raises AuthError/ApiUnusableError (exit 3) or MappingError (exit 2) before anything is sent.
    """
    account = open_account(client, config.metadata, limiter=limiter, attempts=config.max_attempts)
    mapping, path = prepared.mapping, config.mapping_path
    event = mapped_event(mapping, account, path)
    types = account.activity_types()
    codes = {event} if event is not None else {row.body["ActivityEvent"] for row in prepared.validated.rows}
    activities = {code: account.activity(code) for code in sorted(codes) if code in types}
    for warning in check_mapping(mapping, activities.values(), path):
        log.warning("%s: %s", path, warning)
    validated = check_rows(
        prepared.validated,
        mapping,
        activities,
        path,
        known_types=types,
        event_code=event if mapping.activity_event.name is not None else None,
    )
    return replace(prepared, validated=validated, batches=plan_batches(validated.rows, config.batch_size))


def check_online(config: ImportConfig, prepared: Prepared) -> Prepared:
    """`validate --online`: the checks of `preflight` with a client of its own; sends no activity."""
    if config.credentials is None:
        raise UsageError("validate --online needs API keys: set LSQ_ACCESS_KEY and LSQ_SECRET_KEY")
    if not config.host:
        raise UsageError(
            "validate --online needs a host: use --host (e.g. api-in21.leadsquared.com) or set LSQ_HOST"
        )
    client = LsqClient(
        config.host,
        config.credentials,
        session=config.session,
        timeout=config.timeout,
        ca_bundle=config.ca_bundle,
    )
    try:
        return preflight(config, prepared, client, RateLimiter(config.rate_limit))
    finally:
        if config.session is None:
            client.close()
