"""Queries of the webhooks, webhook_deliveries and webhook_attempts tables
(db/migrations/0008_webhooks.sql)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

import asyncpg

from db.pool import Connection, Executor

WEBHOOK_COLUMNS = (
    "id, user_id, url, events, secret_salt, created_at, last_success_at, disabled_at, "
    "disabled_reason"
)


class UnknownUser(LookupError):
    pass


class TooManyWebhooks(Exception):
    pass


async def create_webhook(
    conn: Executor, *, user_id: int, url: str, events: Sequence[str], salt: bytes, most: int
) -> asyncpg.Record:
    """A new endpoint, unless the user already has `most` (TooManyWebhooks). Two registrations
    racing may both pass the count: the bound is on cost, not an exact quota."""
    try:
        row = await conn.fetchrow(
            f"""INSERT INTO webhooks (user_id, url, events, secret_salt)
                SELECT $1, $2, $3::text[], $4
                 WHERE (SELECT count(*) FROM webhooks WHERE user_id = $1) < $5
             RETURNING {WEBHOOK_COLUMNS}""",
            user_id,
            url,
            list(events),
            salt,
            most,
        )
    except asyncpg.ForeignKeyViolationError:
        raise UnknownUser(user_id) from None
    if row is None:
        raise TooManyWebhooks(user_id)
    return row


async def get_webhook(conn: Executor, webhook_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1", webhook_id)


async def list_webhooks(conn: Executor, user_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE user_id = $1 ORDER BY id", user_id
    )


async def delete_webhook(conn: Executor, webhook_id: int) -> bool:
    """Deletes the endpoint with its deliveries and attempts (pending ones are never sent)."""
    return (
        await conn.fetchval("DELETE FROM webhooks WHERE id = $1 RETURNING true", webhook_id)
        or False
    )


async def recent_deliveries(conn: Executor, webhook_id: int, limit: int) -> list[asyncpg.Record]:
    """The endpoint's newest deliveries, each with its attempts (oldest first) as JSON text."""
    return await conn.fetch(
        """SELECT d.id, d.event_id, d.event_type, d.state, d.attempts, d.created_at,
                  d.finished_at,
                  CASE WHEN d.state = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
                  coalesce((SELECT json_agg(json_build_object(
                                       'attempt', a.attempt,
                                       'attempted_at', a.attempted_at,
                                       'status_code', a.status_code,
                                       'error', a.error,
                                       'duration_ms', round(a.duration_ms::numeric, 1))
                                   ORDER BY a.id)
                              FROM webhook_attempts a WHERE a.delivery_id = d.id),
                           '[]')::text AS attempt_list
             FROM webhook_deliveries d
            WHERE d.webhook_id = $1
            ORDER BY d.id DESC
            LIMIT $2""",
        webhook_id,
        limit,
    )


async def queue_deliveries(
    conn: Executor,
    *,
    user_id: int,
    event_id: str,
    event_type: str,
    body: str,
    traceparent: str | None,
) -> int:
    """One delivery of the event per enabled endpoint of its user subscribed to its type; an
    event seen again (Kafka delivers at least once) queues nothing new. Returns how many."""
    status = await conn.execute(
        """INSERT INTO webhook_deliveries
               (webhook_id, event_id, event_type, body, next_attempt_at, traceparent)
           SELECT id, $2, $3, $4, now(), $5
             FROM webhooks
            WHERE user_id = $1 AND disabled_at IS NULL AND $3 = ANY (events)
           ON CONFLICT (webhook_id, event_id) DO NOTHING""",
        user_id,
        event_id,
        event_type,
        body,
        traceparent,
    )
    return int(status.rsplit(" ", 1)[-1])


# Claimed by pushing next_attempt_at past the attempt's longest duration (a lease): another
# dispatcher skips it meanwhile, and takes it over if this one dies mid-attempt. Each endpoint
# gets at most its room: the cap, less what this dispatcher already sends it ($2, $3).
_CLAIM = """
WITH ranked AS (
    SELECT d.id, d.webhook_id,
           row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at, d.id) AS n
      FROM webhook_deliveries d
     WHERE d.state = 'pending' AND d.next_attempt_at <= now()
), due AS (
    SELECT d.id
      FROM webhook_deliveries d
      JOIN ranked r ON r.id = d.id
      LEFT JOIN unnest($2::bigint[], $3::int[]) AS busy (webhook_id, room)
             ON busy.webhook_id = r.webhook_id
     WHERE r.n <= coalesce(busy.room, $4)
       AND d.state = 'pending' AND d.next_attempt_at <= now()
     ORDER BY d.next_attempt_at
     LIMIT $1
       FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
   SET next_attempt_at = now() + make_interval(secs => $5)
  FROM due, webhooks w
 WHERE d.id = due.id AND w.id = d.webhook_id
RETURNING d.id, d.webhook_id, d.event_id, d.event_type, d.body, d.attempts, d.created_at,
          d.traceparent, w.url, w.secret_salt, w.disabled_at
"""


async def claim_due(
    conn: Executor,
    *,
    limit: int,
    endpoint_room: Mapping[int, int],
    endpoint_cap: int,
    lease_s: float,
) -> list[asyncpg.Record]:
    """Up to `limit` deliveries due now: per endpoint at most `endpoint_room` of it, or
    `endpoint_cap` for one not listed."""
    return await conn.fetch(
        _CLAIM,
        limit,
        list(endpoint_room),
        list(endpoint_room.values()),
        endpoint_cap,
        lease_s,
    )


# A delivery's last attempt: delivered, or failed for good.
_FINISH = """
UPDATE webhook_deliveries
   SET state = $3, attempts = $2, finished_at = now(), next_attempt_at = NULL
 WHERE id = $1
"""


async def record_attempt(
    conn: Connection,
    *,
    delivery_id: int,
    webhook_id: int,
    attempt: int,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    delivered: bool,
    retry_in_s: float | None,
) -> None:
    """The attempt, and the delivery's next state: delivered; pending again in `retry_in_s`;
    or failed for good (retry_in_s None)."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO webhook_attempts
                   (delivery_id, webhook_id, attempt, status_code, error, duration_ms)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            delivery_id,
            webhook_id,
            attempt,
            status_code,
            error,
            duration_ms,
        )
        if delivered:
            await conn.execute(_FINISH, delivery_id, attempt, "delivered")
            await conn.execute(
                "UPDATE webhooks SET last_success_at = now() WHERE id = $1", webhook_id
            )
        elif retry_in_s is not None:
            await conn.execute(
                """UPDATE webhook_deliveries
                      SET attempts = $2, next_attempt_at = now() + make_interval(secs => $3)
                    WHERE id = $1""",
                delivery_id,
                attempt,
                retry_in_s,
            )
        else:
            await conn.execute(_FINISH, delivery_id, attempt, "failed")


async def disable_if_failing(
    conn: Connection, webhook_id: int, since: datetime.datetime, reason: str
) -> bool:
    """Disables the endpoint unless it has succeeded since `since` (when a delivery that has now
    failed its whole schedule began); its other pending deliveries fail with it."""
    async with conn.transaction():
        disabled = await conn.fetchval(
            """UPDATE webhooks SET disabled_at = now(), disabled_reason = $3
                WHERE id = $1 AND disabled_at IS NULL
                  AND (last_success_at IS NULL OR last_success_at < $2)
            RETURNING true""",
            webhook_id,
            since,
            reason,
        )
        if disabled:
            await conn.execute(
                """UPDATE webhook_deliveries
                      SET state = 'failed', finished_at = now(), next_attempt_at = NULL
                    WHERE webhook_id = $1 AND state = 'pending'""",
                webhook_id,
            )
    return bool(disabled)


async def fail_pending_of_disabled(conn: Executor, delivery_id: int) -> None:
    """A delivery claimed for an endpoint disabled meanwhile: it fails without an attempt."""
    await conn.execute(
        """UPDATE webhook_deliveries
              SET state = 'failed', finished_at = now(), next_attempt_at = NULL
            WHERE id = $1""",
        delivery_id,
    )


async def prune_finished(conn: Executor, older_than_s: float, limit: int) -> int:
    """Deletes up to `limit` deliveries finished more than `older_than_s` ago (their attempts
    go with them); returns how many."""
    status = await conn.execute(
        """DELETE FROM webhook_deliveries
            WHERE id IN (SELECT id FROM webhook_deliveries
                          WHERE state <> 'pending'
                            AND finished_at < now() - make_interval(secs => $1)
                          LIMIT $2)""",
        older_than_s,
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])
