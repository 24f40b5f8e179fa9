"""The service: the account's state, the endpoints, rate limits and faults, apart from HTTP."""

from __future__ import annotations

import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from importer.sandbox._account import (
    ACTIVITY_SETTING_PATH,
    ACTIVITY_TYPES_PATH,
    BULK_ADD_PATH,
    GET_ACTIVITIES_PATH,
    USER_PATH,
    Account,
    RequestRecord,
    SandboxStats,
    StoredActivity,
    endpoint_name,
)
from importer.sandbox._faults import FAULT_KINDS, FAULTS_AFTER, FAULTS_BEFORE, Faults
from importer.sandbox._limits import AccountLimits
from importer.sandbox._lookups import LookupEndpoints
from importer.sandbox._rules import Rules, activity_error, copy_activity, stored_activity, utc_now
from importer.sandbox._shapes import read_item, setting_payload
from importer.sandbox._wire import (
    RATE_LIMITED,
    UNAUTHORIZED,
    Rejected,
    Reply,
    Request,
    activity_array,
    error,
    integer_param,
    json_reply,
    object_body,
    paging,
    plain_error,
    plain_text,
    query_value,
    required_param,
    sorting,
)

_SERVER_FAULT = ("NullReferenceException", "There was an error processing the request.")
_NOT_JSON = b"<html><body><h1>Server Error in '/' Application.</h1></body></html>"
# fault kind -> its answer, for the kinds whose answer depends on nothing
_FIXED_FAULT_REPLIES: dict[str, Callable[[], Reply]] = {
    "500_mx": lambda: error(500, "The activities could not be posted (sandbox fault 500_mx)"),
    "500_after": lambda: plain_error(500),
    "200_null_before": lambda: error(200, _SERVER_FAULT[1], _SERVER_FAULT[0]),
    "200_null_after": lambda: error(200, _SERVER_FAULT[1], _SERVER_FAULT[0]),
    "200_invalid_lead": lambda: error(200, "Invalid lead ID", None),
    "200_not_json_before": lambda: Reply(200, _NOT_JSON, "text/html"),
    "200_not_json_after": lambda: Reply(200, _NOT_JSON, "text/html"),
    "404": lambda: plain_error(404),
}


class Service:
    """Everything the sandbox knows and does, apart from speaking HTTP; one lock guards state."""

    def __init__(
        self,
        account: Account,
        faults: Faults,
        rate_limit: tuple[int, float] | None,
        clock: Callable[[], float],
        daily_limit: int | None = None,
    ) -> None:
        self.account = account
        self.clock = clock
        self.own_host = ""
        self._lock = threading.Lock()
        self._limits = AccountLimits(rate_limit, daily_limit)
        lookups = LookupEndpoints(account)
        self._routes: dict[str, tuple[str, Callable[[Request], Reply]]] = {
            BULK_ADD_PATH: ("POST", self._bulk_add),
            GET_ACTIVITIES_PATH: ("POST", self._get_activities),
            ACTIVITY_SETTING_PATH: ("GET", self._activity_setting),
            ACTIVITY_TYPES_PATH: ("GET", self._activity_types),
            USER_PATH: ("GET", self._user),
            **lookups.routes(),
        }
        self._faults = faults
        self.reset()

    # state

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        return self._limits.rate_limit

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
            self._visible_from: dict[str, float] = {}
            self._stats = SandboxStats()
            self._log: list[RequestRecord] = []
            self._limits = AccountLimits(self._limits.rate_limit, self._limits.daily_limit)
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
        return [copy_activity(a) for a in stored if opportunity_id in (None, a.opportunity_id)]

    def add(self, opportunity_id: str, body: dict[str, Any], created_on: str | None = None) -> StoredActivity:
        activity = stored_activity(opportunity_id, body, created_on or utc_now())
        with self._lock:
            self._activities.append(activity)  # existing data: visible at once, whatever the lag
        return copy_activity(activity)

    def stats(self) -> SandboxStats:
        with self._lock:
            stats = self._stats
            return replace(
                stats,
                faults=dict(stats.faults),
                arrivals=list(stats.arrivals),
                call_arrivals=list(stats.call_arrivals),
                throttled_by_status=dict(stats.throttled_by_status),
                calls=dict(stats.calls),
                daily_used=self._limits.used_today,
            )

    def request_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def log(self, request: Request, reply: Reply) -> None:
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

    def handle(self, request: Request) -> Reply:
        """Answer one request; stores what a bulk-add call creates before the answer is sent."""
        self._count_arrival(request)
        try:
            reply = self._dispatch(request)
        except Rejected as rejected:
            reply = rejected.reply
        reply.delay = self._draw_delay(request.path)
        return reply

    def _count_arrival(self, request: Request) -> None:
        if request.path not in self._routes:
            return
        with self._lock:
            name = endpoint_name(request.path)
            self._stats.calls[name] = self._stats.calls.get(name, 0) + 1
            self._stats.call_arrivals.append(request.arrived)
            if request.path == BULK_ADD_PATH:
                self._stats.bulk_calls += 1
                self._stats.arrivals.append(request.arrived)

    def _dispatch(self, request: Request) -> Reply:
        route = self._routes.get(request.path)
        if route is None:
            if self._faults.plain_404:
                return plain_text(404, f"Not Found: {request.path}")
            raise Rejected(404, f"No API at {request.path}", "MXInvalidAPIException")
        method, action = route
        if request.method != method:
            raise Rejected(
                405, f"{request.path} takes {method}, not {request.method}", "MXInvalidAPIException"
            )
        self._authenticate(request)
        refusal = self._admit(request.arrived)
        return refusal if refusal is not None else action(request)

    def _authenticate(self, request: Request) -> None:
        access = request.headers.get("x-LSQ-AccessKey") or query_value(request, "accessKey")
        secret = request.headers.get("x-LSQ-SecretKey") or query_value(request, "secretKey")
        region_host = self.account.other_region_keys.get(access or "")
        if region_host:
            message = (
                f"Invalid access key or secret key: this account belongs to another region; use {region_host}"
            )
            raise Rejected(401, message, UNAUTHORIZED)
        if access != self.account.access_key or secret != self.account.secret_key:
            raise Rejected(401, "Invalid access key or secret key", UNAUTHORIZED)

    def _admit(self, arrived: float) -> Reply | None:
        """None when the call may go on; else the refusal of the rate limit or the daily cap."""
        with self._lock:
            verdict = self._limits.admit(arrived)
            status = self._faults.throttle_status
            if verdict.daily is not None:
                self._stats.daily_refused += 1
                return error(status, verdict.daily, RATE_LIMITED)
            if verdict.throttled is not None:
                self._stats.throttled += 1
                self._count_throttle(status)
                return error(status, verdict.throttled, RATE_LIMITED)
        return None

    def _count_throttle(self, status: int) -> None:
        by_status = self._stats.throttled_by_status
        by_status[status] = by_status.get(status, 0) + 1

    def _draw_delay(self, path: str) -> float:
        low, high = self._faults.latency_for(path)
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
                self._count_throttle(self._faults.throttle_status)
        return kind

    def _random_fault(self) -> str:
        draw = self._fault_rng.random()
        for kind, chance in self._faults.chances():
            if draw < chance:
                return kind
            draw -= chance
        return "ok"

    def _fault_reply(self, kind: str) -> Reply:
        if kind == "429":
            return error(self._faults.throttle_status, self._limits.limit_message(), RATE_LIMITED)
        if kind == "500_before":
            with self._lock:
                return plain_error(self._fault_rng.choice((500, 502, 503)))
        fixed = _FIXED_FAULT_REPLIES.get(kind)
        return fixed() if fixed is not None else Reply(0, drop=True)

    # endpoints

    def _bulk_add(self, request: Request) -> Reply:
        fault = self._draw_fault()
        if fault in FAULTS_BEFORE:
            return self._fault_reply(fault)
        try:
            reply = self._add_activities(request, partial=fault == "partial")
        except Rejected as rejected:
            reply = rejected.reply
        return self._fault_reply(fault) if fault in FAULTS_AFTER else reply

    def _check_opportunity(self, opportunity_id: str) -> None:
        if opportunity_id not in self.account.opportunities:
            message = f"Opportunity {opportunity_id} does not exist or you do not have access to it"
            raise Rejected(500, message)

    def _add_activities(self, request: Request, *, partial: bool = False) -> Reply:
        opportunity_id = required_param(request, "opportunityId")
        rows = activity_array(request)
        self._check_opportunity(opportunity_id)
        rules = Rules.of(self.account)
        errors = [activity_error(row, rules) for row in rows]
        if self._faults.row_errors == "whole_batch" and any(errors):
            raise Rejected(500, "One or more activities are invalid; none was posted")
        if partial:
            errors = self._drop_some(errors)
        ids = self._store(opportunity_id, rows, errors)
        if self._faults.count_only or partial:
            count = sum(1 for activity_id in ids if activity_id)
            return json_reply(200, {"Status": "Success", "Message": {"Count": count}})
        results = [
            {
                "RowNumber": number,
                "ActivityCreated": activity_id is not None,
                "ProspectActivityId": activity_id,
                "ExceptionMessage": problem,
            }
            for number, (activity_id, problem) in enumerate(zip(ids, errors, strict=True), start=1)
        ]
        return json_reply(200, {"Response": results})

    def _drop_some(self, errors: list[str | None]) -> list[str | None]:
        """For a partial creation: keep k of the v valid rows (0 < k < v, by seed), mark the rest."""
        valid = [number for number, problem in enumerate(errors) if problem is None]
        if len(valid) < 2:
            return errors
        with self._lock:
            keep = self._fault_rng.randint(1, len(valid) - 1)
            dropped = set(self._fault_rng.sample(valid, len(valid) - keep))
        return [
            problem if number not in dropped else "not created (partial)"
            for number, problem in enumerate(errors)
        ]

    def _store(self, opportunity_id: str, rows: list[Any], errors: list[str | None]) -> list[str | None]:
        now = utc_now()
        created = [
            None if problem else stored_activity(opportunity_id, row, now)
            for row, problem in zip(rows, errors, strict=True)
        ]
        kept = [activity for activity in created if activity is not None]
        visible = self.clock() + self._faults.read_lag_s
        with self._lock:
            self._activities.extend(kept)
            self._visible_from.update((activity.id, visible) for activity in kept)
            self._stats.rows_created += len(kept)
        return [activity.id if activity else None for activity in created]

    def _listed(self, opportunity_id: str, event: int | None) -> list[StoredActivity]:
        """The opportunity's activities a read can see now, oldest first."""
        now = self.clock()
        with self._lock:
            stored = list(self._activities)
            visible_from = dict(self._visible_from)
        return [
            activity
            for activity in stored
            if activity.opportunity_id == opportunity_id
            and event in (None, activity.event)
            and visible_from.get(activity.id, now) <= now
        ]

    def _get_activities(self, request: Request) -> Reply:
        opportunity_id = required_param(request, "opportunityId")
        event = integer_param(request, "activityEventCode")
        body = object_body(request)
        skip, size = paging(body)
        column, descending = sorting(body)
        self._check_opportunity(opportunity_id)
        if self._faults.reads_fail:
            return plain_error(503)
        matches = self._listed(opportunity_id, event)
        if column == "ActivityDateTime":  # stable: equal times keep creation order
            matches.sort(key=lambda activity: activity.activity_datetime)
        if descending:
            matches.reverse()
        page = matches[skip : skip + size]
        types = Rules.of(self.account).types
        faults = self._faults
        items = [read_item(activity, faults.read_shape, faults.seed, types) for activity in page]
        return json_reply(200, {"RecordCount": len(matches), "List": items})

    def _activity_setting(self, request: Request) -> Reply:
        code = integer_param(request, "code")
        if code is None:
            raise Rejected(400, "The query parameter code is required")
        activity_type = Rules.of(self.account).types.get(code)
        if activity_type is None:
            raise Rejected(500, f"Activity type with code {code} does not exist")
        return json_reply(200, setting_payload(activity_type))

    def _activity_types(self, _request: Request) -> Reply:
        types = [
            {"ActivityEvent": activity_type.code, "ActivityEventName": activity_type.display_name}
            for activity_type in self.account.activity_types
        ]
        return json_reply(200, types)

    def _user(self, _request: Request) -> Reply:
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
        return json_reply(200, user)
