"""Send planned batches at the rate limit, retrying only where a retry cannot duplicate.

K worker threads share one rate limiter; each takes a whole opportunity at a time, so the calls
for one opportunity keep their order. A 429 pauses every worker for the window. A batch that
LeadSquared rejects as a whole without naming the row is split in halves until the bad rows are
isolated, unless the error is about the opportunity itself.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from importer.client import LsqClient
from importer.ledger import Ledger, LedgerError, Record, RowKey, RowState
from importer.planner import Batch
from importer.records import PlannedRow, RowError, Stage
from importer.replies import UNKNOWN_ADVICE, Outcome, Reply, ReplyKind, RowResult
from importer.throttle import DailyCapReached, RateLimit, RateLimiter, Sleep, backoff_delay, names_a_day

log = logging.getLogger(__name__)

ColumnOf = Callable[[str], "str | None"]
_STATE_OF = {
    Outcome.POSTED: RowState.POSTED,
    Outcome.FAILED: RowState.FAILED,
    Outcome.UNKNOWN: RowState.UNKNOWN,
}


@dataclass
class SendReport:
    """What happened to every row handed to the sender."""

    posted: list[tuple[PlannedRow, str | None]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    calls: int = 0
    throttled: int = 0
    retries: int = 0
    stop_reason: str | None = None  # set when the run stopped early (401, unreachable host)
    interrupted: bool = False
    ledger_problem: str | None = None  # the ledger could not be written: sending stopped
    uncertain: list[PlannedRow] = field(default_factory=list)  # rows of unknown outcome, to settle
    first_uncertain_at: datetime | None = None  # when the first call of unknown outcome started
    last_uncertain_at: datetime | None = None  # when the last one ended
    taken_by_others: list[PlannedRow] = field(default_factory=list)  # claimed by another run first

    def count(self, stage: Stage) -> int:
        return sum(1 for error in self.errors if error.stage is stage)


class _Stopped(Exception):
    """The run is stopping: leave the rest of this opportunity unsent."""


class Sender:
    """Posts batches with `concurrency` workers under one shared rate limiter."""

    def __init__(
        self,
        client: LsqClient,
        limiter: RateLimiter,
        *,
        concurrency: int = 1,
        max_attempts: int = 8,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        column_of: ColumnOf = lambda message: None,
        journal: Ledger | None = None,
        keys: Mapping[int, RowKey] | None = None,
        on_batch_done: Callable[[Batch], None] = lambda batch: None,
    ) -> None:
        self._client = client
        self._limiter = limiter
        self._concurrency = max(1, concurrency)
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._column_of = column_of
        self._journal = journal
        self._keys = keys or {}
        self._on_batch_done = on_batch_done
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._interrupts = 0
        self._report = SendReport()
        self._settled: set[int] = set()  # source rows with a recorded outcome
        self._in_flight: dict[int, list[PlannedRow]] = {}  # thread id -> rows of its current call

    def send(self, batches: Iterable[Batch]) -> SendReport:
        """Send every batch; return what happened to each row (never raises for a row)."""
        groups: dict[str, list[Batch]] = {}
        for batch in batches:
            groups.setdefault(batch.opportunity_id, []).append(batch)
        work: queue.SimpleQueue[list[Batch]] = queue.SimpleQueue()
        for group in groups.values():
            work.put(group)
        count = min(self._concurrency, len(groups))
        self._running = count
        self._all_done = threading.Event()
        if count == 0:
            self._all_done.set()
        for n in range(count):
            threading.Thread(target=self._work, args=(work,), daemon=True, name=f"sender-{n}").start()
        self._wait()
        for group in groups.values():  # whatever no worker reached
            for batch in group:
                self._record_not_sent(batch.rows, self._report.stop_reason or "not sent")
        return self._report

    def interrupt(self) -> None:
        """Ctrl-C: stop starting calls; a second one stops waiting for the calls in flight."""
        with self._lock:
            self._interrupts += 1
            again = self._interrupts > 1
        self._stop_run("interrupted (Ctrl-C)", interrupted=True)
        if again:
            self._abandon.set()
        else:
            log.warning("stopping: waiting for the calls in flight to answer (Ctrl-C again to stop now)")

    def _wait(self) -> None:
        """Wait for the workers, or until a second Ctrl-C says to stop waiting."""
        # An Event, not Thread.join: a join interrupted by Ctrl-C can report a live thread as dead.
        while not self._all_done.is_set():
            if self._abandon.is_set():
                self._abandon_in_flight()
                return
            try:
                self._all_done.wait(timeout=0.1)
            except KeyboardInterrupt:  # no SIGINT handler installed (see runner.ctrl_c_calls)
                self.interrupt()

    @property
    def calls_in_flight(self) -> int:
        """Calls sent and not answered yet: their slots of the rate limit are taken already."""
        with self._lock:
            return len(self._in_flight)

    def _abandon_in_flight(self) -> None:
        with self._lock:
            rows = [row for calls in self._in_flight.values() for row in calls]
        message = f"interrupted while sending; {UNKNOWN_ADVICE}"
        self._record([(row, RowResult(Outcome.UNKNOWN, message)) for row in rows])

    def _stop_run(self, reason: str, *, interrupted: bool = False) -> None:
        with self._lock:
            if self._report.stop_reason is None:
                self._report.stop_reason = reason
            self._report.interrupted = self._report.interrupted or interrupted
        self._stop.set()

    def _work(self, work: queue.SimpleQueue[list[Batch]]) -> None:
        try:
            self._work_until_done(work)
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._all_done.set()

    def _work_until_done(self, work: queue.SimpleQueue[list[Batch]]) -> None:
        while not self._stop.is_set():
            try:
                group = work.get_nowait()
            except queue.Empty:
                return
            for batch in group:
                try:
                    rows = self._claim(list(batch.rows))
                    if rows:
                        self._send_rows(batch.opportunity_id, rows)
                except _Stopped:
                    break
                except LedgerError as exc:  # one clear message, no traceback; rows in flight stay unknown
                    with self._lock:
                        self._report.ledger_problem = self._report.ledger_problem or str(exc)
                    self._stop_run(str(exc))
                    break
                except Exception as exc:  # a bug must not lose rows: what may have been sent is unknown
                    log.exception("unexpected error while sending")
                    message = f"internal error while sending ({type(exc).__name__}); {UNKNOWN_ADVICE}"
                    try:  # the report holds them as unknown even when the ledger cannot say so
                        self._record([(row, RowResult(Outcome.UNKNOWN, message)) for row in batch.rows])
                    except LedgerError as trouble:
                        with self._lock:
                            self._report.ledger_problem = self._report.ledger_problem or str(trouble)
                    self._stop_run(f"internal error ({type(exc).__name__}: {exc})")
                    break
                self._on_batch_done(batch)

    def _send_rows(self, opportunity_id: str, rows: list[PlannedRow]) -> None:
        reply = self._call(opportunity_id, rows)
        if _should_split(reply, rows):
            middle = len(rows) // 2
            log.info(
                "%s rejected a call of %d without naming the row: splitting it", opportunity_id, len(rows)
            )
            self._send_rows(opportunity_id, rows[:middle])
            self._send_rows(opportunity_id, rows[middle:])
            return
        self._record(list(zip(rows, reply.rows, strict=True)))

    def _call(self, opportunity_id: str, rows: list[PlannedRow]) -> Reply:
        """One call, repeated only when nothing can have been created; raises _Stopped."""
        bodies = [row.body for row in rows]
        for attempt in range(1, self._max_attempts + 1):
            # The rows are claimed before the slot is taken: a ledger write between the slot and
            # the request would let the server see this call later than the limiter counted it.
            self._mark_sending(rows)
            try:
                self._limiter.acquire()
            except DailyCapReached as exc:  # the day's quota is spent: the rows left wait for the next run
                self._mark_pending(rows)
                self._stop_run(str(exc))
                raise _Stopped from None
            if self._stop.is_set():
                self._mark_pending(rows)
                raise _Stopped
            started = datetime.now(UTC)
            with self._lock:
                self._report.calls += 1
                self._in_flight[threading.get_ident()] = rows
            try:
                reply = self._client.post_activities(opportunity_id, bodies)
            finally:
                with self._lock:
                    self._in_flight.pop(threading.get_ident(), None)
            if reply.kind is ReplyKind.ROWS:
                self._note_uncertain(reply, started)
                self._limiter.answered()
                return reply
            self._mark_pending(rows)
            if reply.kind is ReplyKind.AUTH:
                self._stop_run(f"LeadSquared refused the API keys: {reply.message}")
                raise _Stopped
            if reply.kind is ReplyKind.STOP:
                self._stop_run(reply.message)
                raise _Stopped
            if attempt < self._max_attempts:
                self._wait_before_retry(reply, attempt)
        self._give_up(reply)
        raise _Stopped

    def _wait_before_retry(self, reply: Reply, attempt: int) -> None:
        with self._lock:
            self._report.retries += 1
            if reply.kind is ReplyKind.THROTTLED:
                self._report.throttled += 1
        if reply.kind is ReplyKind.THROTTLED:
            self._throttled(reply)
            return
        delay = backoff_delay(attempt, rng=self._rng)
        log.warning("%s; retrying in %.1f s", reply.message, delay)
        self._sleep(delay)

    def _throttled(self, reply: Reply) -> None:
        """Drop to the limit LeadSquared names (for the rest of the run, and the account's next runs)."""
        if reply.limit is not None:
            self._limiter.lower_to(RateLimit(*reply.limit), source="LeadSquared's throttle message")
        if names_a_day(reply.message):  # "exceeded the daily limit": no window clears it
            self._limiter.day_spent()
        log.warning("LeadSquared throttled a call (%s): pausing every call on the account", reply.message)
        self._limiter.pause(reply.retry_after)

    def _give_up(self, reply: Reply) -> None:
        if reply.kind is ReplyKind.THROTTLED:
            with self._lock:
                self._report.throttled += 1
            self._stop_run(
                f"still throttled after {self._max_attempts} attempts; the next run sends the rest"
            )
        else:
            self._stop_run(f"{reply.message} after {self._max_attempts} attempts")

    # --- bookkeeping: the report and the ledger, shared by the workers

    def _note_uncertain(self, reply: Reply, started: datetime) -> None:
        if any(row.outcome is Outcome.UNKNOWN for row in reply.rows):
            with self._lock:
                first = self._report.first_uncertain_at
                self._report.first_uncertain_at = min(first, started) if first else started
                self._report.last_uncertain_at = datetime.now(UTC)

    def _claim(self, rows: list[PlannedRow]) -> list[PlannedRow]:
        """The rows of a call the ledger gives this run (claims deferred until now, see
        Ledger.claim(defer=True)); a row another run claimed meanwhile is left to it."""
        if self._journal is None:
            return rows
        lost = self._journal.claim_deferred([self._keys[row.source_row] for row in rows])
        if not lost:
            return rows
        with self._lock:
            for row in rows:
                if self._keys[row.source_row] in lost:
                    self._settled.add(row.source_row)
                    self._report.taken_by_others.append(row)
        return [row for row in rows if self._keys[row.source_row] not in lost]

    def _mark_sending(self, rows: list[PlannedRow]) -> None:
        self._journal_write(rows, RowState.SENDING)

    def _mark_pending(self, rows: list[PlannedRow]) -> None:
        self._journal_write(rows, RowState.PENDING)

    def _journal_write(self, rows: list[PlannedRow], state: RowState) -> None:
        if self._journal is not None:
            self._journal.record([Record(self._keys[row.source_row], row, state) for row in rows])

    def _record(self, outcomes: list[tuple[PlannedRow, RowResult]]) -> None:
        with self._lock:
            fresh = [(row, result) for row, result in outcomes if row.source_row not in self._settled]
            self._settled.update(row.source_row for row, _ in fresh)
            for row, result in fresh:
                if result.outcome is Outcome.POSTED:
                    self._report.posted.append((row, result.activity_id))
                else:
                    self._report.errors.append(self._row_error(row, result))
                if result.outcome is Outcome.UNKNOWN:
                    self._report.uncertain.append(row)
        if self._journal is not None and fresh:
            self._journal.record(
                [
                    Record(
                        self._keys[row.source_row],
                        row,
                        _STATE_OF[result.outcome],
                        result.activity_id,
                        result.message,
                    )
                    for row, result in fresh
                ]
            )

    def _record_not_sent(self, rows: Iterable[PlannedRow], reason: str) -> None:
        with self._lock:
            for row in rows:
                if row.source_row not in self._settled:
                    self._settled.add(row.source_row)
                    self._report.errors.append(
                        RowError(row.source_row, Stage.NOT_SENT, f"not sent: {reason}")
                    )

    def _row_error(self, row: PlannedRow, result: RowResult) -> RowError:
        message = result.message or result.outcome.value
        if result.outcome is Outcome.UNKNOWN:
            return RowError(row.source_row, Stage.UNKNOWN, message)
        return RowError(row.source_row, Stage.API, message, self._column_of(message))


def _should_split(reply: Reply, rows: list[PlannedRow]) -> bool:
    """A whole-call rejection that does not name the row, and is not about the opportunity."""
    if not reply.whole_call or len(rows) < 2:
        return False
    message = (reply.rows[0].message or "").casefold()
    about_the_target = ("opportunit", "lead", rows[0].opportunity_id.casefold())
    return not any(word in message for word in about_the_target)
