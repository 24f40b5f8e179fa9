"""Send planned batches under the rate limit, with retries only where a retry cannot duplicate."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from importer.client import UNKNOWN_ADVICE, LsqClient, Outcome, Reply, ReplyKind, RowResult
from importer.planner import Batch
from importer.records import PlannedRow, RowError, Stage
from importer.throttle import RateLimiter, Sleep, backoff_delay

log = logging.getLogger(__name__)

ColumnOf = Callable[[str], "str | None"]


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

    def count(self, stage: Stage) -> int:
        return sum(1 for error in self.errors if error.stage is stage)


class Sender:
    """Posts batches one at a time; each call first takes a slot from the shared rate limiter."""

    def __init__(
        self,
        client: LsqClient,
        limiter: RateLimiter,
        *,
        max_attempts: int = 8,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        column_of: ColumnOf = lambda message: None,
        on_batch_done: Callable[[Batch], None] = lambda batch: None,
    ) -> None:
        self._client = client
        self._limiter = limiter
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._column_of = column_of
        self._on_batch_done = on_batch_done

    def send(self, batches: Iterable[Batch]) -> SendReport:
        report = SendReport()
        pending = list(batches)
        index = 0
        try:
            while index < len(pending) and report.stop_reason is None:
                self._send_batch(pending[index], report)
                index += 1
                self._on_batch_done(pending[index - 1])
        except KeyboardInterrupt:
            report.interrupted = True
            report.stop_reason = "interrupted (Ctrl-C)"
        for batch in pending[index:]:
            self._record_not_sent(batch, report, report.stop_reason or "not sent")
        return report

    def _send_batch(self, batch: Batch, report: SendReport) -> None:
        bodies = [row.body for row in batch.rows]
        for attempt in range(1, self._max_attempts + 1):
            self._limiter.acquire()
            report.calls += 1
            try:
                reply = self._client.post_activities(batch.opportunity_id, bodies)
            except KeyboardInterrupt:
                # The request may have left: its rows are unknown, never "not sent".
                unknown = Reply.all_rows(len(batch), Outcome.UNKNOWN, f"interrupted while sending; {UNKNOWN_ADVICE}")
                self._record_rows(batch, unknown, report)
                report.interrupted = True
                report.stop_reason = "interrupted (Ctrl-C)"
                return
            if reply.kind is ReplyKind.ROWS:
                self._record_rows(batch, reply, report)
                return
            if reply.kind is ReplyKind.AUTH:
                report.stop_reason = f"LeadSquared refused the API keys: {reply.message}"
                self._record_not_sent(batch, report, report.stop_reason)
                return
            if attempt < self._max_attempts:
                report.retries += 1
                self._wait_before_retry(reply, attempt, report)
        self._give_up(batch, reply, report)

    def _wait_before_retry(self, reply: Reply, attempt: int, report: SendReport) -> None:
        if reply.kind is ReplyKind.THROTTLED:
            report.throttled += 1
            log.info("429 from LeadSquared: pausing every call for the rate-limit window")
            self._limiter.pause(reply.retry_after)
            return
        delay = backoff_delay(attempt, rng=self._rng)
        log.info("%s; retrying in %.1f s", reply.message, delay)
        self._sleep(delay)

    def _give_up(self, batch: Batch, reply: Reply, report: SendReport) -> None:
        if reply.kind is ReplyKind.THROTTLED:
            report.throttled += 1
            self._record_not_sent(batch, report, f"still throttled (429) after {self._max_attempts} attempts")
        else:
            report.stop_reason = f"{reply.message} after {self._max_attempts} attempts"
            self._record_not_sent(batch, report, report.stop_reason)

    def _record_rows(self, batch: Batch, reply: Reply, report: SendReport) -> None:
        for row, result in zip(batch.rows, reply.rows, strict=True):
            if result.outcome is Outcome.POSTED:
                report.posted.append((row, result.activity_id))
            else:
                report.errors.append(self._row_error(row, result))

    def _row_error(self, row: PlannedRow, result: RowResult) -> RowError:
        message = result.message or result.outcome.value
        if result.outcome is Outcome.UNKNOWN:
            return RowError(row.source_row, Stage.UNKNOWN, message)
        return RowError(row.source_row, Stage.API, message, self._column_of(message))

    def _record_not_sent(self, batch: Batch, report: SendReport, reason: str) -> None:
        for row in batch.rows:
            report.errors.append(RowError(row.source_row, Stage.NOT_SENT, f"not sent: {reason}"))
