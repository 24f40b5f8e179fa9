"""A local stand-in for LeadSquared's API: what the tests and `lsq-import demo` talk to.

It follows `CONTRACT.md` and is meant to be at least as strict as the real service: where the
contract says "assumed", the sandbox takes the stricter reading, so code that passes here has no
leniency to lose in production. Faults (throttling, 5xx, dropped connections, other response
dialects) can be scripted or drawn from a seeded random generator, so retry and reconciliation code
is tested over real HTTP in milliseconds.

Choices the contract leaves open, taken here on the strict side:
- The rate limit counts every authenticated request by arrival, *including* the ones it throttles:
  a client that retries without waiting stays locked out.
- Unauthenticated requests and unknown paths are answered before the rate limit and do not count.
- Optional attributes, when present, must have their JSON type (no `null`); an empty `Value` is
  only accepted for String fields (other types must leave the field out).
- Owner emails are compared case-insensitively (as an email is), everything else exactly.
- `GetActivitiesOfOpportunity` lists newest first and takes a `PageSize` of 1 to 100.

Stdlib only: a ThreadingHTTPServer on loopback, served from a daemon thread.
"""

from __future__ import annotations

import copy
import json
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

SANDBOX_ACCESS_KEY = "u$sandbox-access-key"
SANDBOX_SECRET_KEY = "sandbox-secret-key"  # noqa: S105 - a published test key, not a secret

DEFAULT_OPPORTUNITIES: list[str] = [
    str(uuid.uuid5(uuid.NAMESPACE_URL, f"lsq-import-sandbox/opportunity/{i}")) for i in range(1, 101)
]
DEFAULT_USERS: list[str] = [
    "asha.rao@example.com",
    "vikram.shah@example.com",
    "meera.iyer@example.com",
    "rahul.nair@example.com",
    "sales.ops@example.com",
]

MAX_ACTIVITIES_PER_CALL = 25
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_PAGE_SIZE = 100
FAULT_KINDS = ("429", "500_mx", "500_before", "500_after", "drop_after", "drop_before", "ok")

BULK_ADD_PATH = "/v2/ProspectActivity.svc/Bulk/CustomActivity/Add/ByOpportunityId"
GET_ACTIVITIES_PATH = "/v2/OpportunityManagement.svc/GetActivitiesOfOpportunity"
ACTIVITY_SETTING_PATH = "/v2/ProspectActivity.svc/CustomActivity/GetActivitySetting"
ACTIVITY_TYPES_PATH = "/v2/ProspectActivity.svc/ActivityTypes.Get"
USER_PATH = "/v2/Authentication.svc/UserByAccessKey.Get"

DataType = Literal["String", "Number", "Date", "DateTime", "Boolean", "Dropdown", "MultiSelect"]
ReadShape = Literal["standard", "data", "flat"]
RowErrors = Literal["per_row", "whole_batch"]

_DATA_TYPES = frozenset(DataType.__args__)  # type: ignore[attr-defined]
_OPTION_TYPES = frozenset({"Dropdown", "MultiSelect"})
_FAULTS_BEFORE = frozenset({"429", "500_mx", "500_before", "drop_before"})
_FAULTS_AFTER = frozenset({"500_after", "drop_after"})
_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_NUMBER_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?")  # [0-9], not \d: \d also matches non-ASCII digits
_INTEGER_RE = re.compile(r"-?[0-9]+")
_DIGITS_RE = re.compile(r"[0-9]+")

_INVALID_INPUT = "MXInvalidInputException"
_UNAUTHORIZED = "MXUnAuthorizedAccessException"
_RATE_LIMITED = "MXAPIRateLimitExceededException"


@dataclass
class FieldSpec:
    """One custom field of an activity type, as GetActivitySetting describes it."""

    schema_name: str
    display_name: str
    data_type: DataType
    mandatory: bool = False
    options: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.data_type not in _DATA_TYPES:
            raise ValueError(f"{self.schema_name}: unknown data type {self.data_type!r}")


@dataclass
class ActivityType:
    """A custom activity type of the account."""

    code: int
    name: str
    display_name: str
    fields: list[FieldSpec]


DEFAULT_ACTIVITY_TYPES: list[ActivityType] = [
    ActivityType(
        201,
        "DocumentCollected",
        "Document Collected",
        [
            FieldSpec("mx_Custom_1", "PAN Number", "String", mandatory=True),
            FieldSpec("mx_Custom_2", "Amount", "Number"),
            FieldSpec("mx_Custom_3", "Due Date", "Date"),
            FieldSpec("mx_Custom_4", "Channel", "Dropdown", options=["Branch", "Online", "Phone", "Partner"]),
            FieldSpec("mx_Custom_5", "Reference", "String"),
            FieldSpec(
                "mx_Custom_6",
                "Documents",
                "MultiSelect",
                options=["PAN Card", "Aadhaar", "Passport", "Bank Statement"],
            ),
            FieldSpec("mx_Custom_7", "Verified", "Boolean"),
        ],
    ),
    ActivityType(
        202,
        "SiteVisit",
        "Site Visit",
        [
            FieldSpec(
                "mx_Custom_1",
                "Visit Outcome",
                "Dropdown",
                options=["Interested", "Not Interested", "Follow Up"],
            ),
            FieldSpec("mx_Custom_2", "Duration (min)", "Number"),
            FieldSpec("mx_Custom_3", "Visit Time", "DateTime"),
        ],
    ),
    ActivityType(
        203,
        "PaymentReceived",
        "Payment Received",
        [
            FieldSpec("mx_Custom_1", "Amount", "Number", mandatory=True),
            FieldSpec("mx_Custom_2", "Payment Reference", "String"),
        ],
    ),
]


@dataclass
class Account:
    """What the sandbox account holds: keys, users, opportunities and activity types."""

    access_key: str = SANDBOX_ACCESS_KEY
    secret_key: str = SANDBOX_SECRET_KEY
    users: list[str] = field(default_factory=lambda: list(DEFAULT_USERS))
    opportunities: set[str] = field(default_factory=lambda: set(DEFAULT_OPPORTUNITIES))
    activity_types: list[ActivityType] = field(default_factory=lambda: copy.deepcopy(DEFAULT_ACTIVITY_TYPES))
    # access key -> host of its region: such keys get a 401 naming that host
    other_region_keys: dict[str, str] = field(default_factory=dict)
    # reported by UserByAccessKey.Get; None means the sandbox's own host:port
    api_host: str | None = None


@dataclass
class Faults:
    """Misbehaviour to inject into bulk-add calls, and the response dialect to speak.

    Probabilities are per bulk-add call and exclusive (their sum must not exceed 1); one draw of
    `random.Random(seed)` picks at most one fault, so a run is reproducible from its seed.
    """

    seed: int = 0
    latency_ms: tuple[float, float] = (0, 0)  # uniform extra latency on every request
    p_throttle: float = 0.0  # spurious 429, nothing stored
    p_500_mx: float = 0.0  # 500 with an MX...Exception body, nothing stored
    p_500_before: float = 0.0  # 500/502/503 with a plain non-JSON body, nothing stored
    p_500_after: float = 0.0  # rows stored, then 500 with a plain non-JSON body
    p_drop_after: float = 0.0  # rows stored, then the connection closes with no response
    count_only: bool = False  # answer {"Status":"Success","Message":{"Count": n}} instead of rows
    row_errors: RowErrors = "per_row"  # "whole_batch": one bad row rejects the call, unnamed
    read_shape: ReadShape = "standard"  # item shape of GetActivitiesOfOpportunity (CONTRACT.md)

    def __post_init__(self) -> None:
        chances = self._chances()
        if any(not 0 <= p <= 1 for _, p in chances) or sum(p for _, p in chances) > 1:
            raise ValueError("fault probabilities must be within 0..1 and sum to at most 1")
        if self.row_errors not in ("per_row", "whole_batch"):
            raise ValueError(f"row_errors must be 'per_row' or 'whole_batch', not {self.row_errors!r}")
        if self.read_shape not in ("standard", "data", "flat"):
            raise ValueError(f"read_shape must be 'standard', 'data' or 'flat', not {self.read_shape!r}")

    def _chances(self) -> list[tuple[str, float]]:
        return [
            ("429", self.p_throttle),
            ("500_mx", self.p_500_mx),
            ("500_before", self.p_500_before),
            ("500_after", self.p_500_after),
            ("drop_after", self.p_drop_after),
        ]


@dataclass
class StoredActivity:
    """An activity the sandbox holds, as created by a bulk-add call or seeded by a test."""

    id: str
    opportunity_id: str
    event: int
    note: str | None
    owner_email: str
    activity_datetime: str  # as sent, or the server's UTC time when the call had none
    fields: dict[str, str]
    created_on: str


@dataclass
class SandboxStats:
    """Counters since start or the last reset(); `Sandbox.stats` hands out a snapshot."""

    requests: int = 0  # every request, answered or dropped
    bulk_calls: int = 0  # bulk-add requests that arrived, whatever became of them
    throttled: int = 0  # 429s from the rate limit, on any endpoint
    spurious_429: int = 0  # 429s injected as a fault (also counted in `faults`)
    faults: dict[str, int] = field(default_factory=dict)  # injected fault kind -> count
    rows_created: int = 0  # activities created through the API (seeding does not count)
    arrivals: list[float] = field(default_factory=list)  # clock times of bulk-add arrivals


@dataclass(frozen=True)
class RequestRecord:
    """One request as it arrived, so tests can check what travelled where (keys never in URLs)."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None  # None: the connection was dropped without an answer
    header_names: list[str]
    body_bytes: bytes


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    arrived: float


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False  # close the connection after answering (the body may be unread)
    drop: bool = False  # close the connection without answering
    delay: float = 0.0  # seconds to wait before answering


def _json_reply(status: int, payload: object) -> _Reply:
    return _Reply(status, json.dumps(payload).encode())


def _error(status: int, message: str, exception_type: str = _INVALID_INPUT) -> _Reply:
    envelope = {"Status": "Error", "ExceptionType": exception_type, "ExceptionMessage": message}
    return _json_reply(status, envelope)


def _plain_error(status: int) -> _Reply:
    # what a gateway in front of the API answers: HTML, not the JSON envelope
    title = f"{status} {HTTPStatus(status).phrase}"
    return _Reply(status, f"<html><body><h1>{title}</h1></body></html>".encode(), "text/html")


class _Rejected(Exception):
    """Raised while handling a request to answer it with an error envelope."""

    def __init__(self, status: int, message: str, exception_type: str = _INVALID_INPUT) -> None:
        super().__init__(message)
        self.reply = _error(status, message, exception_type)


# --- Values and activity objects -----------------------------------------------------------


def _utc_now() -> str:
    return datetime.now(UTC).strftime(_DATETIME_FORMAT)


def _parses(value: str, fmt: str) -> bool:
    try:
        datetime.strptime(value, fmt)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    # the regex first: strptime alone accepts unpadded parts such as "2024-3-5 1:2:3"
    return _DATETIME_RE.fullmatch(value) is not None and _parses(value, _DATETIME_FORMAT)


def _is_date(value: str) -> bool:
    is_day = _DATE_RE.fullmatch(value) is not None and _parses(value, "%Y-%m-%d")
    return is_day or _is_datetime(value)


def _is_number(value: str) -> bool:
    return _NUMBER_RE.fullmatch(value) is not None


_FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "String": lambda _value: True,
    "Number": _is_number,
    "Date": _is_date,
    "DateTime": _is_datetime,
    "Boolean": lambda value: value in ("true", "false"),
}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _show(value: object) -> str:
    """Quote a value for an error message, cut short so a huge value cannot flood it."""
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


@dataclass(frozen=True)
class _Rules:
    """The account facts an activity object is checked against."""

    types: dict[int, ActivityType]
    users: frozenset[str]

    @classmethod
    def of(cls, account: Account) -> _Rules:
        types = {activity_type.code: activity_type for activity_type in account.activity_types}
        return cls(types, frozenset(user.casefold() for user in account.users))


_ACTIVITY_KEYS = frozenset(
    {
        "ActivityEvent",
        "ActivityOwnerEmail",
        "ActivityNote",
        "ActivityDateTime",
        "ValidateDropDownOptions",
        "Fields",
    }
)
_OPTIONAL_TYPES: dict[str, tuple[type, str]] = {
    "ActivityNote": (str, "a string"),
    "ActivityDateTime": (str, "a string"),
    "ValidateDropDownOptions": (bool, "true or false"),
    "Fields": (list, "a list"),
}


def _keys_error(row: dict[str, Any], _rules: _Rules) -> str | None:
    unknown = sorted(key for key in row if key not in _ACTIVITY_KEYS)
    return f"Unknown attribute {_show(unknown[0])}" if unknown else None


def _event_error(row: dict[str, Any], rules: _Rules) -> str | None:
    if "ActivityEvent" not in row:
        return "ActivityEvent is mandatory"
    event = row["ActivityEvent"]
    if type(event) is not int:  # bool is an int subclass, and "201" is not a code
        return f"ActivityEvent must be an integer code, not {_json_type(event)} {_show(event)}"
    if event not in rules.types:
        return f"ActivityEvent {event} is not an activity type of this account"
    return None


def _owner_error(row: dict[str, Any], rules: _Rules) -> str | None:
    if "ActivityOwnerEmail" not in row:
        return "ActivityOwnerEmail is mandatory"
    owner = row["ActivityOwnerEmail"]
    if not isinstance(owner, str):
        return f"ActivityOwnerEmail must be a string, not {_json_type(owner)}"
    if owner.casefold() not in rules.users:
        return f"ActivityOwnerEmail {_show(owner)} is not a user of this account"
    return None


def _optional_types_error(row: dict[str, Any], _rules: _Rules) -> str | None:
    for key, (kind, wanted) in _OPTIONAL_TYPES.items():
        if key in row and not isinstance(row[key], kind):
            return f"{key} must be {wanted}, not {_json_type(row[key])}"
    return None


def _datetime_error(row: dict[str, Any], _rules: _Rules) -> str | None:
    value = row.get("ActivityDateTime")
    if value is None or _is_datetime(value):
        return None
    return f"Invalid ActivityDateTime {_show(value)}: expected UTC 'YYYY-MM-DD HH:MM:SS'"


def _entry_error(item: object, specs: dict[str, FieldSpec], given: dict[str, str], code: int) -> str | None:
    if not isinstance(item, dict) or set(item) != {"SchemaName", "Value"}:
        return 'Each entry of Fields must be {"SchemaName": ..., "Value": ...}'
    name, value = item["SchemaName"], item["Value"]
    if not isinstance(name, str) or name not in specs:
        return f"Field {_show(name)} does not exist on activity type {code}"
    if not isinstance(value, str):
        return f"Value of {name} must be a JSON string, not {_json_type(value)}"
    if name in given:
        return f"Field {name} is given more than once"
    return None


def _value_ok(spec: FieldSpec, value: str, skip_options: bool) -> bool:
    if spec.data_type == "String":
        return True
    if spec.data_type in _OPTION_TYPES and skip_options:
        return value != ""
    if spec.data_type == "Dropdown":
        return value in spec.options
    if spec.data_type == "MultiSelect":
        return all(part in spec.options for part in value.split(";"))
    return _FORMAT_CHECKS[spec.data_type](value)


def _value_error(spec: FieldSpec, value: str, skip_options: bool) -> str | None:
    if _value_ok(spec, value, skip_options):
        return None
    message = f"Invalid value {_show(value)} for {spec.schema_name} ({spec.data_type})"
    if spec.data_type in _OPTION_TYPES:
        separator = ", separated by ';'" if spec.data_type == "MultiSelect" else ""
        message += f": expected one of {', '.join(spec.options)}{separator}"
    return message


def _mandatory_error(activity_type: ActivityType, given: dict[str, str]) -> str | None:
    for spec in activity_type.fields:
        if spec.mandatory and not given.get(spec.schema_name, "").strip():
            return f"Mandatory field {spec.schema_name} ({spec.display_name}) is missing or empty"
    return None


def _fields_error(row: dict[str, Any], activity_type: ActivityType) -> str | None:
    specs = {spec.schema_name: spec for spec in activity_type.fields}
    # despite its name, true *skips* the option check (CONTRACT.md, confirmed wording)
    skip_options = row.get("ValidateDropDownOptions", False)
    given: dict[str, str] = {}
    for item in row.get("Fields", []):
        error = _entry_error(item, specs, given, activity_type.code)
        if error is None:
            error = _value_error(specs[item["SchemaName"]], item["Value"], skip_options)
        if error is not None:
            return error
        given[item["SchemaName"]] = item["Value"]
    return _mandatory_error(activity_type, given)


def _activity_error(row: object, rules: _Rules) -> str | None:
    """Why LeadSquared would refuse this activity object, or None if it would create it."""
    if not isinstance(row, dict):
        return f"Each activity must be a JSON object, not {_json_type(row)}"
    checks = (_keys_error, _event_error, _owner_error, _optional_types_error, _datetime_error)
    for check in checks:
        error = check(row, rules)
        if error is not None:
            return error
    return _fields_error(row, rules.types[row["ActivityEvent"]])


def _stored_activity(opportunity_id: str, body: dict[str, Any], now: str) -> StoredActivity:
    return StoredActivity(
        id=str(uuid.uuid4()),
        opportunity_id=opportunity_id,
        event=body.get("ActivityEvent", 0),
        note=body.get("ActivityNote"),
        owner_email=body.get("ActivityOwnerEmail", ""),
        activity_datetime=body.get("ActivityDateTime") or now,
        fields={item["SchemaName"]: item["Value"] for item in body.get("Fields", [])},
        created_on=now,
    )


def _copy(activity: StoredActivity) -> StoredActivity:
    return replace(activity, fields=dict(activity.fields))


# --- Request parts ---------------------------------------------------------------------------


def _query_value(request: _Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


def _required_param(request: _Request, name: str) -> str:
    value = _query_value(request, name)
    if not value:
        raise _Rejected(400, f"The query parameter {name} is required")
    return value


def _integer_param(request: _Request, name: str) -> int | None:
    raw = _query_value(request, name)
    if not raw:
        return None
    if _INTEGER_RE.fullmatch(raw) is None:
        raise _Rejected(400, f"The query parameter {name} must be an integer, not {_show(raw)}")
    return int(raw)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _json_body(request: _Request) -> object:
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise _Rejected(400, f"Content-Type must be application/json, not {_show(content_type)}")
    try:
        return json.loads(request.body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise _Rejected(400, f"The request body is not valid JSON: {exc}") from None


def _activity_array(request: _Request) -> list[object]:
    body = _json_body(request)
    if not isinstance(body, list) or not body:
        raise _Rejected(400, "The body must be a JSON array of 1 to 25 activity objects")
    if len(body) > MAX_ACTIVITIES_PER_CALL:
        raise _Rejected(
            400,
            f"At most {MAX_ACTIVITIES_PER_CALL} activities can be posted in one call (max 25), "
            f"got {len(body)}",
        )
    return body


def _is_int(value: object) -> bool:
    return type(value) is int


def _paging(body: object) -> tuple[int, int]:
    paging = body.get("Paging") if isinstance(body, dict) else None
    index = paging.get("PageIndex") if isinstance(paging, dict) else None
    size = paging.get("PageSize") if isinstance(paging, dict) else None
    if _is_int(index) and _is_int(size) and index >= 1 and 1 <= size <= MAX_PAGE_SIZE:
        return index, size
    raise _Rejected(
        400, f'The body must be {{"Paging": {{"PageIndex": >= 1, "PageSize": 1..{MAX_PAGE_SIZE}}}}}'
    )


# --- Read shapes -----------------------------------------------------------------------------


def _two_decimals(value: str) -> str:
    return f"{Decimal(value):.2f}" if _is_number(value) else value


def _us_time(value: str) -> str:
    """Write a UTC time the way some LeadSquared reads do: 7/31/2026 5:33:50 AM."""
    try:
        moment = datetime.strptime(value, _DATETIME_FORMAT)
    except (TypeError, ValueError):
        return value
    hour = moment.hour % 12 or 12
    noon = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment:%M:%S} {noon}"


def _normalised_fields(activity: StoredActivity, types: dict[int, ActivityType]) -> dict[str, str]:
    activity_type = types.get(activity.event)
    specs = activity_type.fields if activity_type else []
    numbers = {spec.schema_name for spec in specs if spec.data_type == "Number"}
    return {k: _two_decimals(v) if k in numbers else v for k, v in activity.fields.items()}


def _standard_item(activity: StoredActivity) -> dict[str, Any]:
    return {
        "ProspectActivityId": activity.id,
        "ActivityEvent": activity.event,
        "ActivityNote": activity.note,
        "ActivityDateTime": activity.activity_datetime,
        "ActivityOwnerEmail": activity.owner_email,
        "Fields": [{"SchemaName": k, "Value": v} for k, v in activity.fields.items()],
        "CreatedOn": activity.created_on,
    }


def _read_item(activity: StoredActivity, shape: ReadShape, types: dict[int, ActivityType]) -> dict[str, Any]:
    """One activity as GetActivitiesOfOpportunity lists it, in one of CONTRACT.md's shapes."""
    if shape == "standard":
        return _standard_item(activity)
    fields = _normalised_fields(activity, types)
    common = {
        "EventCode": activity.event,
        "ActivityNote": activity.note,
        "OwnerEmailAddress": activity.owner_email,
    }
    if shape == "data":
        data = [{"Key": k, "Value": v} for k, v in fields.items()]
        created = _us_time(activity.activity_datetime)
        return {"Id": activity.id, **common, "CreatedOn": created, "Data": data}
    return {"ActivityId": activity.id, **common, "ActivityDateTime": activity.activity_datetime, **fields}


def _setting_payload(activity_type: ActivityType) -> dict[str, Any]:
    fields = [
        {
            "SchemaName": spec.schema_name,
            "DisplayName": spec.display_name,
            "DataType": spec.data_type,
            "IsMandatory": spec.mandatory,
            # a JSON *string*, as the real API sends it: clients must decode it twice
            "OptionSet": json.dumps([{"Value": option} for option in spec.options]),
        }
        for spec in activity_type.fields
    ]
    type_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"lsq-import-sandbox/activity-type/{activity_type.code}"))
    return {
        "ID": type_id,
        "Name": activity_type.name,
        "DisplayName": activity_type.display_name,
        "Fields": fields,
    }


# --- The service: state and endpoints -------------------------------------------------------


class _Service:
    """Everything the sandbox knows and does, apart from speaking HTTP; one lock guards state."""

    def __init__(
        self,
        account: Account,
        faults: Faults,
        rate_limit: tuple[int, float] | None,
        clock: Callable[[], float],
    ) -> None:
        self.account = account
        self.rate_limit = rate_limit
        self.clock = clock
        self.own_host = ""
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[str, Callable[[_Request], _Reply]]] = {
            BULK_ADD_PATH: ("POST", self._bulk_add),
            GET_ACTIVITIES_PATH: ("POST", self._get_activities),
            ACTIVITY_SETTING_PATH: ("GET", self._activity_setting),
            ACTIVITY_TYPES_PATH: ("GET", self._activity_types),
            USER_PATH: ("GET", self._user),
        }
        self._faults = faults
        self.reset()

    # state

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._reseed()

    def _reseed(self) -> None:
        # seeded generators make a faulty run reproducible; not for anything secret
        self._fault_rng = random.Random(self._faults.seed)
        self._latency_rng = random.Random(f"latency-{self._faults.seed}")

    def reset(self) -> None:
        with self._lock:
            self._activities: list[StoredActivity] = []
            self._stats = SandboxStats()
            self._log: list[RequestRecord] = []
            self._window: deque[float] = deque()
            self._queue: deque[str] = deque()
            self._reseed()

    def queue(self, kinds: Iterable[str]) -> None:
        kinds = list(kinds)
        unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; expected some of {FAULT_KINDS}")
        with self._lock:
            self._queue.extend(kinds)

    def activities(self, opportunity_id: str | None) -> list[StoredActivity]:
        with self._lock:
            stored = list(self._activities)
        return [_copy(a) for a in stored if opportunity_id in (None, a.opportunity_id)]

    def add(self, opportunity_id: str, body: dict[str, Any]) -> StoredActivity:
        activity = _stored_activity(opportunity_id, body, _utc_now())
        with self._lock:
            self._activities.append(activity)
        return _copy(activity)

    def stats(self) -> SandboxStats:
        with self._lock:
            stats = self._stats
            return replace(stats, faults=dict(stats.faults), arrivals=list(stats.arrivals))

    def request_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def log(self, request: _Request, reply: _Reply) -> None:
        record = RequestRecord(
            method=request.method,
            path=request.path,
            query={name: list(values) for name, values in request.query.items()},
            status=None if reply.drop else reply.status,
            header_names=list(request.headers.keys()),
            body_bytes=request.body,
        )
        with self._lock:
            self._stats.requests += 1
            self._log.append(record)

    # answering

    def handle(self, request: _Request) -> _Reply:
        """Answer one request; stores what a bulk-add call creates before the answer is sent."""
        if request.path == BULK_ADD_PATH:
            with self._lock:
                self._stats.bulk_calls += 1
                self._stats.arrivals.append(request.arrived)
        try:
            reply = self._dispatch(request)
        except _Rejected as rejected:
            reply = rejected.reply
        reply.delay = self._draw_delay()
        return reply

    def _dispatch(self, request: _Request) -> _Reply:
        route = self._routes.get(request.path)
        if route is None:
            raise _Rejected(404, f"No API at {request.path}", "MXInvalidAPIException")
        method, action = route
        if request.method != method:
            raise _Rejected(
                405, f"{request.path} takes {method}, not {request.method}", "MXInvalidAPIException"
            )
        self._authenticate(request)
        if not self._admit(request.arrived):
            raise _Rejected(429, self._limit_message(), _RATE_LIMITED)
        return action(request)

    def _authenticate(self, request: _Request) -> None:
        access = request.headers.get("x-LSQ-AccessKey") or _query_value(request, "accessKey")
        secret = request.headers.get("x-LSQ-SecretKey") or _query_value(request, "secretKey")
        region_host = self.account.other_region_keys.get(access or "")
        if region_host:
            message = (
                f"Invalid access key or secret key: this account belongs to another region; use {region_host}"
            )
            raise _Rejected(401, message, _UNAUTHORIZED)
        if access != self.account.access_key or secret != self.account.secret_key:
            raise _Rejected(401, "Invalid access key or secret key", _UNAUTHORIZED)

    def _admit(self, arrived: float) -> bool:
        """Count an arrival in the sliding window; False when the limit was already reached."""
        if self.rate_limit is None:
            return True
        limit, seconds = self.rate_limit
        with self._lock:
            while self._window and arrived - self._window[0] >= seconds:
                self._window.popleft()
            admitted = len(self._window) < limit
            self._window.append(arrived)  # throttled arrivals count too: the stricter reading
            if not admitted:
                self._stats.throttled += 1
        return admitted

    def _limit_message(self) -> str:
        limit, seconds = self.rate_limit or (25, 5.0)
        return f"API calls exceeded the limit of {limit} in {seconds:g} second(s)"

    def _draw_delay(self) -> float:
        low, high = self._faults.latency_ms
        if high <= 0:
            return 0.0
        with self._lock:
            return self._latency_rng.uniform(low, high) / 1000

    # faults

    def _draw_fault(self) -> str:
        with self._lock:
            kind = self._queue.popleft() if self._queue else self._random_fault()
            if kind != "ok":
                self._stats.faults[kind] = self._stats.faults.get(kind, 0) + 1
            if kind == "429":
                self._stats.spurious_429 += 1
        return kind

    def _random_fault(self) -> str:
        draw = self._fault_rng.random()
        for kind, chance in self._faults._chances():
            if draw < chance:
                return kind
            draw -= chance
        return "ok"

    def _fault_reply(self, kind: str) -> _Reply:
        if kind == "429":
            return _error(429, self._limit_message(), _RATE_LIMITED)
        if kind == "500_mx":
            return _error(500, "The activities could not be posted (sandbox fault 500_mx)")
        if kind == "500_after":
            return _plain_error(500)
        if kind == "500_before":
            with self._lock:
                return _plain_error(self._fault_rng.choice((500, 502, 503)))
        return _Reply(0, drop=True)

    # endpoints

    def _bulk_add(self, request: _Request) -> _Reply:
        fault = self._draw_fault()
        if fault in _FAULTS_BEFORE:
            return self._fault_reply(fault)
        try:
            reply = self._add_activities(request)
        except _Rejected as rejected:
            reply = rejected.reply
        return self._fault_reply(fault) if fault in _FAULTS_AFTER else reply

    def _check_opportunity(self, opportunity_id: str) -> None:
        if opportunity_id not in self.account.opportunities:
            message = f"Opportunity {opportunity_id} does not exist or you do not have access to it"
            raise _Rejected(500, message)

    def _add_activities(self, request: _Request) -> _Reply:
        opportunity_id = _required_param(request, "opportunityId")
        rows = _activity_array(request)
        self._check_opportunity(opportunity_id)
        rules = _Rules.of(self.account)
        errors = [_activity_error(row, rules) for row in rows]
        faults = self._faults
        if faults.row_errors == "whole_batch" and any(errors):
            raise _Rejected(500, "One or more activities are invalid; none was posted")
        ids = self._store(opportunity_id, rows, errors)
        if faults.count_only:
            count = sum(1 for activity_id in ids if activity_id)
            return _json_reply(200, {"Status": "Success", "Message": {"Count": count}})
        results = [
            {
                "RowNumber": number,
                "ActivityCreated": activity_id is not None,
                "ProspectActivityId": activity_id,
                "ExceptionMessage": error,
            }
            for number, (activity_id, error) in enumerate(zip(ids, errors, strict=True), start=1)
        ]
        return _json_reply(200, {"Response": results})

    def _store(self, opportunity_id: str, rows: list[Any], errors: list[str | None]) -> list[str | None]:
        now = _utc_now()
        created = [
            None if error else _stored_activity(opportunity_id, row, now)
            for row, error in zip(rows, errors, strict=True)
        ]
        kept = [activity for activity in created if activity is not None]
        with self._lock:
            self._activities.extend(kept)
            self._stats.rows_created += len(kept)
        return [activity.id if activity else None for activity in created]

    def _get_activities(self, request: _Request) -> _Reply:
        opportunity_id = _required_param(request, "opportunityId")
        event = _integer_param(request, "activityEventCode")
        index, size = _paging(_json_body(request))
        self._check_opportunity(opportunity_id)
        with self._lock:
            newest_first = list(reversed(self._activities))
        matches = [
            activity
            for activity in newest_first
            if activity.opportunity_id == opportunity_id and event in (None, activity.event)
        ]
        page = matches[(index - 1) * size : index * size]
        types = _Rules.of(self.account).types
        items = [_read_item(activity, self._faults.read_shape, types) for activity in page]
        return _json_reply(200, {"RecordCount": len(matches), "List": items})

    def _activity_setting(self, request: _Request) -> _Reply:
        code = _integer_param(request, "code")
        if code is None:
            raise _Rejected(400, "The query parameter code is required")
        activity_type = _Rules.of(self.account).types.get(code)
        if activity_type is None:
            raise _Rejected(500, f"Activity type with code {code} does not exist")
        return _json_reply(200, _setting_payload(activity_type))

    def _activity_types(self, _request: _Request) -> _Reply:
        types = [
            {"ActivityEvent": activity_type.code, "ActivityEventName": activity_type.display_name}
            for activity_type in self.account.activity_types
        ]
        return _json_reply(200, types)

    def _user(self, _request: _Request) -> _Reply:
        host = self.account.api_host or self.own_host
        email = self.account.users[0] if self.account.users else None
        user = {
            "ID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"lsq-import-sandbox/user/{email}")),
            "FirstName": "Sandbox",
            "LastName": "User",
            "EmailAddress": email,
            "OrgId": 10001,
            "LSQCommonServiceURLs": {"api": host, "app": host},
        }
        return _json_reply(200, user)


# --- HTTP ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Speaks HTTP/1.1 with keep-alive, so pooled `requests` connections are reused."""

    protocol_version = "HTTP/1.1"
    server_version = "lsq-sandbox"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is closed, as a real load balancer would
    # headers and body go out in two writes: without TCP_NODELAY, Nagle plus the client's
    # delayed ACK can hold each answer back for tens of milliseconds
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and the demo must not print a line per request."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    do_PUT = do_DELETE = do_PATCH = do_POST

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer protocol errors (bad request line, unsupported method) with the envelope too."""
        headers = getattr(self, "headers", None) or Message()
        path = urlsplit(getattr(self, "path", "") or "").path
        request = _Request(self.command or "", path, {}, headers, b"", self.server.service.clock())
        reply = _error(code, message or HTTPStatus(code).phrase)
        reply.close = True
        self.server.service.log(request, reply)
        self._write(reply)

    def _serve(self) -> None:
        service = self.server.service
        arrived = service.clock()
        body = self._read_body()
        if body is None:  # the client left before sending the whole body
            self.close_connection = True
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        sent = body if isinstance(body, bytes) else b""
        request = _Request(self.command, url.path, query, self.headers, sent, arrived)
        reply = body if isinstance(body, _Reply) else service.handle(request)
        service.log(request, reply)  # before answering, so a client that got its answer sees it
        self.server.stopping.wait(reply.delay)
        self._write(reply)

    def _read_body(self) -> bytes | _Reply | None:
        """The request body, an error to answer instead, or None if the client went away."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return replace(_error(411, "Send the body with a Content-Length"), close=True)
        length = self.headers.get("Content-Length", "0").strip()
        if _DIGITS_RE.fullmatch(length) is None:
            return replace(_error(400, f"Invalid Content-Length {_show(length)}"), close=True)
        if int(length) > MAX_BODY_BYTES:
            message = f"The request body is larger than {MAX_BODY_BYTES} bytes"
            return replace(_error(413, message, "MXRequestTooLargeException"), close=True)
        body = self.rfile.read(int(length))
        return body if len(body) == int(length) else None

    def _write(self, reply: _Reply) -> None:
        if self.request_version == "HTTP/0.9":
            # the base class answers 0.9 (and unparsable request lines) with a bare body;
            # every answer here has a status line and headers
            self.request_version = "HTTP/1.0"
        if reply.drop:
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.close:
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)


class _Server(ThreadingHTTPServer):
    """Tracks open connections so stop() can end idle keep-alive ones instead of waiting."""

    daemon_threads = True  # a stuck client must never keep the interpreter alive
    block_on_close = True  # server_close() joins handler threads: no socket outlives stop()

    def __init__(self, address: tuple[str, int], service: _Service) -> None:
        self.service = service
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (a DNS query); loopback needs none
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            still_open = list(self._open)
        for connection in still_open:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away mid-answer: nothing to report
        super().handle_error(request, client_address)


class Sandbox:
    """A running emulator of the LeadSquared API on loopback.

    >>> with Sandbox() as sandbox:
    ...     sandbox.url  # doctest: +SKIP
    'http://127.0.0.1:49152'
    """

    def __init__(
        self,
        account: Account | None = None,
        faults: Faults | None = None,
        rate_limit: tuple[int, float] | None = (25, 5.0),
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account = account or Account()
        self._service = _Service(self.account, faults or Faults(), rate_limit, clock)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = _Server(self._address, self._service)
        host, port = server.server_address[:2]
        self._service.own_host = f"{host}:{port}"
        # a short poll keeps stop() prompt; the cost is a few idle wake-ups a second
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"lsq-sandbox-{port}",
            daemon=True,
        )
        self._server = server
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every socket; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.stopping.set()  # wakes handlers sleeping out an injected latency
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL without the /v2/ part, e.g. http://127.0.0.1:49152."""
        if self._server is None:
            raise RuntimeError("the sandbox is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def access_key(self) -> str:
        return self.account.access_key

    @property
    def secret_key(self) -> str:
        return self.account.secret_key

    @property
    def faults(self) -> Faults:
        return self._service.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._service.faults = faults  # also re-seeds the fault and latency generators

    def queue_faults(self, *kinds: str) -> None:
        """Script the next bulk-add calls, in order, before any random fault: see FAULT_KINDS."""
        self._service.queue(kinds)

    def activities(self, opportunity_id: str | None = None) -> list[StoredActivity]:
        """Copies of the stored activities, in creation order."""
        return self._service.activities(opportunity_id)

    def add_activity(self, opportunity_id: str, body: dict[str, Any]) -> StoredActivity:
        """Store an activity as a test's existing data, without validation or counting."""
        return self._service.add(opportunity_id, body)

    @property
    def stats(self) -> SandboxStats:
        return self._service.stats()

    @property
    def request_log(self) -> list[RequestRecord]:
        return self._service.request_log()

    def reset(self) -> None:
        """Forget activities, stats, logs and queued faults, and re-seed; the account stays."""
        self._service.reset()
