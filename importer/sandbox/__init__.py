"""A local stand-in for LeadSquared's API: what the tests and `lsq-import demo` talk to.

It follows `CONTRACT.md` and is meant to be at least as strict as the real service: where the
contract says "assumed", the sandbox takes the stricter reading, so code that passes here has no
leniency to lose in production. Faults (throttling, 5xx, dropped connections, other response
dialects) can be scripted or drawn from a seeded random generator, so retry and reconciliation code
is tested over real HTTP in milliseconds. Standard library only, and it imports nothing else of
`importer` (a test checks both), so it can serve anything.

Layout: `_account` (what the account holds), `_rules` (validation of activity objects),
`_wire` (requests, replies, paging), `_shapes` (read item shapes), `_faults` (`Faults`),
`_limits` (rate limit, daily cap), `_lookups` (opportunity look-ups), `_service` (the endpoints),
`_http` (the server), and here the front object `Sandbox`.

Choices the contract leaves open, taken here on the strict side:
- The rate limit counts every authenticated request by arrival, on every endpoint, *including* the
  ones it throttles: a client that retries without waiting stays locked out. One sandbox is one
  account, so the limit is the account's, shared by all its callers.
- Unauthenticated requests and unknown paths are answered before the rate limit and do not count.
- Optional attributes, when present, must have their JSON type (no `null`); an empty `Value` is
  only accepted for String fields (other types must leave the field out).
- Owner emails are compared case-insensitively (as an email is), everything else exactly.

`Sandbox(account=None, faults=None, rate_limit=(25, 5.0), host="127.0.0.1", port=0, *, clock=time.monotonic,
daily_limit=None)`:
- `rate_limit`: (N, S), the account's real limit, N calls in S seconds (a sliding window); None for
  none. It may well be lower than the client's setting. Refusals say exactly "API calls exceeded the
  limit of N in S second(s)" with this N and S, status `Faults.throttle_status`.
- `daily_limit`: N calls a day (None: no cap). A day is `int(clock() // 86400)`. Calls admitted by the
  rate limit count; once N are spent every call of that day is refused with status
  `Faults.throttle_status` and the message "API calls exceeded the daily limit of N calls for this
  account" (distinct from the window's message: it does not clear after a window).
- `clock`: seconds, injectable; the rate limit, the daily cap and `Faults.read_lag_s` all use it.

`Account` fields: `access_key`, `secret_key`, `users` (owner emails), `opportunities` (ids that
exist: DEFAULT_OPPORTUNITIES), `activity_types`, `other_region_keys` (access key -> host: 401 naming
it), `api_host` (what UserByAccessKey.Get reports), and for the look-ups `leads` (`Lead(id,
email_address, mobile, first_name)`, mobile stored as "+91-XXXXXXXXXX") and `opportunity_records`
(`Opportunity(id, lead_id, event_code, name, created_on)`). The defaults (DEFAULT_LEADS,
DEFAULT_OPPORTUNITY_RECORDS) use DEFAULT_OPPORTUNITIES: 55 leads, lead n (1-based) has email
"customer{n}@example.com" and mobile "+91-9" + n in 9 digits (lead 1: "+91-9000000001");
opportunity i (1-based) of DEFAULT_OPPORTUNITIES belongs to
- i = 1..45: lead i, type OPPORTUNITY_TYPE (12000); i = 46..90: lead i-45, type 12001;
- i = 91 and 92: lead 46, both type 12000 (a lead with two opportunities of one type);
- i = 93..100: lead i-46 (47..54), type 12000; lead 55 has no opportunity.
So leads 1..45 have one opportunity of each type, and lead 46 two of type 12000.

`Faults` fields (swap them at any time with `sandbox.faults = Faults(...)`, which re-seeds):
- `seed` (0): seeds every random draw (faults, latency, partial creations, mixed read shapes).
- `latency_ms` ((0, 0)): uniform extra latency in ms on every answer.
- `latency_ms_by_endpoint` ({}): endpoint -> (low, high) ms, replacing `latency_ms` there; keys are
  an endpoint's name (its path after ".svc/", e.g. "GetActivitiesOfOpportunity",
  "Bulk/CustomActivity/Add/ByOpportunityId", "UserByAccessKey.Get") or its full path.
- Bulk-add faults, each a probability per call (exclusive, summing to at most 1), and the kind a
  call can also be given in order with `sandbox.queue_faults(kind, ...)` (FAULT_KINDS):
  `p_throttle` "429": a throttle answer (status `throttle_status`), nothing stored;
  `p_500_mx` "500_mx": 500 with an MX envelope, nothing stored;
  `p_500_before` "500_before": 500/502/503 HTML, nothing stored;
  `p_500_after` "500_after": rows stored, then 500 HTML;
  `p_drop_after` "drop_after": rows stored, connection closed unanswered ("drop_before": not stored);
  `p_200_null_before` "200_null_before" / `p_200_null_after` "200_null_after": 200
  {"Status": "Error", "ExceptionType": "NullReferenceException", "ExceptionMessage": "There was an
  error processing the request."}, before / after storing the valid rows;
  `p_200_invalid_lead` "200_invalid_lead": 200 {"Status": "Error", "ExceptionMessage": "Invalid lead
  ID"} (no ExceptionType), nothing stored;
  `p_200_not_json_before` "200_not_json_before" / `p_200_not_json_after` "200_not_json_after": 200
  with an HTML body, before / after storing;
  `p_partial` "partial": of the call's v valid rows only k are stored (0 < k < v; k and which rows by
  seed), answered {"Status": "Success", "Message": {"Count": k}}; with fewer than 2 valid rows it is
  a plain count-only answer.
  "404" (queued only): a gateway's plain 404, nothing stored: the path or the host is wrong.
- `count_only` (False): answer every bulk add {"Status": "Success", "Message": {"Count": k}}, k the
  rows created (0 when every row is invalid).
- `row_errors` ("per_row"): "whole_batch" rejects a call with any bad row, naming none.
- `read_shape` ("standard"): the item shape of GetActivitiesOfOpportunity: a name of READ_SHAPES,
  "mixed", or an `ItemShape(id_key, event_key, event_as_string, note_key, time_key, time_form,
  owner_key, fields_form, two_decimals)` choosing each alternative of CONTRACT.md:
  "standard" ProspectActivityId, ActivityEvent 201, ActivityNote, ActivityDateTime plain,
  ActivityOwnerEmail, Fields, plus CreatedOn; values as sent;
  "data" Id, EventCode 201, ActivityNote, CreatedOn "7/31/2026 5:33:50 PM", OwnerEmailAddress,
  Data [{"Key", "Value"}]; "flat" ActivityId, EventCode, ActivityDateTime plain, OwnerEmailAddress,
  flat mx_ keys; "object" Id, ActivityEvent "201", ActivityEvent_Note, CreatedOn
  "/Date(1785519230000+0000)/", CreatedByEmailAddress, ActivityFields {...}; "millis"
  ProspectActivityId, EventCode "201", ActivityEvent_Note, ActivityDateTime
  "2025-11-25 07:47:41.000", CreatedByEmailAddress, Fields. All but "standard" read Number fields
  back with two decimals ("12.5" -> "12.50"). "mixed": each item draws every attribute at random
  from all alternatives (by seed and activity id, so one activity always reads alike).
  The time shown is the activity's ActivityDateTime (stored UTC) in the chosen form.
- `read_lag_s` (0.0): an activity created through the API is listed by GetActivitiesOfOpportunity
  only `read_lag_s` clock seconds after it was stored (seeded ones, `add_activity`, at once).
- `throttle_status` (429): the status of every throttle answer (rate limit, daily cap, injected
  "429"): 429, 403 or 200, always with the MXAPIRateLimitExceededException envelope.
- `plain_404` (False): unknown paths answer 404 with a plain-text body instead of the envelope.
- `reads_fail` (False): GetActivitiesOfOpportunity answers 503 with a plain body, so a look-up of
  rows in doubt fails and they stay `unknown` (never sent blind).

Endpoints (CONTRACT.md): the bulk add; GetActivitiesOfOpportunity (POST only, a GET is 405; body
optional: {"Paging": {"PageIndex": >= 1, "PageSize": >= 1}} or {"Paging": {"Offset": rows to skip,
0-based, "RowCount": n}}, numbers or digit strings; without Paging 25 rows; page sizes above 1000 cut
to 1000; {"Sorting": {"ColumnName": "CreatedOn" or "ActivityDateTime", "Direction": 1 newest first
(the default) or 0 oldest first}}; RecordCount is the total); GetActivitySetting; ActivityTypes.Get;
UserByAccessKey.Get; GetOpportunitiesByUniqueLeadField (LookupName EmailAddress (any case), Mobile or
Phone (exactly as stored, "+91-..."), ProspectID; all the lead's opportunities, newest first, paged
like above); GetOpportunitiesOfLead?leadId=&opportunityType= (500 "Lead not found" for an unknown
lead); GetOpportunitiesById (at most 2,000 ids in all, more is 400; one entry per SearchParameters
entry). Look-up items carry OpportunityId and ProspectActivityId (the same id), ProspectId,
RelatedProspectId, OpportunityEvent and OpportunityEventType as strings ("12000"), Name, CreatedOn.

`SandboxStats`: requests, bulk_calls, throttled (rate-limit refusals), spurious_429 (injected
throttles), throttled_by_status (status -> rate-limit and injected throttles), daily_refused,
daily_used (calls counted today), calls (endpoint name -> requests that arrived at it, answered or
not), faults (kind -> count), rows_created, arrivals (bulk-add arrival times), call_arrivals
(every call's arrival time, any endpoint).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from importer.sandbox._account import (
    ACTIVITY_SETTING_PATH,
    ACTIVITY_TYPES_PATH,
    BULK_ADD_PATH,
    DEFAULT_ACTIVITY_TYPES,
    DEFAULT_LEADS,
    DEFAULT_OPPORTUNITIES,
    DEFAULT_OPPORTUNITY_RECORDS,
    DEFAULT_PAGE_SIZE,
    DEFAULT_USERS,
    ENDPOINT_PATHS,
    GET_ACTIVITIES_PATH,
    MAX_ACTIVITIES_PER_CALL,
    MAX_BODY_BYTES,
    MAX_IDS_PER_LOOKUP,
    MAX_PAGE_SIZE,
    OPPORTUNITIES_BY_ID_PATH,
    OPPORTUNITIES_BY_LEAD_FIELD_PATH,
    OPPORTUNITIES_OF_LEAD_PATH,
    OPPORTUNITY_TYPE,
    OTHER_OPPORTUNITY_TYPE,
    SANDBOX_ACCESS_KEY,
    SANDBOX_SECRET_KEY,
    USER_PATH,
    Account,
    ActivityType,
    DataType,
    FieldSpec,
    Lead,
    Opportunity,
    RequestRecord,
    RowErrors,
    SandboxStats,
    StoredActivity,
    endpoint_name,
)
from importer.sandbox._faults import FAULT_KINDS, THROTTLE_STATUSES, Faults
from importer.sandbox._http import Server
from importer.sandbox._service import Service
from importer.sandbox._shapes import MIXED, READ_SHAPES, ItemShape

__all__ = [
    "ACTIVITY_SETTING_PATH",
    "ACTIVITY_TYPES_PATH",
    "BULK_ADD_PATH",
    "DEFAULT_ACTIVITY_TYPES",
    "DEFAULT_LEADS",
    "DEFAULT_OPPORTUNITIES",
    "DEFAULT_OPPORTUNITY_RECORDS",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_USERS",
    "ENDPOINT_PATHS",
    "FAULT_KINDS",
    "GET_ACTIVITIES_PATH",
    "MAX_ACTIVITIES_PER_CALL",
    "MAX_BODY_BYTES",
    "MAX_IDS_PER_LOOKUP",
    "MAX_PAGE_SIZE",
    "MIXED",
    "OPPORTUNITIES_BY_ID_PATH",
    "OPPORTUNITIES_BY_LEAD_FIELD_PATH",
    "OPPORTUNITIES_OF_LEAD_PATH",
    "OPPORTUNITY_TYPE",
    "OTHER_OPPORTUNITY_TYPE",
    "READ_SHAPES",
    "SANDBOX_ACCESS_KEY",
    "SANDBOX_SECRET_KEY",
    "THROTTLE_STATUSES",
    "USER_PATH",
    "Account",
    "ActivityType",
    "DataType",
    "Faults",
    "FieldSpec",
    "ItemShape",
    "Lead",
    "Opportunity",
    "RequestRecord",
    "RowErrors",
    "Sandbox",
    "SandboxStats",
    "StoredActivity",
    "endpoint_name",
]


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
        daily_limit: int | None = None,
    ) -> None:
        self.account = account or Account()
        self._service = Service(self.account, faults or Faults(), rate_limit, clock, daily_limit)
        self._address = (host, port)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = Server(self._address, self._service)
        host, port = server.server_name, server.server_port
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
        return f"http://{self._server.server_name}:{self._server.server_port}"

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

    def add_activity(
        self, opportunity_id: str, body: dict[str, Any], *, created_on: str | None = None
    ) -> StoredActivity:
        """Store an activity as a test's existing data, without validation or counting; `created_on`
        ('YYYY-MM-DD HH:MM:SS', UTC) backdates it, as data from before a run (now by default)."""
        return self._service.add(opportunity_id, body, created_on)

    @property
    def stats(self) -> SandboxStats:
        return self._service.stats()

    @property
    def request_log(self) -> list[RequestRecord]:
        return self._service.request_log()

    def reset(self) -> None:
        """Forget activities, stats, logs and queued faults, and re-seed; the account stays."""
        self._service.reset()
