"""Listens for committed product changes on PostgreSQL (LISTEN/NOTIFY) and drops the local
cache's copy of each: the invalidation feed that does not depend on Redis taking the write.

Why a second feed: a writer that cannot reach Redis (frozen, restarting) still commits and
answers, but its Redis invalidation never goes out; the other API processes would serve their
copy from before the change until the local TTL (the 10-minute soak, seed 202, read a product
renamed back that way while Redis was frozen). PostgreSQL notifies every listener at commit
(db/migrations/0007_product_change_notify.sql), before the writer's answer leaves.

Like the Redis feed, the local cache is on only while this subscription is live: a connection
lost, or one that stops answering, turns it off until a new LISTEN is in place.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from catalogue.retry import Backoff
from db.pool import DATABASE_ERRORS
from db.products import CHANGES_CHANNEL
from server.invalidation import IDLE_CHECK_S, RESUBSCRIBE_RETRY
from server.local_cache import POSTGRES, LocalCache
from server.product_events import ProductEvents
from server.version_floors import VersionFloors

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0
APPLICATION_NAME = "catalogue-change-feed"  # how operators (and tests) tell it in pg_stat_activity
# A check of the connection unanswered this long means it died without a word.
PING_TIMEOUT_S = 5.0


def parse_change(payload: object) -> tuple[int, int | None] | None:
    """A notification's product id and committed version (`<id>:<version>`; a bare `<id>`, as
    before db/migrations/0011, has no version); None for anything else."""
    if not isinstance(payload, str):
        return None
    product_id, _, version = payload.partition(":")
    if not product_id.isdigit() or not (version.isdigit() or version == ""):
        return None
    return int(product_id), int(version) if version else None


async def listen_for_product_changes(
    postgres_url: str,
    local: LocalCache,
    events: ProductEvents | None = None,
    floors: VersionFloors | None = None,
) -> None:
    """Runs until cancelled; the local cache counts on this feed only while it is live.
    `events`' watchers hear of each change too, and `floors` of each committed version."""
    resubscribe_backoff = Backoff(RESUBSCRIBE_RETRY)
    while True:
        try:
            await _subscription(postgres_url, local, resubscribe_backoff, events, floors)
        except DATABASE_ERRORS as exc:
            if resubscribe_backoff.failures == 0:
                log.warning("cache.change_feed_lost", extra={"error": repr(exc)})
        await asyncio.sleep(max(RESUBSCRIBE_RETRY.base_s, resubscribe_backoff.next_delay_s()))


async def _subscription(
    postgres_url: str,
    local: LocalCache,
    backoff: Backoff,
    events: ProductEvents | None,
    floors: VersionFloors | None,
) -> None:
    """One LISTEN connection, until it fails (raises) or is cancelled."""
    lost = asyncio.Event()

    def on_change(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
        change = parse_change(payload)
        if change is None:
            return
        product_id, version = change
        if floors is not None and version is not None:
            floors.raise_to(product_id, version)
        local.invalidate(product_id)
        if events is not None:
            events.notify(product_id)

    conn = await asyncpg.connect(
        postgres_url,
        timeout=CONNECT_TIMEOUT_S,
        server_settings={"application_name": APPLICATION_NAME},
    )
    try:
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANGES_CHANNEL, on_change)  # LISTEN has run when it returns
        local.enable(POSTGRES)
        if events is not None:
            events.notify_all()  # what was committed while we were away went unheard
        log.info("cache.change_feed_subscribed", extra={"after_failures": backoff.failures})
        backoff.reset()
        while True:
            try:
                await asyncio.wait_for(lost.wait(), IDLE_CHECK_S)
            except TimeoutError:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), PING_TIMEOUT_S)
                continue
            raise ConnectionError("the listening connection closed")
    finally:
        local.disable(POSTGRES)  # whatever ended it, changes may now be missed
        conn.terminate()
