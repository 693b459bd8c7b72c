"""Claims due deliveries, sends them, records each attempt and schedules the next.

- Claimed with FOR UPDATE SKIP LOCKED and a lease (next_attempt_at pushed past the longest an
  attempt may take), so dispatchers share the work and one that dies leaves its deliveries to
  another: at least once.
- At most WEBHOOK_CONCURRENCY attempts at once, and WEBHOOK_ENDPOINT_CONCURRENCY per endpoint,
  decided in the claim itself: a hanging endpoint holds its own slots and no one else's.
- A failed attempt waits for the next step of WEBHOOK_RETRY_SCHEDULE; after the last, the
  delivery has failed, and an endpoint with no success since that delivery began (it failed for
  the whole schedule) is disabled, with its reason shown by the API.
- One log line per attempt (`webhook.attempt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

import asyncpg

from catalogue import spans
from catalogue.retry import Backoff, RetryPolicy
from catalogue.webhooks import delivery_headers, secret_key
from config import Settings
from db import webhooks
from db.pool import DATABASE_ERRORS
from webhooks.delivery import Outcome, Sender

log = logging.getLogger("webhooks")

IDLE_POLL_S = 1.0  # retries come due without a wake-up: how late one may start
LEASE_MARGIN_S = 30.0
DB_RETRY = RetryPolicy(base_s=0.2, cap_s=5.0)
RETENTION_S = 7 * 86400.0  # finished deliveries (and their attempts) kept this long
PRUNE_EVERY_S = 3600.0
PRUNE_BATCH = 1000
DISABLED_REASON = "every delivery attempt failed for a whole retry schedule"


class Dispatcher:
    def __init__(
        self,
        db: asyncpg.Pool,
        sender: Sender,
        settings: Settings,
        wake: asyncio.Event,
        stopping: asyncio.Event,
    ) -> None:
        self.db = db
        self.sender = sender
        self.settings = settings
        self.wake = wake
        self.stopping = stopping
        self.lease_s = settings.webhook_timeout_seconds + LEASE_MARGIN_S
        self.inflight: Counter[int] = Counter()  # attempts under way, by endpoint
        self.tasks: set[asyncio.Task[None]] = set()
        self._task_done = asyncio.Event()
        self._next_prune = 0.0

    async def run(self) -> None:
        """Until `stopping`; then lets attempts under way finish (each is bounded by the
        timeout) so none is left half-recorded."""
        backoff = Backoff(DB_RETRY)
        while not self.stopping.is_set():
            try:
                claimed = await self._claim_and_start()
                await self._prune_now_and_then()
                backoff.reset()
            except DATABASE_ERRORS as exc:
                log.warning("webhook.claim_failed", extra={"error": repr(exc)})
                await self._pause(backoff.next_delay_s())
                continue
            if not claimed or len(self.tasks) >= self.settings.webhook_concurrency:
                await self._pause(IDLE_POLL_S)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=self.lease_s)
        for task in list(self.tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pause(self, seconds: float) -> None:
        """Until new deliveries are queued, an attempt ends, stopping, or `seconds` pass."""
        self._task_done.clear()
        waits = [
            asyncio.ensure_future(event.wait())
            for event in (self.wake, self._task_done, self.stopping)
        ]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        self.wake.clear()

    async def _claim_and_start(self) -> int:
        room = self.settings.webhook_concurrency - len(self.tasks)
        if room <= 0:
            return 0
        cap = self.settings.webhook_endpoint_concurrency
        busy = {w: cap - n for w, n in self.inflight.items() if n > 0}
        async with self.db.acquire() as conn:
            rows = await webhooks.claim_due(
                conn,
                limit=room,
                endpoint_room=busy,
                endpoint_cap=cap,
                lease_s=self.lease_s,
            )
        for row in rows:
            self.inflight[row["webhook_id"]] += 1
            task = asyncio.create_task(self._deliver(row), name=f"webhook-{row['id']}")
            self.tasks.add(task)
            task.add_done_callback(self._finished(row["webhook_id"]))
        return len(rows)

    def _finished(self, webhook_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            self.inflight[webhook_id] -= 1
            if self.inflight[webhook_id] <= 0:
                del self.inflight[webhook_id]
            self._task_done.set()
            if not task.cancelled() and task.exception() is not None:
                log.error("webhook.delivery_crashed", exc_info=task.exception())

        return done

    async def _deliver(self, row: asyncpg.Record) -> None:
        # A step of the trace of the change that made the event: its attempt's line carries it.
        with spans.step(
            "webhook.deliver",
            row["traceparent"],
            "client",
            webhook_id=row["webhook_id"],
            event_type=row["event_type"],
        ):
            await self._attempt(row)

    async def _attempt(self, row: asyncpg.Record) -> None:
        if row["disabled_at"] is not None:
            async with self.db.acquire() as conn:
                await webhooks.fail_pending_of_disabled(conn, row["id"])
            return
        key = secret_key(self.settings.webhook_signing_key, row["webhook_id"], row["secret_salt"])
        body = row["body"]
        headers = delivery_headers(key, row["event_id"], int(time.time()), body)
        outcome = await self.sender.send(row["url"], headers, body)
        attempt = row["attempts"] + 1
        schedule = self.settings.webhook_retry_schedule
        retry_in_s = schedule[attempt - 1] if attempt <= len(schedule) else None
        await self._record(row, attempt, outcome, retry_in_s)

    async def _record(
        self, row: asyncpg.Record, attempt: int, outcome: Outcome, retry_in_s: float | None
    ) -> None:
        """Records the attempt; if PostgreSQL does not take it before the lease ends, the
        delivery is attempted again (at least once, never lost)."""
        if outcome.delivered:
            result, retry_in_s = "delivered", None
        else:
            result = "retrying" if retry_in_s is not None else "failed"
        log.info(
            "webhook.attempt",
            extra={
                "webhook_id": row["webhook_id"],
                "event_id": row["event_id"],
                "event_type": row["event_type"],
                "attempt": attempt,
                "result": result,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "duration_ms": round(outcome.duration_ms, 1),
                "retry_in_s": retry_in_s,
            },
        )
        deadline = time.monotonic() + self.lease_s - LEASE_MARGIN_S / 2
        backoff = Backoff(DB_RETRY)
        while True:
            try:
                async with self.db.acquire() as conn:
                    await webhooks.record_attempt(
                        conn,
                        delivery_id=row["id"],
                        webhook_id=row["webhook_id"],
                        attempt=attempt,
                        status_code=outcome.status_code,
                        error=outcome.error,
                        duration_ms=outcome.duration_ms,
                        delivered=outcome.delivered,
                        retry_in_s=retry_in_s,
                    )
                    if result == "failed" and await webhooks.disable_if_failing(
                        conn, row["webhook_id"], row["created_at"], DISABLED_REASON
                    ):
                        log.warning(
                            "webhook.disabled",
                            extra={"webhook_id": row["webhook_id"], "reason": DISABLED_REASON},
                        )
                return
            except asyncpg.ForeignKeyViolationError:
                return  # the endpoint was deleted meanwhile, its deliveries with it
            except DATABASE_ERRORS as exc:
                if time.monotonic() >= deadline:
                    log.error(
                        "webhook.record_failed",
                        extra={"webhook_id": row["webhook_id"], "error": repr(exc)},
                    )
                    return
                await asyncio.sleep(backoff.next_delay_s())

    async def _prune_now_and_then(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        async with self.db.acquire() as conn:
            pruned = await webhooks.prune_finished(conn, RETENTION_S, PRUNE_BATCH)
        if pruned:
            log.info("webhook.deliveries_pruned", extra={"deliveries": pruned})
