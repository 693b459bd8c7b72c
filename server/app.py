"""The application factory: one cleanup context per resource, so start-up and shutdown read top
to bottom (and in reverse on the way down)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import asyncpg
from aiohttp import web

from catalogue import cache as product_cache
from catalogue import spans
from catalogue.cache_repair import CacheRepairs, PostgresLedger
from config import Settings
from config.origins import log_sources_opened, log_webhook_urls_opened
from db import api_keys
from db.pool import bounded_acquire, create_pool
from server.access import Access, Gate, Handler, log_open_access
from server.accounts import Accounts
from server.auth import Authenticator
from server.body import MAX_BODY_BYTES
from server.change_feed import listen_for_product_changes
from server.console import add_console
from server.handlers import changes, events, health, images, products, renditions, users, webhooks
from server.invalidation import listen_for_invalidations
from server.keys import (
    ACCOUNTS,
    CACHE,
    DB,
    GATE,
    LOCAL_CACHE,
    METRICS,
    OBSERVER,
    PRODUCT_CHANGES,
    PRODUCT_EVENTS,
    PRODUCT_READS,
    PRODUCT_WRITES,
    RELAY,
    SETTINGS,
    VERSION_FLOORS,
    WEBHOOKS,
)
from server.local_cache import POSTGRES, REDIS, LocalCache
from server.metrics import ApiMetrics
from server.middleware import UNROUTED_PATH, RequestObserver, unrouted
from server.openapi import openapi_json
from server.product_changes import ProductChanges
from server.product_events import ProductEvents
from server.product_reads import ProductReads
from server.product_writes import ProductWrites
from server.rate_limits import RateLimiter
from server.relay import BATCH_TIMEOUT_S, OutboxRelay
from server.version_floors import VersionFloors
from server.webhook_registry import WebhookRegistry

log = logging.getLogger(__name__)

# How long shutdown waits for the relay's batch in progress before cancelling it: longer than a
# batch may take, since a batch cancelled after Kafka's acknowledgement is published again.
RELAY_STOP_TIMEOUT_S = BATCH_TIMEOUT_S + 1.0


async def span_export(app: web.Application) -> AsyncIterator[None]:
    """OpenTelemetry spans of this process, when OTEL_EXPORTER_OTLP_ENDPOINT is set: first in,
    last out, so what the other contexts do on the way down is still exported."""
    shutdown = spans.configure(app[SETTINGS], "catalogue-api")
    yield
    await asyncio.to_thread(shutdown)  # the last batch goes out over HTTP: off the loop


async def database(app: web.Application) -> AsyncIterator[None]:
    # min_size=0: the API starts (and answers 503) while PostgreSQL is down, and recovers alone.
    app[DB] = await create_pool(app[SETTINGS], min_size=0)
    yield
    await app[DB].close()


async def redis_cache(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = product_cache.connect(settings.redis_url)
    app[CACHE] = product_cache.ProductCache(
        client, ttl_s=settings.cache_ttl_seconds, negative_ttl_s=settings.cache_negative_ttl_seconds
    )
    yield
    await client.aclose()


async def local_cache(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    local = app[LOCAL_CACHE] = LocalCache(
        ttl_s=settings.local_cache_ttl_seconds,
        max_items=settings.local_cache_max_items,
        feeds=(REDIS, POSTGRES),
    )
    floors = app[VERSION_FLOORS] = VersionFloors()
    hub = app[PRODUCT_EVENTS]  # the feeds wake the event streams too
    tasks = [
        _supervised(
            listen_for_invalidations(settings.redis_url, local, hub), "cache-invalidations"
        ),
        _supervised(
            listen_for_product_changes(settings.postgres_url, local, hub, floors),
            "product-changes",
        ),
    ]
    yield
    for task in tasks:
        await _cancel(task)


async def end_event_streams(app: web.Application) -> None:
    """On shutdown, before aiohttp waits for the requests in progress: the event streams
    would otherwise hold it for its whole shutdown timeout."""
    app[PRODUCT_EVENTS].close()


async def product_services(app: web.Application) -> AsyncIterator[None]:
    """The product read and write paths, over the pool and both cache tiers, the repair of
    the cached values a write could not refresh, and the webhook endpoints."""
    settings, cache, pool = app[SETTINGS], app[CACHE], app[DB]

    app[PRODUCT_READS] = ProductReads(pool, settings, cache, app[LOCAL_CACHE], app[VERSION_FLOORS])
    app[PRODUCT_WRITES] = ProductWrites(pool, settings, cache)
    app[WEBHOOKS] = WebhookRegistry(pool, settings)
    ledger = PostgresLedger(pool, acquire_timeout_s=settings.db_acquire_timeout_seconds)
    async with CacheRepairs(cache, ledger) as repairs:
        app[PRODUCT_CHANGES] = ProductChanges(pool, settings, cache, settle=repairs.settle)
        yield


async def access_control(app: web.Application) -> AsyncIterator[None]:
    """Accounts, and with AUTH_MODE=api_key the key verifier and rate limiter the access
    middleware uses (over the product cache's Redis client: one pool for both)."""
    settings, pool = app[SETTINGS], app[DB]
    authenticator = None
    if settings.auth_mode == "api_key":

        async def load_key(key_id: str) -> asyncpg.Record | None:
            async with bounded_acquire(pool, settings) as conn:
                return await api_keys.key_for_verification(conn, key_id)

        authenticator = Authenticator(load_key, settings.admin_keys)
        limiter = RateLimiter(app[CACHE].client, share=settings.api_workers)
        gate = app[GATE] = Gate(settings, authenticator, limiter)
        app[OBSERVER].gate = gate
        app[PRODUCT_CHANGES].on_user_deleted = authenticator.forget_user
    app[ACCOUNTS] = Accounts(pool, settings, authenticator)
    yield


async def outbox_relay(app: web.Application) -> AsyncIterator[None]:
    relay = app[RELAY] = OutboxRelay(app[DB], app[SETTINGS], app[METRICS].outbox_published)
    task = _supervised(relay.run(), "outbox-relay")
    yield
    relay.request_stop()
    await asyncio.wait([task], timeout=RELAY_STOP_TIMEOUT_S)
    await _cancel(task)
    await relay.close()


_apps_frozen = 0


async def frozen_startup_heap(app: web.Application) -> AsyncIterator[None]:
    """Moves everything alive after start-up (modules, pools, clients) out of the collector's
    reach. Requests that overlap keep promoting their objects to the oldest generation, so full
    collections come every few hundred milliseconds under load; each then walked the whole
    start-up heap (~27 ms for 65k objects), a pause every in-flight request pays. Measured on the
    list endpoint at 64 connections: p99/p50 from 2.9 to 2.0 and +10-20 % requests/s; full
    collections now take ~1 ms. Last in cleanup_ctx, so the heap it freezes is complete."""
    global _apps_frozen
    gc.collect()
    gc.freeze()
    _apps_frozen += 1
    yield
    # Freezing is per process: with two apps in one (as in tests), the first to stop must not
    # thaw the other's heap.
    _apps_frozen -= 1
    if _apps_frozen == 0:
        gc.unfreeze()


def _supervised(coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A background task whose crash is logged, not silently kept in an unawaited task."""
    task = asyncio.create_task(coroutine, name=name)

    def crash_loudly(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.error("task.crashed", extra={"task": name}, exc_info=done.exception())

    task.add_done_callback(crash_loudly)
    return task


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings) -> web.Application:
    keys_on = settings.auth_mode == "api_key"
    metrics = ApiMetrics()
    # Around every route, with the access check inside it when keys are on; no aiohttp
    # middleware at all (server/middleware.py says why).
    observer = RequestObserver(metrics, checks_access=keys_on)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[OBSERVER] = observer
    log_sources_opened(log, settings)
    log_webhook_urls_opened(log, settings)
    log_open_access(log, settings)
    app[PRODUCT_EVENTS] = ProductEvents(max_streams=settings.sse_max_streams)
    app.on_shutdown.append(end_event_streams)
    app.cleanup_ctx.extend(
        [
            span_export,
            database,
            redis_cache,
            local_cache,
            product_services,
            access_control,
            outbox_relay,
            frozen_startup_heap,
        ]
    )

    def route(
        method: str, path: str, handler: Handler, needs: Access = Access.OPEN, **options: Any
    ) -> None:
        """A route, observed, with what it needs from its caller (server/access.py)."""
        app.router.add_route(method, path, observer.observing(handler, needs), **options)

    route("POST", "/users", users.create_user, Access.SIGNUP)
    if keys_on:
        route("POST", "/users/{user_id}/api-keys", users.create_key, Access.KEY)
        route("GET", "/users/{user_id}/api-keys", users.list_keys, Access.KEY)
        route("DELETE", "/users/{user_id}/api-keys/{key_id}", users.delete_key, Access.KEY)
    # GET /products/{id} first of the routes under /products: aiohttp tries a path's candidates
    # in registration order, each an awaited resolve, so the hot path's route comes first.
    route("GET", "/products/{product_id}", products.get_product, Access.READ)
    route("POST", "/products", products.create_product, Access.KEY)
    route("GET", "/products", products.list_products, Access.READ)
    route("GET", "/products/{product_id}/images/{n}", renditions.get_product_image, Access.READ)
    route("PATCH", "/products/{product_id}", changes.patch_product, Access.KEY)
    route("DELETE", "/products/{product_id}", changes.delete_product, Access.KEY)
    route("POST", "/products/{product_id}/reprocess", changes.reprocess_product, Access.KEY)
    route("GET", "/products/{product_id}/events", events.product_events, Access.READ)
    route("DELETE", "/users/{user_id}", changes.delete_user, Access.KEY)
    route("POST", "/webhooks", webhooks.create_webhook, Access.KEY)
    route("GET", "/webhooks", webhooks.list_webhooks, Access.KEY)
    route("DELETE", "/webhooks/{webhook_id}", webhooks.delete_webhook, Access.KEY)
    route("GET", "/webhooks/{webhook_id}/deliveries", webhooks.list_deliveries, Access.KEY)
    route("GET", "/images/{key:.+}", images.get_image)
    route("HEAD", "/images/{key:.+}", images.get_image)
    route("GET", "/healthz", health.healthz)
    route("GET", "/readyz", health.readyz)
    route("GET", "/metrics", health.metrics)
    route("GET", "/openapi.json", openapi_json(settings))
    if keys_on:  # the operator console signs in with an admin key (server/console/)
        add_console(app, route)
    # Last: whatever no route above takes, answered 404 or 405 by the observer like any error.
    route("*", UNROUTED_PATH, unrouted)
    return app
