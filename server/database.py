"""Connections for request handlers, with a bounded wait (db.pool.bounded_acquire)."""

from __future__ import annotations

from aiohttp import web
from asyncpg.pool import PoolAcquireContext

from db.pool import bounded_acquire
from server.keys import DB, SETTINGS


def connection(request: web.Request) -> PoolAcquireContext:
    """A pooled connection, waited for at most DB_ACQUIRE_TIMEOUT_SECONDS; then TimeoutError,
    which the middleware answers with a 503."""
    return bounded_acquire(request.app[DB], request.app[SETTINGS])
