"""Listens for product invalidations on Redis pub/sub and applies them to the local cache."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.cache import INVALIDATION_CHANNEL
from server.local_cache import LocalCache

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 2.0
IDLE_CHECK_S = 5.0


async def listen_for_invalidations(redis_url: str, local: LocalCache) -> None:
    """Runs until cancelled; the local cache is on only while the subscription is live."""
    backoff_s = 0.1
    failures = 0
    while True:
        # A connection of its own, with no read timeout: a subscription is idle most of the time.
        client = redis.Redis.from_url(
            redis_url, socket_connect_timeout=0.5, socket_timeout=None, retry=Retry(NoBackoff(), 0)
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(INVALIDATION_CHANNEL)
            local.enable()
            log.info("cache.invalidations_subscribed", extra={"after_failures": failures})
            backoff_s, failures = 0.1, 0
            while True:
                message = await pubsub.get_message(timeout=IDLE_CHECK_S)
                if message is None:
                    await pubsub.ping()  # detects a connection that died silently
                elif message["type"] == "message":
                    local.invalidate(int(message["data"]))
        except (RedisError, OSError, ValueError) as exc:
            if failures == 0:
                log.warning("cache.invalidations_lost", extra={"error": repr(exc)})
            failures += 1
        finally:
            local.disable()  # whatever ended the subscription, invalidations may now be missed
            await pubsub.aclose()
            await client.aclose()
        await asyncio.sleep(backoff_s)
        backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
