"""The LeadSquared HTTP client: one pooled session, keys in headers; replies are read by importer.replies."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypedDict
from urllib.parse import SplitResult, urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool

from importer._version import __version__
from importer.endpoints import (
    ACTIVITIES_PATH,
    ACTIVITY_SETTING_PATH,
    ACTIVITY_TYPES_PATH,
    API_HOSTS,
    BULK_ADD_PATH,
    OPPORTUNITIES_BY_ID_PATH,
    OPPORTUNITIES_BY_LEAD_FIELD_PATH,
    OPPORTUNITIES_OF_LEAD_PATH,
    WHO_AM_I_PATH,
)
from importer.errors import ApiUnusableError, AuthError, UsageError
from importer.records import ActivityBody
from importer.replies import (  # the reply-reading half lives in importer.replies; re-exported here
    UNKNOWN_ADVICE,
    Outcome,
    Reply,
    ReplyKind,
    RowResult,
    read_reply,
    throttle_of,
)
from importer.replies import json_or_none as _json_or_none
from importer.replies import mx_error as _mx_error
from importer.replies import snippet as _snippet
from importer.throttle import RateLimit, RateLimiter, Sleep, backoff_delay, names_a_day

__all__ = [  # the reply names, re-exported from importer.replies for existing imports
    "UNKNOWN_ADVICE",
    "Credentials",
    "LsqClient",
    "Outcome",
    "ReadError",
    "Reply",
    "ReplyKind",
    "RowResult",
    "base_url",
    "read_reply",
]

log = logging.getLogger(__name__)

ACCESS_KEY_ENV = "LSQ_ACCESS_KEY"
SECRET_KEY_ENV = "LSQ_SECRET_KEY"  # noqa: S105 - the name of a variable, not a secret
HOST_ENV = "LSQ_HOST"
KEYS_CHECK_TIMEOUT_S = 5.0  # UserByAccessKey.Get answers in well under a second when the host is up
_HEADER_SAFE = re.compile(r"[!-~]+")  # printable ASCII, no spaces: what a key is made of


class ReadError(ApiUnusableError):
    """A read-only call (metadata, activities of an opportunity) could not be answered."""


@dataclass(frozen=True)
class Credentials:
    """API keys; never printed: the repr hides them, so logs and tracebacks cannot leak them."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> Credentials:
        missing = [name for name in (ACCESS_KEY_ENV, SECRET_KEY_ENV) if not environ.get(name, "").strip()]
        if missing:
            raise UsageError(
                f"{' and '.join(missing)} not set: export your LeadSquared API keys "
                "(Settings > API and Webhooks > API Access Keys) in the environment"
            )
        for name in (ACCESS_KEY_ENV, SECRET_KEY_ENV):
            if not _HEADER_SAFE.fullmatch(environ[name].strip()):  # the message must not show the key
                raise UsageError(
                    f"{name} holds a character an HTTP header cannot carry (a space, a line break, a curly "
                    "quote?): copy the key again from LeadSquared"
                )
        return cls(environ[ACCESS_KEY_ENV].strip(), environ[SECRET_KEY_ENV].strip())

    def headers(self) -> dict[str, str]:
        return {"x-LSQ-AccessKey": self.access_key, "x-LSQ-SecretKey": self.secret_key}


def base_url(host: str) -> str:
    """'api-in21.leadsquared.com' -> https://...; a URL is kept; plain http only on loopback."""
    if not host.strip():
        raise UsageError("no host given: use --host (e.g. api-in21.leadsquared.com) or LSQ_HOST")
    parts = _split_host(host)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UsageError(f"--host '{host}' is not a host name or an http(s) URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(
            f"--host '{host}': plain http is allowed only for a local sandbox (127.0.0.1, localhost); "
            "the API keys would travel in clear text. Use https://"
        )
    return f"{parts.scheme}://{parts.netloc}"


def host_of(url_or_host: str) -> str:
    """'https://api-in21.leadsquared.com/v2/' and 'api-in21.leadsquared.com' -> 'api-in21.leadsquared.com'."""
    parts = _split_host(url_or_host)
    return (parts.netloc or url_or_host.strip()).lower()


def _split_host(url_or_host: str) -> SplitResult:
    """The one reading of a host as the user or LeadSquared writes it: a bare host means https."""
    text = url_or_host.strip()
    return urlsplit(text if "://" in text else f"https://{text}")


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


_connecting = threading.local()  # what to tell when the request this thread is making connects


def _connected() -> None:
    tell = getattr(_connecting, "tell", None)
    if tell is not None:
        try:
            tell()
        except Exception:  # the limiter is advice: never fail a request that has not left yet
            log.warning("could not tell the rate limiter that a connection opened", exc_info=True)


class _TimedHTTPConnection(urllib3.connection.HTTPConnection):
    """A connection that says when it has connected, before its first request leaves."""

    def connect(self) -> None:
        super().connect()
        _connected()


class _TimedHTTPSConnection(urllib3.connection.HTTPSConnection):
    """The same, once the TLS handshake is done."""

    def connect(self) -> None:
        super().connect()
        _connected()


class _TimedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _TimedHTTPConnection


class _TimedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _TimedHTTPSConnection


class _TimedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose new connections call the client's `on_connect` (see LsqClient)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TimedHTTPPool, "https": _TimedHTTPSPool}


class ReadOptions(TypedDict):
    """How a read-only call is paced and repeated."""

    limiter: RateLimiter | None
    attempts: int


class LsqClient:
    """Talks to one LeadSquared host with one pooled session; one method per endpoint the project uses.

    The paths are in `importer.endpoints`; `read` is the shared machinery of the read-only calls.
    """

    def __init__(
        self,
        host: str,
        credentials: Credentials,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        ca_bundle: str | None = None,
        pool_size: int = 10,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        """`on_connect` is called in the thread of a request that had to open a new connection,
        once it is open and before the request leaves (the limiter's `leaving_now`)."""
        self.base_url = base_url(host)
        self._credentials = credentials
        if session is None:  # one kept-alive connection per worker: a new one is a handshake late
            session = requests.Session()
            adapter = _TimedAdapter(pool_connections=1, pool_maxsize=max(10, pool_size))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session
        self._on_connect = on_connect
        self._session.headers.update({"User-Agent": f"lsq-import/{__version__}"})
        self._timeout = timeout
        self._verify: str | bool = ca_bundle or True

    def close(self) -> None:
        self._session.close()

    @contextlib.contextmanager
    def _telling_connects(self, paced: bool = True) -> Iterator[None]:
        """While this thread makes a paced request, a new connection it opens is told (on_connect)."""
        if self._on_connect is None or not paced:
            yield
            return
        _connecting.tell = self._on_connect
        try:
            yield
        finally:
            _connecting.tell = None

    def post_activities(self, opportunity_id: str, activities: list[ActivityBody]) -> Reply:
        """Post one batch; transport failures become RETRY (never sent) or UNKNOWN rows."""
        count = len(activities)
        try:
            with self._telling_connects():
                response = self._session.post(
                    self.base_url + BULK_ADD_PATH,
                    params={"opportunityId": opportunity_id},
                    data=json.dumps(activities, ensure_ascii=False).encode("utf-8"),
                    headers={**self._credentials.headers(), "Content-Type": "application/json"},
                    timeout=self._timeout,
                    verify=self._verify,
                )
        except requests.exceptions.SSLError:
            raise ApiUnusableError(self._tls_message()) from None
        except requests.exceptions.ConnectTimeout:
            return Reply(ReplyKind.RETRY, message=f"could not connect to {self.base_url} (timed out)")
        except requests.exceptions.ConnectionError as exc:
            if _never_sent(exc):
                return Reply(ReplyKind.RETRY, message=f"could not connect to {self.base_url}")
            return Reply.all_rows(
                count,
                Outcome.UNKNOWN,
                f"the connection dropped before LeadSquared answered; {UNKNOWN_ADVICE}",
            )
        except requests.exceptions.Timeout:
            return Reply.all_rows(
                count, Outcome.UNKNOWN, f"no answer within {self._timeout[1]:g} s; {UNKNOWN_ADVICE}"
            )
        except requests.exceptions.RequestException as exc:
            log.debug("request failed: %s", type(exc).__name__)
            return Reply.all_rows(
                count, Outcome.UNKNOWN, f"the request failed ({type(exc).__name__}); {UNKNOWN_ADVICE}"
            )
        return read_reply(response.status_code, response.text, count, dict(response.headers))

    def who_am_i(self, *, limiter: RateLimiter | None = None, attempts: int = 4) -> dict[str, Any]:
        """GET UserByAccessKey.Get: a cheap credentials check; raises ApiUnusableError.

        It is the first call of a run, so it is also the test that the host answers at all: a
        short timeout, and two tries without an answer end it (in seconds, not minutes of silence).
        """
        wait = min(KEYS_CHECK_TIMEOUT_S, self._timeout[0]), min(KEYS_CHECK_TIMEOUT_S, self._timeout[1])
        data = self.read(
            "GET", WHO_AM_I_PATH, limiter=limiter, attempts=attempts, timeout=wait, unanswered_attempts=2
        )
        if not isinstance(data, dict):
            raise ApiUnusableError(f"{self.base_url}: UserByAccessKey.Get did not answer with an object")
        return data

    def activity_types(self, *, limiter: RateLimiter | None = None, attempts: int = 4) -> Any:
        """GET ActivityTypes.Get: the account's activity types, as LeadSquared answers them."""
        return self.read("GET", ACTIVITY_TYPES_PATH, limiter=limiter, attempts=attempts)

    def activity_setting(self, code: int, *, limiter: RateLimiter | None = None, attempts: int = 4) -> Any:
        """GET GetActivitySetting: one activity type's custom fields, as LeadSquared answers them."""
        return self.read(
            "GET", ACTIVITY_SETTING_PATH, params={"code": code}, limiter=limiter, attempts=attempts
        )

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
    ) -> Any:
        """POST GetActivitiesOfOpportunity: one page (1-based) of the opportunity's activities of `event`."""
        body: dict[str, object] = {"Paging": {"PageIndex": page, "PageSize": page_size}}
        if newest_first:
            body["Sorting"] = {"ColumnName": "CreatedOn", "Direction": "1"}
        return self.read(
            "POST",
            ACTIVITIES_PATH,
            params={"opportunityId": opportunity_id, "activityEventCode": event},
            body=body,
            limiter=limiter,
            attempts=attempts,
        )

    def read(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        body: object = None,
        limiter: RateLimiter | None = None,
        attempts: int = 4,
        sleep: Sleep = time.sleep,
        timeout: tuple[float, float] | None = None,
        unanswered_attempts: int | None = None,
    ) -> Any:
        """A read-only call: safe to repeat, so 429s and transport errors are retried, each said.

        `unanswered_attempts` caps the tries that get no answer at all (timeouts, refused
        connections), so a host that never answers is given up in seconds. Raises AuthError on
        401, ApiUnusableError when the host name does not resolve, ReadError when the answer
        cannot be had.
        """
        unanswered = 0
        wait = timeout or self._timeout
        for attempt in range(1, attempts + 1):
            if limiter is not None:
                limiter.acquire()
            paced = False
            try:
                with self._telling_connects(paced=limiter is not None):
                    response = self._session.request(
                        method,
                        self.base_url + path,
                        params=params,
                        data=None if body is None else json.dumps(body).encode("utf-8"),
                        headers={**self._credentials.headers(), "Content-Type": "application/json"},
                        timeout=wait,
                        verify=self._verify,
                    )
            except requests.exceptions.SSLError:
                raise ApiUnusableError(self._tls_message()) from None
            except requests.exceptions.RequestException as exc:
                if _unresolved(exc):
                    raise ApiUnusableError(self._unresolved_message()) from None
                problem = self._no_answer(exc, wait)
                unanswered += 1
                if unanswered_attempts is not None and unanswered >= unanswered_attempts:
                    raise ReadError(f"{problem}, {unanswered} times: giving up") from None
            else:
                answered, data, problem, paced = self._judge(response, path, limiter)
                if answered:
                    return data
            if attempt < attempts:
                delay = 0.0 if paced else backoff_delay(attempt)
                log.warning("%s; retrying%s", problem, f" in {delay:.1f} s" if delay else "")
                sleep(delay)
        raise ReadError(problem)

    def _judge(
        self, response: requests.Response, path: str, limiter: RateLimiter | None
    ) -> tuple[bool, Any, str, bool]:
        """(answered, data, problem, paced by the limiter) of one read; raises when a retry cannot help."""
        if response.status_code == 401:
            error = _mx_error(_json_or_none(response.text)) or "401 Unauthorized"
            raise AuthError(f"{self.base_url} refused the API keys: {error}")
        throttled = throttle_of(response.status_code, response.text, dict(response.headers))
        data = _json_or_none(response.text)
        if response.status_code == 200 and data is not None and throttled is None:
            return True, data, "", False
        problem = f"{path} answered HTTP {response.status_code}: {_mx_error(data) or _snippet(response.text)}"
        if throttled is not None and names_a_day(throttled.message):
            raise ReadError(problem)  # the day's quota: no wait clears it
        if throttled is None and response.status_code < 500:
            raise ReadError(problem)
        if throttled is not None and limiter is not None:
            _slow_down(limiter, throttled)
            return False, None, problem, True
        return False, None, problem, False

    def _no_answer(self, exc: requests.exceptions.RequestException, timeout: tuple[float, float]) -> str:
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return f"{self.base_url} did not accept a connection within {timeout[0]:g} s"
        if isinstance(exc, requests.exceptions.Timeout):
            return f"{self.base_url} accepted the connection but did not answer within {timeout[1]:g} s"
        return f"cannot reach {self.base_url} ({type(exc).__name__})"

    def _unresolved_message(self) -> str:
        host = urlsplit(self.base_url).hostname or self.base_url
        return (
            f"the host name {host} does not resolve (no such host, or no network): check --host or "
            f"LSQ_HOST; LeadSquared's API hosts are {', '.join(API_HOSTS)}"
        )

    def _tls_message(self) -> str:
        return (
            f"TLS verification of {self.base_url} failed; if a corporate proxy re-signs traffic, "
            "pass its certificate with --ca-bundle"
        )

    # --- Finding opportunities (importer.lookup): read-only calls, retried like `read` -------

    def opportunities_by_lead_field(
        self,
        lead_field: str,
        value: str,
        *,
        page: int = 1,
        page_size: int = 25,
        limiter: RateLimiter | None = None,
        attempts: int = 4,
    ) -> Any:
        """GetOpportunitiesByUniqueLeadField: the opportunities of the lead whose field has `value`, newest first."""
        body = {
            "Parameter": {"LookupName": lead_field, "LookupValue": value, "SqlOperator": "="},
            "Columns": {
                "Include_CSV": "OpportunityId,ProspectActivityId,RelatedProspectId,OpportunityEvent,CreatedOn"
            },
            "Sorting": {"ColumnName": "CreatedOn", "Direction": "1"},
            "Paging": {"PageIndex": page, "PageSize": page_size},
        }
        return self.read(
            "POST", OPPORTUNITIES_BY_LEAD_FIELD_PATH, body=body, limiter=limiter, attempts=attempts
        )

    def opportunities_of_lead(
        self, lead_id: str, opportunity_type: int, *, limiter: RateLimiter | None = None, attempts: int = 4
    ) -> Any:
        """GetOpportunitiesOfLead: a lead's opportunities of one type."""
        params: dict[str, str | int] = {"leadId": lead_id, "opportunityType": opportunity_type}
        return self.read(
            "POST", OPPORTUNITIES_OF_LEAD_PATH, params=params, body={}, limiter=limiter, attempts=attempts
        )

    def opportunities_by_id(
        self, ids: list[str], types: list[int], *, limiter: RateLimiter | None = None, attempts: int = 4
    ) -> Any:
        """GetOpportunitiesById: which ids are opportunities of the types (2,000 ids in all a call)."""
        body = {
            "SearchParameters": [
                {
                    "EventCode": code,
                    "ProspectActivityId": ids,
                    "Columns": {"Include_CSV": "ProspectActivityId,ProspectId"},
                }
                for code in types
            ]
        }
        return self.read("POST", OPPORTUNITIES_BY_ID_PATH, body=body, limiter=limiter, attempts=attempts)


def _slow_down(limiter: RateLimiter, throttled: Reply) -> None:
    """A throttled read: take the limit LeadSquared names, and hold every call back for a window."""
    if throttled.limit is not None:
        limiter.lower_to(RateLimit(*throttled.limit), source="LeadSquared's throttle message")
    limiter.pause(throttled.retry_after)


def _unresolved(exc: BaseException) -> bool:
    """True when the host name could not be looked up (a mistyped host, or no network)."""
    return any(
        isinstance(cause, urllib3.exceptions.NameResolutionError | socket.gaierror) for cause in _causes(exc)
    )


def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was refused or never opened, so no byte of the request left."""
    return any(
        isinstance(cause, urllib3.exceptions.NewConnectionError | ConnectionRefusedError)
        for cause in _causes(exc)
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it, down the chain (urllib3 wraps the socket's error)."""
    cause: BaseException | None = exc
    while cause is not None:
        yield cause
        if isinstance(cause, urllib3.exceptions.MaxRetryError):
            cause = cause.reason
            continue
        cause = (
            cause.__cause__
            or cause.__context__
            or (cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None)
        )
