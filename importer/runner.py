"""`run_import(config)`: the whole import as one call, usable from Python without the CLI."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import requests

from importer.account import Identity, MetadataSettings, check_keys, open_account
from importer.account_checks import check_mapping, check_rows, mapped_event
from importer.atomic import prepare_folder, write_json_atomically
from importer.client import Credentials, LsqClient, host_of
from importer.errors import ApiUnusableError, ExitStatus, MappingError, OutputError, UsageError
from importer.events import CancelToken, Phase, Progress, ProgressCallback
from importer.gcpause import release as release_frozen
from importer.key_cache import account_context, fingerprint
from importer.ledger import LedgerError, RowKey, SqliteLedger, default_ledger_path, state_dir
from importer.loader import TEXT_SUFFIXES, WORKBOOK_SUFFIXES, load_sheet, sheet_holding
from importer.lookup import needs_lookup, planned_calls, resolve
from importer.mapping import CHOOSE, Mapping, check_columns, load_mapping
from importer.planner import MAX_BATCH, Batch, plan_batches
from importer.records import EARLIER_FAILURE, PlannedRow, RowError, Sheet, Stage
from importer.report import Totals, check_writable, write_error_workbook
from importer.resume import (
    DEFAULT_SETTLE_S,
    SENT_BY_ANOTHER_RUN,
    Lookup,
    Resume,
    claim_file,
    row_origins,
    settle,
    wait_for_others,
)
from importer.sender import Sender, SendReport
from importer.throttle import (
    AccountLimiter,
    DailyCapReached,
    RateLimit,
    RateLimiter,
    limits_path,
    names_a_day,
)
from importer.validate import Validated, validate_sheet

log = logging.getLogger(__name__)


@dataclass
class ImportConfig:
    """Everything one import needs; the CLI builds it from arguments and the environment."""

    input_path: Path
    mapping_path: Path
    host: str | None = None
    credentials: Credentials | None = field(default=None, repr=False)
    sheet: str | None = None
    batch_size: int = MAX_BATCH
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(25, 5.0))
    errors_path: Path | None = None  # default: <input stem>.errors.xlsx beside the input
    summary_json: Path | None = None
    progress: bool = False  # unused by the library; the CLI draws a bar from `on_progress` events
    timeout: tuple[float, float] = (10.0, 60.0)
    ca_bundle: str | None = None
    max_attempts: int = 8
    session: requests.Session | None = field(default=None, repr=False)
    metadata: MetadataSettings = field(default_factory=MetadataSettings)  # the account's metadata cache
    online: bool = False  # validate_file: also check against the account (preflight)
    # workers sharing the rate limit: 25, LeadSquared's highest documented limit per window, so the
    # first window goes out at once instead of ramping up (bench/: 0.97 of the ceiling at 25/1)
    concurrency: int = 25
    journal_path: Path | None = None  # the ledger; default: one per account (ledger.default_ledger_path)
    use_journal: bool = True  # False: no ledger, so nothing is skipped and a rerun may post rows again
    resend: bool = False  # send rows again even if the ledger says they were posted
    settle_s: float = DEFAULT_SETTLE_S  # wait this long after an uncertain call before looking it up
    state_environ: dict[str, str] | None = field(default=None, repr=False)  # where the state dir is
    on_progress: ProgressCallback | None = field(default=None, repr=False, compare=False)
    cancel: CancelToken | None = field(default=None, repr=False, compare=False)
    rate_limit_explicit: bool = False  # the user set the rate limit: never raised, not replaced by memory
    daily_limit: int | None = None  # calls a day the account may make (default: the remembered value)
    state_dir: Path | None = None  # where the account's shared limiter lives (default: ledger.state_dir)

    def __post_init__(self) -> None:
        self.input_path = Path(self.input_path)
        self.mapping_path = Path(self.mapping_path)
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise UsageError(f"batch_size must be between 1 and {MAX_BATCH}, got {self.batch_size}")
        if self.concurrency < 1:
            raise UsageError(f"concurrency must be 1 or more, got {self.concurrency}")
        if self.max_attempts < 1:
            raise UsageError(f"max_attempts must be 1 or more, got {self.max_attempts}")

    @property
    def error_report_path(self) -> Path:
        if self.errors_path is not None:
            return Path(self.errors_path)
        return default_error_report_path(self.input_path)


ERROR_SUFFIX = ".errors.xlsx"


def default_error_report_path(input_path: Path) -> Path:
    """`visits.csv` -> `visits.errors.xlsx` beside it; `visits.csv.errors.xlsx` when another file
    of that stem (visits.xlsx) sits beside it, so two inputs never share a workbook. A re-fed
    workbook is replaced by the rows it still holds: never `.errors.errors.xlsx`."""
    input_path = Path(input_path)
    if input_path.name.endswith(ERROR_SUFFIX):
        return input_path
    siblings = [
        p
        for p in input_path.parent.glob(f"{glob_escape(input_path.stem)}.*")
        if p.name != input_path.name
        and not p.name.endswith(ERROR_SUFFIX)
        and p.suffix.lower() in WORKBOOK_SUFFIXES | TEXT_SUFFIXES
    ]
    if siblings:
        return input_path.with_name(input_path.name + ERROR_SUFFIX)
    return input_path.with_name(input_path.stem + ERROR_SUFFIX)


@dataclass
class ImportResult:
    """What a run did; `summary()` is what --summary-json writes."""

    rows_total: int = 0
    rows_posted: int = 0
    rows_failed: int = 0  # rejected by validation or by LeadSquared
    rows_unknown: int = 0  # sent, but whether they were created is not known
    rows_not_sent: int = 0  # valid, but the run stopped before sending them
    rows_skipped: int = 0  # already posted by an earlier run
    calls: int = 0
    throttled: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    error_report: Path | None = None
    stop_reason: str | None = None
    interrupted: bool = False
    report_problem: str | None = None  # why the error workbook could not be written after sending
    summary_problem: str | None = None  # why --summary-json could not be written (the run's code stands)
    errors: list[RowError] = field(default_factory=list, repr=False)
    skipped_from: list[dict[str, object]] = field(default_factory=list)  # {"file", "posted_on", "rows"}
    ledger: Path | None = None
    ledger_problem: str | None = None  # the ledger could not be used: sending stopped

    @property
    def exit_status(self) -> ExitStatus:
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        if self.ledger_problem:
            return ExitStatus.LEDGER_ERROR
        if self.stop_reason:
            return ExitStatus.API_UNUSABLE
        if self.rows_failed or self.rows_unknown or self.rows_not_sent:
            return ExitStatus.ROWS_FAILED
        return ExitStatus.OK

    def summary(self) -> dict[str, object]:
        keys = (
            "rows_total",
            "rows_posted",
            "rows_failed",
            "rows_unknown",
            "rows_not_sent",
            "rows_skipped",
            "calls",
            "throttled",
            "retries",
        )
        data: dict[str, object] = {key: getattr(self, key) for key in keys}
        data["elapsed_s"] = round(self.elapsed_s, 3)
        data["error_report"] = str(self.error_report) if self.error_report else None
        data["stop_reason"] = self.stop_reason
        data["skipped_from"] = self.skipped_from
        data["ledger"] = str(self.ledger) if self.ledger else None
        if self.ledger_problem:
            data["ledger_problem"] = self.ledger_problem
        if self.report_problem:
            data["error_report_problem"] = self.report_problem
        data["exit_code"] = int(self.exit_status)
        return data


@dataclass
class Prepared:
    """The input read, checked and planned: everything decided before the network is touched."""

    sheet: Sheet
    mapping: Mapping
    validated: Validated
    batches: list[Batch]
    lookup_calls: int = 0  # look-up calls made to find the rows' opportunities (importer.lookup)
    org: str | None = None  # the account's org id, once preflight has asked (the ledger is per account)
    account_context: str = ""  # what the account's metadata made of the bodies (importer.key_cache)


def prepare(
    config: ImportConfig, events: _Events | None = None, *, plan: bool = True, unchosen_ok: bool = False
) -> Prepared:
    """Read the mapping and the sheet, validate every row, plan the calls (unless not `plan`: then
    the rows stay columns, `batches` is empty and `validated.call_count` counts them). Sends nothing.

    `unchosen_ok` (validate): a starter mapping's `CHOOSE A COLUMN` is checked as an empty
    column, so every other column is checked meanwhile; a run refuses it.
    """
    events = events or _Events(config)
    events.emit(Phase.READING)
    mapping = load_mapping(config.mapping_path)
    sheet = load_sheet(config.input_path, config.sheet)
    for note in sheet.notes:
        log.warning("%s: %s", config.input_path, note)
    sheet = _unchosen_columns(config, mapping, sheet, unchosen_ok=unchosen_ok)
    if not len(sheet):  # a quiet day's export: nothing to do, which is not an error
        log.warning("%s: no data rows under the header: nothing to import", config.input_path)
    events.emit(Phase.VALIDATING, rows_total=len(sheet))
    try:
        check_columns(mapping, sheet.headers, config.mapping_path)
    except MappingError as exc:  # the data may well be on another sheet of the workbook
        columns = [column for _key, source in mapping.targets() for column in source.columns()]
        hint = sheet_holding(config.input_path, columns, sheet.sheet_name)
        if hint:
            exc.args = (f"{exc}; {hint}",)
        raise
    validated = validate_sheet(sheet, mapping, config.mapping_path)
    for warning in validated.warnings:
        log.warning("%s", warning)
    return Prepared(
        sheet, mapping, validated, plan_batches(validated.rows, config.batch_size) if plan else []
    )


def _unchosen_columns(config: ImportConfig, mapping: Mapping, sheet: Sheet, *, unchosen_ok: bool) -> Sheet:
    """The sheet with an empty `CHOOSE A COLUMN` column when the mapping still names it."""
    unchosen = [key for key, source in mapping.targets() if CHOOSE in source.columns()]
    if not unchosen or CHOOSE in sheet.headers:
        return sheet
    headers = ", ".join(f"'{header}'" for header in sheet.headers[:12])
    problem = (
        f"{', '.join(unchosen)}: still '{CHOOSE}' (from init-mapping): put the header of the column "
        f"to use there, one of {headers}"
    )
    if not unchosen_ok:
        raise MappingError(config.mapping_path, f"{problem}; nothing was sent")
    log.warning("%s: %s; until then every row fails on it", config.mapping_path, problem)
    frame = sheet.frame.assign(**{CHOOSE: ""})
    return replace(sheet, headers=[*sheet.headers, CHOOSE], frame=frame)


def validate_file(config: ImportConfig) -> ImportResult:
    """What `lsq-import validate` does: everything but sending; writes the workbook of invalid rows."""
    started = time.monotonic()
    _prepare_outputs(config, workbook=False)
    events = _Events(config)
    prepared = prepare(config, events, plan=config.online, unchosen_ok=True)
    if config.online:
        events.emit(Phase.CHECKING)
        prepared = check_online(config, prepared, events)
        calls = len(prepared.batches)
    else:  # the rows are never needed as rows: counted from their columns
        calls = prepared.validated.call_count(config.batch_size)
    result = ImportResult(rows_total=len(prepared.sheet), calls=calls + _lookup_calls(config, prepared))
    result.errors = prepared.validated.errors
    result.rows_failed = len(prepared.validated.failed_rows)
    events.emit(Phase.REPORTING, rows_failed=result.rows_failed, calls_planned=result.calls)
    _finish(config, prepared, result, started)
    events.finished(result)
    return result


def run_import(config: ImportConfig) -> ImportResult:
    """Validate, plan, send under the rate limit, and report every row that did not arrive.

    Progress goes to `config.on_progress` as `Progress` events; `config.cancel` stops the run
    (see `CancelToken`). A cancelled run still writes its workbook and summary, and its result
    has `interrupted=True`.
    """
    started = time.monotonic()
    events = _Events(config)
    token = config.cancel or CancelToken()
    prepared = prepare(config, events)
    limiter = _account_limiter(config)
    # raises before anything else when the host or the keys are missing
    client = _client_of(config, on_connect=limiter.leaving_now)
    _prepare_outputs(config)
    if not config.use_journal:
        log.warning(
            "--no-journal: no ledger is kept, so nothing is skipped and a rerun may post these rows again"
        )
    lookup = Lookup(client, limiter, config.settle_s)
    ledger: SqliteLedger | None = None
    stopper = _Stopper(token)
    remove_callback = token.add_callback(stopper)
    try:
        try:
            try:
                prepared = _check_account(config, prepared, client=client, limiter=limiter, events=events)
                ledger = _open_ledger(config, client, prepared.org) if config.use_journal else None
                keys, resumed = _resume(config, prepared, ledger, lookup, events)
            except (ApiUnusableError, LedgerError) as exc:  # nothing sent: say so in the workbook and summary
                return _report_stopped(
                    config, prepared, exc, cancelled=token.cancelled, events=events, started=started
                )
            batches = plan_batches(resumed.to_send, config.batch_size)
            _tell_quota(limiter, batches, carried_over=ledger is not None)
            report = _send(
                config,
                prepared,
                resumed,
                batches,
                client=client,
                limiter=limiter,
                journal=ledger,
                keys=keys,
                stopper=stopper,
                events=events,
            )
            if ledger is not None:
                events.emit(Phase.SETTLING)
                _settle_in_this_run(
                    config,
                    report,
                    resumed,
                    ledger=ledger,
                    keys=keys,
                    lookup=lookup,
                    client=client,
                    limiter=limiter,
                )
        finally:
            limiter.close()
            if ledger is not None:
                ledger.close()
            if config.session is None:
                client.close()
        result = _result_of(prepared, report, resumed)
        result.ledger = ledger.path if ledger is not None else None
        result.calls += prepared.lookup_calls
        result.interrupted = result.interrupted or token.cancelled
        events.emit(Phase.REPORTING, **_counts(result))
        _finish(config, prepared, result, started, sent=True)
    finally:
        remove_callback()
    events.finished(result)
    return result


def _prepare_outputs(config: ImportConfig, *, workbook: bool = True) -> None:
    """The folders of --errors and --summary-json made and checked before anything is sent."""
    if config.errors_path is not None:
        prepare_folder(config.errors_path, "the error workbook")
    if workbook:
        check_writable(config.error_report_path)
    if config.summary_json is not None:
        prepare_folder(config.summary_json, "the summary")


def _report_stopped(
    config: ImportConfig,
    prepared: Prepared,
    exc: ApiUnusableError | LedgerError,
    *,
    cancelled: bool,
    events: _Events,
    started: float,
) -> ImportResult:
    """Nothing was sent: every valid row is `not sent`, in the workbook and the summary."""
    result = _stopped_before_sending(prepared, str(exc))
    result.ledger_problem = str(exc) if isinstance(exc, LedgerError) else None
    result.interrupted = cancelled
    events.emit(Phase.REPORTING, **_counts(result))
    _finish(config, prepared, result, started, importing=True)
    events.finished(result)
    return result


def _tell_quota(limiter: AccountLimiter, batches: list[Batch], *, carried_over: bool) -> None:
    """Before sending: whether the day's quota covers the calls ahead, and if not how many nights."""
    note = limiter.plan(len(batches), carried_over=carried_over)
    if note:
        log.warning("%s", note)


def _account_limiter(config: ImportConfig) -> AccountLimiter:
    """The account's one limiter on this machine, shared by every run and file (importer.throttle)."""
    return AccountLimiter(
        config.rate_limit, explicit=config.rate_limit_explicit, daily_limit=config.daily_limit
    )


def _check_account(
    config: ImportConfig, prepared: Prepared, *, client: LsqClient, limiter: AccountLimiter, events: _Events
) -> Prepared:
    """The checks against the account: keys, host, mapping, rows, look-ups."""
    events.emit(Phase.CHECKING, f"Checking keys on {host_of(client.base_url)} ...")
    identity = _share_limiter(config, client, limiter)
    return preflight(config, prepared, client, limiter, events, identity=identity)


def _resume(
    config: ImportConfig, prepared: Prepared, ledger: SqliteLedger | None, lookup: Lookup, events: _Events
) -> tuple[MappingOf[int, RowKey], Resume]:
    """The ledger's word on this file's rows: already in LeadSquared, claimed by another run, or to send."""
    rows = prepared.validated.rows
    if ledger is None:
        return {}, Resume(to_send=list(rows))
    events.emit(Phase.RECONCILING, rows_failed=len(prepared.validated.failed_rows))
    origins = row_origins(prepared.sheet, config.input_path)
    known = fingerprint(config.input_path, config.sheet, prepared.mapping, prepared.account_context, rows)
    return claim_file(ledger, rows, origins, lookup, resend=config.resend, fingerprint=known)


def _open_ledger(config: ImportConfig, client: LsqClient, org: str | None) -> SqliteLedger:
    """The account's ledger (host + org id from UserByAccessKey.Get), or the journal_path override."""
    environ = config.state_environ if config.state_environ is not None else dict(os.environ)
    org = org or "unknown"
    path = config.journal_path or default_ledger_path(client.base_url, org, environ)
    ledger = SqliteLedger.open(path, client.base_url, org, environ=environ)
    log.info("ledger: %s", path)
    return ledger


def _settle_in_this_run(
    config: ImportConfig,
    report: SendReport,
    resumed: Resume,
    *,
    ledger: SqliteLedger,
    keys: MappingOf[int, RowKey],
    lookup: Lookup,
    client: LsqClient,
    limiter: RateLimiter,
) -> None:
    """Look up the rows this run left uncertain, send the absent ones alone; wait for other runs' rows."""
    if report.uncertain and not report.interrupted and report.ledger_problem is None:

        def send_alone(rows: list[PlannedRow]) -> tuple[list[tuple[PlannedRow, str | None]], list[RowError]]:
            alone = Sender(client, limiter, max_attempts=config.max_attempts, journal=ledger, keys=keys)
            again = alone.send(plan_batches(rows, 1))
            return again.posted, again.errors

        started = report.first_uncertain_at or datetime.now(UTC)
        try:
            posted, errors = settle(
                ledger,
                report.uncertain,
                keys,
                lookup,
                send_alone,
                since=started,
                last=report.last_uncertain_at or started,
            )
        except LedgerError as exc:
            report.ledger_problem = str(exc)
        else:
            settled = {row.source_row for row in report.uncertain}
            report.errors = [e for e in report.errors if e.source_row not in settled] + errors
            report.posted.extend(posted)
    busy = resumed.busy + report.taken_by_others  # claimed by another run before this one sent them
    if busy and report.ledger_problem is None:
        posted_by_others, left = wait_for_others(ledger, busy, keys)
        resumed.skipped += posted_by_others
        if posted_by_others:
            day = datetime.now(UTC).date().isoformat()
            resumed.skipped_from[("another run at the same time", day)] += posted_by_others
        report.errors.extend(left)
    elif busy:  # the ledger failed: another run's rows cannot be checked, so they are told as not sent
        report.errors.extend(RowError(row.source_row, Stage.NOT_SENT, SENT_BY_ANOTHER_RUN) for row in busy)


class _Events:
    """The run's progress events, sent to `config.on_progress` one at a time under a lock."""

    def __init__(self, config: ImportConfig) -> None:
        self._callback = config.on_progress
        self._lock = threading.Lock()
        self._last = Progress(Phase.READING, input_path=config.input_path)

    def emit(self, phase: Phase, message: str | None = None, /, **counts: int | float | None) -> None:
        """Send an event; counts not given keep their last value."""
        if self._callback is None:
            return
        with self._lock:
            changes: dict[str, Any] = {**counts, "phase": phase, "message": message}
            self._last = replace(self._last, **changes)
            try:
                self._callback(self._last)
            except Exception:  # a presenter's bug must not stop an import
                log.exception("the progress callback raised; the run goes on")

    def finished(self, result: ImportResult) -> None:
        self.emit(Phase.FINISHED, seconds_left=0.0, **_counts(result))


def _counts(result: ImportResult) -> dict[str, int | float | None]:
    return {
        "rows_total": result.rows_total,
        "rows_posted": result.rows_posted,
        "rows_failed": result.rows_failed,
        "rows_skipped": result.rows_skipped,
        "rows_unknown": result.rows_unknown,
        "rows_not_sent": result.rows_not_sent,
    }


class _Stopper:
    """Passes each cancel to the sender while it sends; before that, the run sends nothing.

    A first cancel before sending means "send nothing": the checks finish and every valid row
    is reported as not sent. While sending, the sender stops starting calls; a second cancel
    stops waiting for answers. While the report is written, it is finished first.
    """

    def __init__(self, token: CancelToken) -> None:
        self.token = token
        self.sender: Sender | None = None
        self.delivered = False

    def __call__(self) -> None:
        sender = self.sender
        if sender is not None:
            self.delivered = True
            sender.interrupt()
        elif not self.token.urgent:
            log.warning("cancelled: no row will be sent (the checks finish, then the report is written)")

    def attach(self, sender: Sender) -> None:
        self.sender = sender
        if self.token.cancelled and not self.delivered:  # cancelled before the first call: send nothing
            self.delivered = True
            sender.interrupt()

    def detach(self) -> None:
        self.sender = None


def _client_of(config: ImportConfig, *, on_connect: Callable[[], None] | None = None) -> LsqClient:
    if config.credentials is None:
        raise UsageError("credentials is not set: give the account's API keys (access key and secret key)")
    if not config.host:
        raise UsageError("host is not set: give the account's API host (e.g. api-in21.leadsquared.com)")
    return LsqClient(
        config.host,
        config.credentials,
        session=config.session,
        timeout=config.timeout,
        ca_bundle=config.ca_bundle,
        pool_size=config.concurrency,
        on_connect=on_connect,
    )


def _share_limiter(config: ImportConfig, client: LsqClient, limiter: AccountLimiter) -> Identity:
    """Say which account and host are used, and share the account's limiter with its other runs."""
    environ = config.state_environ if config.state_environ is not None else dict(os.environ)
    folder = config.state_dir or state_dir(environ)
    limiter.expect(folder, host_of(client.base_url))
    try:
        identity = check_keys(client, limiter, config.max_attempts)
    except ApiUnusableError as exc:  # the account is not known yet: LeadSquared's word is all there is
        if names_a_day(str(exc)):
            raise DailyCapReached.said(str(exc)) from None
        raise
    host = host_of(client.base_url)
    log.warning("Checking keys on %s: %s, org %s", host, identity.user, identity.org or "unknown")
    limiter.attach(limits_path(folder, host, identity.org))
    return identity


def _send(
    config: ImportConfig,
    prepared: Prepared,
    resumed: Resume,
    batches: list[Batch],
    *,
    client: LsqClient,
    limiter: RateLimiter,
    journal: SqliteLedger | None,
    keys: MappingOf[int, RowKey],
    stopper: _Stopper,
    events: _Events,
) -> SendReport:
    # The time left is when the calls not yet started may start at the rate limit in force (the
    # limiter knows its window), not the pace so far: the limit, not the network, sets the pace.

    planned = len(batches)
    before = {
        "rows_total": len(prepared.sheet),
        "rows_failed": len(prepared.validated.failed_rows),
        "rows_skipped": resumed.skipped,
        "rows_unknown": len(resumed.errors),
    }
    done = 0
    sender: Sender

    counting = threading.Lock()  # the sender's threads finish calls at once: one event at a time, in order

    def on_batch_done(_batch: Batch) -> None:
        nonlocal done
        with counting:
            done += 1
            _emit_sending(done)

    def _emit_sending(done: int) -> None:
        report = sender._report  # counts so far: the sender has no public tally yet
        events.emit(
            Phase.SETTLING if stopper.token.cancelled else Phase.SENDING,
            calls_done=done,
            calls_planned=planned,
            seconds_left=limiter.seconds_for(planned - done - sender.calls_in_flight),
            rows_posted=len(report.posted),
            rows_failed=before["rows_failed"] + report.count(Stage.API),
            rows_unknown=before["rows_unknown"] + report.count(Stage.UNKNOWN),
            **{k: v for k, v in before.items() if k not in ("rows_failed", "rows_unknown")},
        )

    sender = Sender(
        client,
        limiter,
        concurrency=config.concurrency,
        max_attempts=config.max_attempts,
        column_of=_column_finder(prepared.mapping),
        journal=journal,
        keys=keys,
        on_batch_done=on_batch_done,
    )
    events.emit(
        Phase.SENDING,
        calls_done=0,
        calls_planned=planned,
        seconds_left=limiter.seconds_for(planned),
        **before,
    )
    stopper.attach(sender)
    try:
        return sender.send(batches)
    finally:
        stopper.detach()


# --- The online step: keys, host, mapping and rows against the account -----------------------


def preflight(
    config: ImportConfig,
    prepared: Prepared,
    client: LsqClient,
    limiter: RateLimiter,
    events: _Events | None = None,
    *,
    identity: Identity | None = None,
) -> Prepared:
    """Check keys, host, mapping and rows against the account; returns the rows that may be sent.

    `identity` is the keys check already made (UserByAccessKey.Get), else preflight makes it.
    Raises AuthError/ApiUnusableError (exit 3) or MappingError (exit 2) before anything is sent.
    """
    account = open_account(
        client, config.metadata, limiter=limiter, attempts=config.max_attempts, identity=identity
    )
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
    prepared = replace(
        prepared,
        validated=validated,
        batches=plan_batches(validated.rows, config.batch_size),
        org=account.identity.org,
        account_context=account_context(activities, event),
    )
    return _look_up(config, prepared, client, limiter, org=account.identity.org, events=events)


# --- Look-ups: the opportunity found from the lead's email or phone (importer.lookup, issue 13)


def _look_up(
    config: ImportConfig,
    prepared: Prepared,
    client: LsqClient,
    limiter: RateLimiter,
    *,
    org: str | None,
    events: _Events | None,
) -> Prepared:
    """Rows get their opportunity ids, or fail at stage `lookup`, before anything is sent."""
    if not needs_lookup(prepared.mapping):
        return prepared
    planned = planned_calls(prepared.mapping, prepared.validated.rows)
    done = 0

    def on_call() -> None:
        nonlocal done
        done += 1
        if events is not None:
            message = f"Looking up opportunities: {min(done, planned)} of {planned}"
            events.emit(Phase.CHECKING, message, calls_done=done, calls_planned=max(planned, done))

    prepared, report = resolve(
        prepared,
        client,
        limiter,
        cache_dir=config.metadata.cache_dir,
        org=org,
        batch_size=config.batch_size,
        refresh=config.metadata.refresh,
        attempts=config.max_attempts,
        on_call=on_call,
    )
    return replace(prepared, lookup_calls=prepared.lookup_calls + report.calls)


def _lookup_calls(config: ImportConfig, prepared: Prepared) -> int:
    """Look-up calls for `validate`: made (online), or one per distinct value (offline, and said so)."""
    if config.online or not needs_lookup(prepared.mapping):
        return prepared.lookup_calls
    log.warning(
        "%s: opportunity_id is looked up in the account only with --online; every other check was made",
        config.mapping_path,
    )
    return planned_calls(prepared.mapping, prepared.validated.rows)


def check_online(config: ImportConfig, prepared: Prepared, events: _Events | None = None) -> Prepared:
    """`validate --online`: the checks of `preflight` with a client of its own; sends no activity."""
    limiter = RateLimiter(config.rate_limit)
    client = _client_of(config, on_connect=limiter.leaving_now)
    try:
        return preflight(config, prepared, client, limiter, events)
    finally:
        if config.session is None:
            client.close()


def _stopped_before_sending(prepared: Prepared, reason: str) -> ImportResult:
    rows = prepared.validated.rows
    errors = [RowError(row.source_row, Stage.NOT_SENT, f"not sent: {reason}") for row in rows]
    result = ImportResult(
        rows_total=len(prepared.sheet),
        rows_failed=len(prepared.validated.failed_rows),
        rows_not_sent=len(rows),
        stop_reason=reason,
    )
    result.errors = prepared.validated.errors + errors
    return result


def _result_of(prepared: Prepared, report: SendReport, resumed: Resume) -> ImportResult:
    sent_errors = _with_earlier_failures(resumed.errors + report.errors, resumed.failed_before)
    errors = prepared.validated.errors + sent_errors
    result = ImportResult(
        rows_total=len(prepared.sheet),
        rows_posted=len(report.posted),
        rows_failed=len(prepared.validated.failed_rows) + report.count(Stage.API),
        rows_unknown=report.count(Stage.UNKNOWN) + len(resumed.errors),
        rows_not_sent=report.count(Stage.NOT_SENT),
        rows_skipped=resumed.skipped,
        calls=report.calls,
        throttled=report.throttled,
        retries=report.retries,
        stop_reason=None if report.interrupted or report.ledger_problem else report.stop_reason,
        interrupted=report.interrupted,
        ledger_problem=report.ledger_problem,
    )
    result.skipped_from = [
        {"file": file, "posted_on": day, "rows": rows}
        for (file, day), rows in sorted(resumed.skipped_from.items())
    ]
    result.errors = errors
    return result


def _with_earlier_failures(errors: list[RowError], failed_before: dict[int, str]) -> list[RowError]:
    """A row that failed again says when it failed before (the ledger keeps failed_at)."""
    return [
        replace(e, message=e.message + EARLIER_FAILURE.format(day=failed_before[e.source_row][:10]))
        if e.source_row in failed_before
        else e
        for e in errors
    ]


def _finish(
    config: ImportConfig,
    prepared: Prepared,
    result: ImportResult,
    started: float,
    *,
    sent: bool = False,
    importing: bool = False,
) -> None:
    sheet = prepared.sheet
    if result.errors:
        try:
            result.error_report = write_error_workbook(
                config.error_report_path,
                sheet,
                result.errors,
                _origins_of(sheet, config) if importing or sent else None,
                labels=prepared.validated.labels,
                totals=Totals(
                    result.rows_total, result.rows_posted, result.rows_skipped, sent=importing or sent
                ),
            )
        except OutputError as exc:
            if not sent:
                raise
            # rows went out: the run's counts must still be told, and the journal lets a rerun
            # (once there is space) skip what was posted and write the workbook
            skip = ": rows already posted are skipped" if config.use_journal else " with the journal on"
            result.report_problem = f"{exc}; run again to write it{skip}"
            log.error("%s", result.report_problem)
    release_frozen()  # the run is done with its rows: back in reach of the cycle collector (gcpause)
    result.elapsed_s = time.monotonic() - started
    if config.summary_json is not None:
        result.summary_problem = write_summary(config.summary_json, result.summary())


def write_summary(path: Path, summary: dict[str, object]) -> str | None:
    """Write --summary-json; None when written, else why not (logged, never raised).

    By now rows may have been posted: exit 2 ("nothing was sent") would be a lie, so the run
    keeps its own exit status and says where the summary could not go.
    """
    data = {**summary, "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        write_json_atomically(path, data)
    except OutputError as exc:
        problem = f"summary NOT written: {exc}; the counts are in this run's output"
        log.error("%s", problem)
        return problem
    return None


def _origins_of(sheet: Sheet, config: ImportConfig) -> dict[int, tuple[str, int]]:
    """Each row's original file and row, for the workbook of an import run."""
    return {row: (origin.file, origin.row) for row, origin in row_origins(sheet, config.input_path).items()}


def _column_finder(mapping: Mapping) -> Callable[[str], str | None]:
    """Map an API message to the spreadsheet column it is about, so the cell can be highlighted."""
    by_name: dict[str, str] = {}
    for key, source in mapping.targets():
        columns = source.columns()
        if len(columns) == 1:
            by_name[key.removeprefix("fields.")] = columns[0]
    aliases = {
        "ActivityOwnerEmail": "owner_email",
        "ActivityDateTime": "activity_datetime",
        "ActivityNote": "note",
        "ActivityEvent": "activity_event",
    }
    for api_name, key in aliases.items():
        if key in by_name:
            by_name[api_name] = by_name[key]
    pattern = (
        re.compile(r"\b(" + "|".join(map(re.escape, sorted(by_name, key=len, reverse=True))) + r")\b")
        if by_name
        else None
    )

    def column_of(message: str) -> str | None:
        match = pattern.search(message) if pattern else None
        if match:
            return by_name[match.group(1)]
        lowered = message.lower()
        for word, key in (("owner", "owner_email"), ("opportunit", "opportunity_id")):
            if word in lowered and key in by_name:
                return by_name[key]
        return None

    return column_of
