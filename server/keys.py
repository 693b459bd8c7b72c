"""Typed application keys: every resource the handlers reach through `request.app`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from catalogue.cache import ProductCache
from config import Settings
from server.auth import Caller
from server.local_cache import LocalCache
from server.metrics import ApiMetrics
from server.product_changes import ProductChanges
from server.product_events import ProductEvents
from server.product_reads import ProductReads
from server.product_writes import ProductWrites
from server.version_floors import VersionFloors
from server.webhook_registry import WebhookRegistry

if TYPE_CHECKING:
    # For the type only: importing the relay loads aiokafka, which no request handler needs.
    from server.access import Gate
    from server.accounts import Accounts
    from server.middleware import RequestObserver
    from server.relay import OutboxRelay

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", asyncpg.Pool)
CACHE = web.AppKey("cache", ProductCache)
LOCAL_CACHE = web.AppKey("local_cache", LocalCache)
VERSION_FLOORS = web.AppKey("version_floors", VersionFloors)
RELAY: web.AppKey[OutboxRelay] = web.AppKey("relay")
METRICS = web.AppKey("metrics", ApiMetrics)
PRODUCT_READS = web.AppKey("product_reads", ProductReads)
PRODUCT_WRITES = web.AppKey("product_writes", ProductWrites)
PRODUCT_CHANGES = web.AppKey("product_changes", ProductChanges)
ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts")
GATE: web.AppKey[Gate] = web.AppKey("gate")
REQUEST_ID = web.RequestKey("request_id", str)
# None until the access check names one (and always with AUTH_MODE=off).
CALLER: web.RequestKey[Caller | None] = web.RequestKey("caller")
OBSERVER: web.AppKey[RequestObserver] = web.AppKey("observer")
WEBHOOKS = web.AppKey("webhooks", WebhookRegistry)
PRODUCT_EVENTS = web.AppKey("product_events", ProductEvents)
