"""`run_import(config)`: the whole import as one call, usable from Python without the CLI."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from importer.atomic import write_json_atomically
from importer.client import Credentials, LsqClient
from importer.errors import ApiUnusableError, ExitStatus, OutputError, UsageError
from importer.gcpause import release as release_frozen
from importer.journal import Journal, KeysOnDemand, RowKey, assign_keys, default_journal_path
from importer.loader import load_sheet
from importer.mapping import Mapping, check_columns, load_mapping
from importer.metadata import MetadataSettings, check_online, preflight
from importer.planner import MAX_BATCH, Batch, plan_batches
from importer.records import RowError, Sheet, Stage
from importer.report import check_writable, write_error_workbook
from importer.resume import Resume, resume
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
    progress: bool = False
    timeout: tuple[float, float] = (10.0, 60.0)
    ca_bundle: str | None = None
    max_attempts: int = 8
    session: requests.Session | None = field(default=None, repr=False)
    metadata: MetadataSettings = field(default_factory=MetadataSettings)  # the account's metadata cache
    online: bool = False  # validate_file: also check against the account (importer.metadata)
    concurrency: int = 8  # workers sharing the rate limit: 8 reach it at 25/1 with 100-300 ms calls (bench/)
    journal_path: Path | None = (
        None  # default: one per input, mapping and host (journal.default_journal_path)
    )
    use_journal: bool = True  # False: no journal, so no skipping of rows posted before
    resend: bool = False  # send rows again even if the journal says they were posted
    rate_limit_explicit: bool = False  # the user set --rate-limit: never raised, not replaced by memory
    daily_limit: int | None = None  # calls a day the account may make (default: the remembered value)
    state_dir: Path | None = None  # where the account's shared limiter lives (default: journal.state_dir)

    def __post_init__(self) -> None:
        self.input_path = Path(self.input_path)
        self.mapping_path = Path(self.mapping_path)
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}, got {self.batch_size}")

    @property
    def error_report_path(self) -> Path:
        if self.errors_path is not None:
            return Path(self.errors_path)
        return self.input_path.with_name(f"{self.input_path.stem}.errors.xlsx")


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
    errors: list[RowError] = field(default_factory=list, repr=False)

    @property
    def exit_status(self) -> ExitStatus:
        if self.interrupted:
            return ExitStatus.INTERRUPTED
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


def prepare(config: ImportConfig) -> Prepared:
    """Read the mapping and the sheet, validate every row, plan the calls. Sends nothing."""
    mapping = load_mapping(config.mapping_path)
    sheet = load_sheet(config.input_path, config.sheet)
    for note in sheet.notes:
        log.warning("%s: %s", config.input_path, note)
    if not len(sheet):  # a quiet day's export: nothing to do, which is not an error
        log.warning("%s: no data rows under the header: nothing to import", config.input_path)
    check_columns(mapping, sheet.headers, config.mapping_path)
    validated = validate_sheet(sheet, mapping, config.mapping_path)
    return Prepared(sheet, mapping, validated, plan_batches(validated.rows, config.batch_size))


def validate_file(config: ImportConfig) -> ImportResult:
    """What `lsq-import validate` does: everything but sending; writes the workbook of invalid rows."""
    started = time.monotonic()
    prepared = prepare(config)
    if config.online:
        prepared = check_online(config, prepared)
    result = ImportResult(rows_total=len(prepared.sheet), calls=len(prepared.batches))
    result.errors = prepared.validated.errors
    result.rows_failed = len(prepared.validated.failed_rows)
    _finish(config, prepared.sheet, result, started)
    return result


def run_import(config: ImportConfig) -> ImportResult:
    """Validate, plan, send under the rate limit, and report every row that did not arrive."""
    started = time.monotonic()
    prepared = prepare(config)
    if config.credentials is None:
        raise UsageError("no API keys: set LSQ_ACCESS_KEY and LSQ_SECRET_KEY")
    if not config.host:
        raise UsageError("no host: use --host (e.g. api-in21.leadsquared.com) or set LSQ_HOST")
    check_writable(config.error_report_path)
    if config.summary_json is not None:
        check_writable(config.summary_json)
    client = LsqClient(
        config.host,
        config.credentials,
        session=config.session,
        timeout=config.timeout,
        ca_bundle=config.ca_bundle,
    )
    limiter = AccountLimiter(
        config.rate_limit, explicit=config.rate_limit_explicit, daily_limit=config.daily_limit
    )
    journal = _open_journal(config, client.base_url) if config.use_journal else None
    ctrl_c = _CtrlC()
    with ctrl_c_calls(ctrl_c):
        try:
            try:
                _share_limiter(config, client, limiter)
                prepared = preflight(
                    config, prepared, client, limiter
                )  # keys, host, mapping, rows vs the account
                rows = prepared.validated.rows
                fresh = journal is None or journal.is_empty()  # nothing to skip: keys only as rows are sent
                keys = {} if journal is None else KeysOnDemand(rows) if fresh else assign_keys(rows)
                resumed = (
                    Resume(to_send=list(rows))
                    if fresh
                    else resume(journal, rows, keys, client, limiter, resend=config.resend)
                )
            except ApiUnusableError as exc:  # nothing sent: still say so in the workbook and the summary
                result = _stopped_before_sending(prepared, str(exc))
                _finish(config, prepared.sheet, result, started)
                return result
            batches = plan_batches(resumed.to_send, config.batch_size)
            quota_note = limiter.plan(len(batches), carried_over=journal is not None)
            if quota_note:
                log.warning("%s", quota_note)
            report = _send(
                config,
                prepared.mapping,
                batches,
                client=client,
                limiter=limiter,
                journal=journal,
                keys=keys,
                ctrl_c=ctrl_c,
            )
        finally:
            limiter.close()
            if journal is not None:
                journal.close()
            if config.session is None:
                client.close()
        result = _result_of(prepared, report, resumed)
        result.interrupted = result.interrupted or ctrl_c.seen
        _finish(config, prepared.sheet, result, started, sent=True)  # a Ctrl-C now waits for the report
    return result


class _CtrlC:
    """Ctrl-C during a run: remembered, and passed to the sender while it sends.

    Before sending, a first Ctrl-C means "send nothing" and a second one stops at once; while
    sending, the sender stops starting calls (a second Ctrl-C: stops waiting for answers); while
    the report is written, it is finished first.
    """

    def __init__(self) -> None:
        self.seen = False
        self.sender: Sender | None = None

    def __call__(self) -> None:
        if self.sender is not None:
            self.seen = True
            self.sender.interrupt()
        elif self.seen:
            raise KeyboardInterrupt
        else:
            self.seen = True
            log.warning("Ctrl-C: stopping before any row is sent (Ctrl-C again to stop at once)")


def _share_limiter(config: ImportConfig, client: LsqClient, limiter: AccountLimiter) -> None:
    """Say which account and host are used, and share the account's limiter with its other runs."""
    from importer.journal import state_dir  # noqa: PLC0415 - the ledger may move it: looked up late
    from importer.metadata import check_keys, host_of  # noqa: PLC0415 - metadata imports this module

    _ask_who_once(client)
    folder = config.state_dir or state_dir(dict(os.environ))
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


def _ask_who_once(client: LsqClient) -> None:
    """The keys check is made here, before preflight makes it again: one call per run."""
    asked: dict[str, Any] = {}
    who_am_i = client.who_am_i

    def who_am_i_once(**kwargs: Any) -> dict[str, Any]:
        if not asked:
            asked.update(who_am_i(**kwargs))
        return asked

    client.who_am_i = who_am_i_once  # type: ignore[method-assign]


def _open_journal(config: ImportConfig, base_url: str) -> Journal:
    path = config.journal_path or default_journal_path(
        config.input_path, config.mapping_path, base_url, dict(os.environ)
    )
    journal = Journal.open(path, base_url)
    log.info("journal: %s", path)
    return journal


def _send(
    config: ImportConfig,
    mapping: Mapping,
    batches: list[Batch],
    *,
    client: LsqClient,
    limiter: RateLimiter,
    journal: Journal | None,
    keys: dict[int, RowKey] | KeysOnDemand,
    ctrl_c: _CtrlC,
) -> SendReport:
    # The time left is the calls left at the rate limit, not the pace so far: the first window's
    # calls go out at once, and the limit, not the network, sets the pace after that.
    def seconds_per_call() -> float:  # the limit in force: it drops when LeadSquared names a lower one
        return limiter.window / limiter.limit.calls

    with tqdm(
        total=len(batches),
        unit="call",
        disable=not config.progress,
        leave=False,
        postfix=tqdm.format_interval(len(batches) * seconds_per_call()),
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} calls [{elapsed} so far{postfix} left at the rate limit]",
    ) as bar:

        def on_batch_done(_batch: Batch) -> None:
            bar.set_postfix_str(
                tqdm.format_interval((bar.total - bar.n - 1) * seconds_per_call()), refresh=False
            )
            bar.update()

        sender = Sender(
            client,
            limiter,
            concurrency=config.concurrency,
            max_attempts=config.max_attempts,
            column_of=_column_finder(mapping),
            journal=journal,
            keys=keys,
            on_batch_done=on_batch_done,
        )
        ctrl_c.sender = sender
        if ctrl_c.seen:  # Ctrl-C came before the first call: send nothing, report every row as not sent
            sender.interrupt()
        try:
            return sender.send(batches)
        finally:
            ctrl_c.sender = None


@contextlib.contextmanager
def ctrl_c_calls(callback: Callable[[], None]) -> Iterator[None]:
    """While rows are sent and reported, Ctrl-C calls `callback` instead of raising anywhere.

    A KeyboardInterrupt can land between any two bytecodes, say while the sender starts its
    threads or while the workbook is written, and lose the record of calls already made. Only
    the main thread can set a signal handler; elsewhere the sender's own catch remains.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: callback())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
    errors = prepared.validated.errors + resumed.errors + report.errors
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
        stop_reason=None if report.interrupted else report.stop_reason,
        interrupted=report.interrupted,
    )
    result.errors = errors
    return result


def _finish(
    config: ImportConfig, sheet: Sheet, result: ImportResult, started: float, *, sent: bool = False
) -> None:
    if result.errors:
        try:
            result.error_report = write_error_workbook(config.error_report_path, sheet, result.errors)
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
        write_json_atomically(config.summary_json, result.summary())


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
