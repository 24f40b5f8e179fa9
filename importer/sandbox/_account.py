"""The sandbox account: keys, users, activity types, leads and opportunities, and what it stores."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Literal

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
OPPORTUNITY_TYPE = 12000  # the opportunity type most default opportunities have
OTHER_OPPORTUNITY_TYPE = 12001

MAX_ACTIVITIES_PER_CALL = 25
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_PAGE_SIZE = 1000  # larger page sizes are cut to this, silently (CONTRACT.md, seen)
DEFAULT_PAGE_SIZE = 25  # GetActivitiesOfOpportunity without paging (CONTRACT.md, confirmed)
MAX_IDS_PER_LOOKUP = 2000  # GetOpportunitiesById

_SVC = "/v2/OpportunityManagement.svc/"
BULK_ADD_PATH = "/v2/ProspectActivity.svc/Bulk/CustomActivity/Add/ByOpportunityId"
GET_ACTIVITIES_PATH = _SVC + "GetActivitiesOfOpportunity"
ACTIVITY_SETTING_PATH = "/v2/ProspectActivity.svc/CustomActivity/GetActivitySetting"
ACTIVITY_TYPES_PATH = "/v2/ProspectActivity.svc/ActivityTypes.Get"
USER_PATH = "/v2/Authentication.svc/UserByAccessKey.Get"
OPPORTUNITIES_BY_LEAD_FIELD_PATH = _SVC + "GetOpportunitiesByUniqueLeadField"
OPPORTUNITIES_OF_LEAD_PATH = _SVC + "GetOpportunitiesOfLead"
OPPORTUNITIES_BY_ID_PATH = _SVC + "GetOpportunitiesById"

ENDPOINT_PATHS = (
    BULK_ADD_PATH,
    GET_ACTIVITIES_PATH,
    ACTIVITY_SETTING_PATH,
    ACTIVITY_TYPES_PATH,
    USER_PATH,
    OPPORTUNITIES_BY_LEAD_FIELD_PATH,
    OPPORTUNITIES_OF_LEAD_PATH,
    OPPORTUNITIES_BY_ID_PATH,
)


def endpoint_name(path: str) -> str:
    """An endpoint's short name: its path after ``.svc/``, e.g. ``GetActivitiesOfOpportunity``."""
    return path.partition(".svc/")[2] or path


DataType = Literal["String", "Number", "Date", "DateTime", "Boolean", "Dropdown", "MultiSelect"]
RowErrors = Literal["per_row", "whole_batch"]

_DATA_TYPES = frozenset(DataType.__args__)  # type: ignore[attr-defined]


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
class Lead:
    """A lead of the account; `mobile` is stored as LeadSquared stores it, ``+91-XXXXXXXXXX``."""

    id: str
    email_address: str | None
    mobile: str | None
    first_name: str = ""


@dataclass
class Opportunity:
    """An opportunity of a lead: `event_code` is its opportunity type's code (e.g. 12000)."""

    id: str
    lead_id: str
    event_code: int = OPPORTUNITY_TYPE
    name: str = ""
    created_on: str = "2026-01-01 09:00:00"


def _lead(number: int) -> Lead:
    lead_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"lsq-import-sandbox/lead/{number}"))
    return Lead(lead_id, f"customer{number}@example.com", f"+91-9{number:09d}", f"Customer {number}")


def _owner_of(number: int) -> tuple[int, int]:
    """(lead number, opportunity type) of default opportunity `number` (1-based)."""
    if number <= 45:
        return number, OPPORTUNITY_TYPE
    if number <= 90:
        return number - 45, OTHER_OPPORTUNITY_TYPE
    if number <= 92:
        return 46, OPPORTUNITY_TYPE  # lead 46 has two opportunities of one type
    return number - 46, OPPORTUNITY_TYPE


def _opportunity(number: int, leads: list[Lead]) -> Opportunity:
    lead_number, event_code = _owner_of(number)
    created = f"2026-01-{1 + number % 28:02d} {number % 24:02d}:00:00"
    name = f"Opportunity {number}"
    return Opportunity(
        DEFAULT_OPPORTUNITIES[number - 1], leads[lead_number - 1].id, event_code, name, created
    )


# lead n: customer{n}@example.com, +91-9 and n in 9 digits; 55 leads, lead 55 has no opportunity
DEFAULT_LEADS: list[Lead] = [_lead(number) for number in range(1, 56)]
DEFAULT_OPPORTUNITY_RECORDS: list[Opportunity] = [
    _opportunity(number, DEFAULT_LEADS) for number in range(1, 101)
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
    leads: list[Lead] = field(default_factory=lambda: copy.deepcopy(DEFAULT_LEADS))
    # the opportunities' details (lead, type); ids here should also be in `opportunities`
    opportunity_records: list[Opportunity] = field(
        default_factory=lambda: copy.deepcopy(DEFAULT_OPPORTUNITY_RECORDS)
    )


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
    throttled: int = 0  # answers refused by the rate limit (any status), on any endpoint
    spurious_429: int = 0  # throttles injected as a fault (also counted in `faults`)
    throttled_by_status: dict[int, int] = field(default_factory=dict)  # rate limit + injected, by status
    daily_refused: int = 0  # answers refused because the day's quota (daily_limit) was spent
    daily_used: int = 0  # calls counted against today's quota
    calls: dict[str, int] = field(default_factory=dict)  # endpoint name -> requests that arrived
    faults: dict[str, int] = field(default_factory=dict)  # injected fault kind -> count
    rows_created: int = 0  # activities created through the API (seeding does not count)
    arrivals: list[float] = field(default_factory=list)  # clock times of bulk-add arrivals
    call_arrivals: list[float] = field(default_factory=list)  # clock times of every call's arrival


@dataclass(frozen=True)
class RequestRecord:
    """One request as it arrived, so tests can check what travelled where (keys never in URLs)."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None  # None: the connection was dropped without an answer
    header_names: list[str]
    body_bytes: bytes
