"""Listens for product invalidations on Redis pub/sub and applies them to the local cache."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from catalogue.cache import INVALIDATION_CHANNEL
from catalogue.retry import Backoff, RetryPolicy
from server.local_cache import LocalCache
from server.product_events import ProductEvents

log = logging.getLogger(__name__)

# After a lost subscription: 0.1 s, doubling up to 2 s, jittered but never below 0.1 s (the local
# cache is off meanwhile).
RESUBSCRIBE_RETRY = RetryPolicy(base_s=0.1, cap_s=2.0)
IDLE_CHECK_S = 5.0
# A PING unanswered for this long means the connection died without a word (no FIN, no RST):
# writes would keep succeeding until TCP gives up, minutes later, with invalidations lost.
SILENCE_LIMIT_S = 2 * IDLE_CHECK_S
SUBSCRIBE_TIMEOUT_S = 2.0


async def listen_for_invalidations(
    redis_url: str, local: LocalCache, events: ProductEvents | None = None
) -> None:
    """Runs until cancelled; the local cache is on only while the subscription is live.
    `events`' watchers hear of each invalidation too."""
    resubscribe_backoff = Backoff(RESUBSCRIBE_RETRY)
    loop = asyncio.get_running_loop()
    while True:
        # A connection of its own, with no read timeout: a subscription is idle most of the time.
        client = redis.Redis.from_url(
            redis_url, socket_connect_timeout=0.5, socket_timeout=None, retry=Retry(NoBackoff(), 0)
        )
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(INVALIDATION_CHANNEL)
            # SUBSCRIBE only sends the command: until Redis confirms, a PUBLISH can still be
            # missed, so the local cache stays off until then.
            await _confirmed(pubsub, loop.time() + SUBSCRIBE_TIMEOUT_S)
            local.enable()
            if events is not None:
                events.notify_all()  # what was published while we were away went unheard
            log.info(
                "cache.invalidations_subscribed",
                extra={"after_failures": resubscribe_backoff.failures},
            )
            resubscribe_backoff.reset()
            last_heard = loop.time()
            while True:
                message = await pubsub.get_message(timeout=IDLE_CHECK_S)
                if message is None:
                    if loop.time() - last_heard > SILENCE_LIMIT_S:
                        raise ConnectionError(f"no answer from Redis in {SILENCE_LIMIT_S} s")
                    await pubsub.ping()  # answered by a "pong" message on a live connection
                    continue
                last_heard = loop.time()
                if message["type"] == "message":
                    product_id = int(message["data"])
                    local.invalidate(product_id)
                    if events is not None:
                        events.notify(product_id)
        except (RedisError, OSError, ValueError) as exc:  # OSError: ConnectionError, TimeoutError
            if resubscribe_backoff.failures == 0:
                log.warning("cache.invalidations_lost", extra={"error": repr(exc)})
        finally:
            local.disable()  # whatever ended the subscription, invalidations may now be missed
            await pubsub.aclose()
            await client.aclose()
        # At least base_s, as before the jitter: full jitter may draw ~0, and a subscription
        # replaced at once would leave the local cache off for less time than anyone watching
        # `enabled` polls (tests/integration/test_local_cache.py's silent-death test does).
        await asyncio.sleep(max(RESUBSCRIBE_RETRY.base_s, resubscribe_backoff.next_delay_s()))


async def _confirmed(pubsub: PubSub, deadline: float) -> None:
    """Waits for Redis to confirm the subscription; TimeoutError past the deadline."""
    loop = asyncio.get_running_loop()
    while (remaining := deadline - loop.time()) > 0:
        message = await pubsub.get_message(timeout=remaining)
        if message is not None and message["type"] == "subscribe":
            return
    raise TimeoutError(f"Redis did not confirm the subscription in {SUBSCRIBE_TIMEOUT_S} s")
