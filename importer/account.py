"""The LeadSquared account behind a pair of keys: whose keys, which host, what its activity types accept.

`open_account` checks the keys and the host (UserByAccessKey.Get, one call) and returns the
account's metadata: the activity types in use and their fields (ActivityTypes.Get and
GetActivitySetting), kept on disk per host and account for a while. `importer.account_checks`
checks a mapping and rows against it; the run's online step is `importer.runner.preflight`.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from importer._cache import read_entries, write_entries
from importer.client import Credentials, LsqClient, ReadError, ReadOptions, host_of
from importer.errors import ApiUnusableError, AuthError
from importer.throttle import RateLimit, RateLimiter

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "LSQ_IMPORT_CACHE_DIR"
# A nightly job finds yesterday's copy expired and fetches once a day; runs within hours share it.
DEFAULT_TTL_HOURS = 12.0
_CACHE_VERSION = 1
MAX_LISTED = 30  # options or types listed in one message
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
    more = f", ... ({len(listed)} in all)" if len(listed) > MAX_LISTED else ""
    return ", ".join(listed[:MAX_LISTED]) + more if listed else "none"


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
            write_entries(
                self.path,
                _CACHE_VERSION,
                entries,
                "the metadata cache",
                "cannot keep the account's metadata (%s); it is fetched again next run",
            )

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = read_entries(self.path, _CACHE_VERSION)
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
        self._client = client
        self._read: ReadOptions = {"limiter": limiter, "attempts": attempts}
        self._refresh = settings.refresh
        self._types: dict[int, str] | None = None
        self._activities: dict[int, ActivityMeta] = {}

    def activity_types(self) -> dict[int, str]:
        if self._types is None:
            data = self._fetch("activity-types", lambda: self._client.activity_types(**self._read))
            self._types = parse_activity_types(data)
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
            data = self._fetch(
                f"activity-setting/{code}", lambda: self._client.activity_setting(code, **self._read)
            )
            self._activities[code] = parse_activity_setting(code, data)
        return self._activities[code]

    def _fetch(self, key: str, fetch: Callable[[], Any]) -> Any:
        cached = None if self._refresh else self.cache.get(key)
        if cached is not None:
            return cached
        data = fetch()
        self.cache.put(key, data)
        return data


def open_account(
    client: LsqClient,
    settings: MetadataSettings,
    *,
    limiter: RateLimiter | None = None,
    attempts: int = 4,
    identity: Identity | None = None,
) -> AccountMetadata:
    """Check the keys and the host, then read the account's metadata through `client`.

    The keys check is one call, made here unless the caller made it already and gives its `identity`.
    """
    identity = identity or check_keys(client, limiter, attempts)
    problem = region_problem(identity, client.base_url)
    if problem:
        raise ApiUnusableError(problem)
    return AccountMetadata(client, identity, settings, limiter=limiter, attempts=attempts)


# --- For the commands that only read: `check` and `init-mapping --online` ---------------------


@dataclass(frozen=True)
class Connection:
    """How to reach one account: host, keys, and how calls are paced, timed and repeated."""

    host: str
    credentials: Credentials = field(repr=False)
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(25, 5.0))
    timeout: tuple[float, float] = (10.0, 60.0)
    ca_bundle: str | None = None
    max_attempts: int = 8

    def open_client(self) -> LsqClient:
        return LsqClient(self.host, self.credentials, timeout=self.timeout, ca_bundle=self.ca_bundle)


@dataclass(frozen=True)
class KeysCheck:
    """What `check` tells: whose keys, on which host, and the fix if it is the wrong host."""

    identity: Identity
    base_url: str
    problem: str | None  # the account's API host is another one


def check_connection(connection: Connection) -> KeysCheck:
    """One UserByAccessKey.Get: whose keys these are and whether this is their account's host."""
    client = connection.open_client()
    try:
        identity = check_keys(client, RateLimiter(connection.rate_limit), connection.max_attempts)
    finally:
        client.close()
    return KeysCheck(identity, client.base_url, region_problem(identity, client.base_url))


def activity_of(connection: Connection, settings: MetadataSettings, event: int | str) -> ActivityMeta:
    """The activity type given by code or name, with its fields; ValueError if the account has none."""
    client = connection.open_client()
    try:
        account = open_account(
            client, settings, limiter=RateLimiter(connection.rate_limit), attempts=connection.max_attempts
        )
        return account.activity(account.code_of(event))
    finally:
        client.close()
