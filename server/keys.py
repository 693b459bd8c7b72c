"""Typed application keys: every resource the handlers reach through `request.app`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from catalogue.cache import ProductCache
from config import Settings
from server.local_cache import LocalCache
from server.metrics import ApiMetrics
from server.singleflight import SingleFlight

if TYPE_CHECKING:
    # For the type only: importing the relay loads aiokafka, which no request handler needs.
    from server.relay import OutboxRelay

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", asyncpg.Pool)
CACHE = web.AppKey("cache", ProductCache)
LOCAL_CACHE = web.AppKey("local_cache", LocalCache)
RELAY: web.AppKey[OutboxRelay] = web.AppKey("relay")
METRICS = web.AppKey("metrics", ApiMetrics)
PRODUCT_LOADS = web.AppKey("product_loads", SingleFlight[bytes])
REQUEST_ID = web.RequestKey("request_id", str)
