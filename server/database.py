"""Connections for request handlers, with a bounded wait."""

from __future__ import annotations

from aiohttp import web
from asyncpg.pool import PoolAcquireContext

from server.keys import DB, SETTINGS


def connection(request: web.Request) -> PoolAcquireContext:
    """A pooled connection, waited for at most DB_ACQUIRE_TIMEOUT_SECONDS; then TimeoutError,
    which the middleware answers with a 503. (asyncpg's `pool.fetch…()` shortcuts wait for a
    free connection without limit, so an overloaded API would queue requests forever.)"""
    return request.app[DB].acquire(timeout=request.app[SETTINGS].db_acquire_timeout_seconds)
