"""Request id, JSON access log, metrics and the JSON error shape, for every request."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import secrets
import time

import asyncpg
from aiohttp import web
from multidict import istr

from catalogue import spans, tracing
from config.logging import event_writer
from server.access import Access, Gate, Handler, access, with_fields
from server.errors import ApiError, error_response
from server.keys import CALLER, REQUEST_ID
from server.metrics import ApiMetrics

log = logging.getLogger("server.access")
# The access log's line, built without a LogRecord where it can be (config/logging.py).
_access_line = event_writer(log, "http.request")

# What a dead, restarting or overloaded PostgreSQL raises: the pool's acquire timeout, a refused or
# broken connection, a statement cancelled by statement_timeout, or too many clients. A pooled
# connection that PostgreSQL terminated while it was idle (a shutdown: "terminating connection due
# to administrator command") raises InternalClientError ("cannot switch to state …; another
# operation … is in progress") on its next use, which the soak saw as 500s during a restart.
DATABASE_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.QueryCanceledError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
)
_REQUEST_ID_MAX = 128
_X_REQUEST_ID = istr("X-Request-ID")
_X_CACHE = istr("X-Cache")
_TRACEPARENT = istr(tracing.HEADER)
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
# An API key pasted into a URL by mistake: logged (and echoed) as its prefix only.
_KEY_IN_PATH = re.compile(r"catk_[0-9A-Za-z_\-]*")


def loggable_path(path: str) -> str:
    """`path` with anything shaped like an API key cut down to its prefix."""
    return _KEY_IN_PATH.sub("catk_…", path) if "catk_" in path else path


class _RequestIds:
    """Request ids unique across processes and restarts without a system call each: 64 random
    bits drawn once per process (again in a forked child) and a 64-bit counter, 32 hex digits.
    secrets.token_hex per request cost a getrandom(2) call, ~15 % of a cached GET; an id needs
    to be unique, not unguessable (it names a request in logs, it grants nothing)."""

    def __init__(self) -> None:
        self.restart()
        os.register_at_fork(after_in_child=self.restart)

    def restart(self) -> None:
        # The random half above the counter's: one addition and one format per id.
        self.base = secrets.randbits(64) << 64
        self.counter = itertools.count()

    def next(self) -> str:
        return "%032x" % (self.base + next(self.counter))


_request_ids = _RequestIds()


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-ID")
    if given and len(given) <= _REQUEST_ID_MAX and given.isprintable():
        return given
    return _request_ids.next()


# Matches every path: the resource of the API's last route (`unrouted`), and its canonical form.
UNROUTED_PATH, UNROUTED_CANONICAL = "/{unrouted_path:.*}", "/{unrouted_path}"


async def unrouted(request: web.Request) -> web.StreamResponse:
    """A request no route takes: 405 naming the methods the path has routes for, 404 if none
    (aiohttp's own answers, raised inside the observer so that they come in the JSON error
    shape, logged and counted as route "unmatched")."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical != UNROUTED_CANONICAL:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def _route_name(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    if resource is None or resource.canonical == UNROUTED_CANONICAL:
        return "unmatched"
    return resource.canonical


class RequestObserver:
    """Around every request: request id, metrics, the access log and the JSON error shape, and
    with AUTH_MODE=api_key the access check (server/access.py) inside it.

    Put around each route's handler (`observing`; server/app.py registers every route, and a
    last one for paths and methods no other route takes, that way), not as aiohttp middleware:
    an application with middleware pays, on every request, aiohttp's chain and the wrapper it
    adds to track the current application, ~7 µs per request on this machine (a bare aiohttp
    app answering a fixed body: 62 µs of CPU per request with one pass-through middleware,
    55 µs with the same pass-through around the handler). One layer, not two: the access
    check's hot path (`Gate.admit`) is synchronous, so it runs here without a coroutine of its
    own. The metrics and the gate are bound here at start-up instead of being looked up in the
    application per request."""

    def __init__(self, metrics: ApiMetrics, *, checks_access: bool) -> None:
        self.metrics = metrics
        self.checks_access = checks_access
        self.gate: Gate | None = None  # set at start-up (server/app.py) when checks_access

    def observing(self, handler: Handler, needs: Access = Access.OPEN) -> Handler:
        """`handler` with this observer around it, for a route that `needs` so much of its
        caller: a partial, so a request runs one coroutine for both (a wrapping coroutine would
        be a second), and knows its route's need without looking it up."""
        observed = functools.partial(self.__call__, handler=handler, needs=needs)
        return functools.update_wrapper(observed, handler)

    async def __call__(
        self, request: web.Request, handler: Handler, needs: Access = Access.OPEN
    ) -> web.StreamResponse:
        started = time.perf_counter()
        # A write starts the trace of the work it queues (or continues the client's); a read
        # joins one only when the client sent a traceparent: the cached GET draws no ids.
        # With an exporter (OTEL_EXPORTER_OTLP_ENDPOINT) the request is a span too.
        step = None
        if (header := request.headers.get(_TRACEPARENT)) is not None or (
            request.method not in _READS
        ):
            step = spans.step(
                f"{request.method} {_route_name(request)}",
                tracing.parse(header),
                "server",
                **{"http.request.method": request.method},
            )
            note = step.__enter__()
        try:
            request_id = _request_id(request)
            request[REQUEST_ID] = request_id
            # None until the gate names one: handlers read it without the KeyError a missing
            # key costs (~0.5 µs through the request's Mapping.get).
            request[CALLER] = None
            gate = self.gate
            fields = None  # the RateLimit fields the hot path admitted the request with
            try:
                if gate is None:
                    if self.checks_access:  # fail closed: never serve unchecked with keys on
                        raise RuntimeError("the access check is not set up (start-up incomplete)")
                    response = await handler(request)
                elif (fields := gate.admit(request, needs)) is None:
                    response = await access(gate, request, handler, needs)
                else:
                    # Admitted here, without a coroutine for the access check.
                    response = await handler(request)
                    if fields:  # not an open route's
                        response.headers.update(fields)
            except Exception as exc:
                if fields and isinstance(exc, ApiError):
                    with_fields(exc, fields)
                # An answer for every failure, in the JSON error shape (the success path pays
                # nothing for this: no coroutine of its own).
                response = _error_answer(exc, request, request_id)
            duration_s = time.perf_counter() - started
            route = _route_name(request)
            headers = response.headers
            headers[_X_REQUEST_ID] = request_id
            cache = headers.get(_X_CACHE)
            self.metrics.observe_request(request.method, route, response.status, duration_s, cache)
            if log.isEnabledFor(logging.INFO):
                # Who sent it, by public ids only (never a key or anything derived from one):
                # the gate's caller, None on open routes and with AUTH_MODE=off.
                caller = request[CALLER]
                _access_line(
                    {
                        "method": request.method,
                        "path": loggable_path(request.path),
                        "route": route,
                        "status": response.status,
                        "duration_ms": round(duration_s * 1000, 3),
                        "bytes": _body_size(response),
                        "request_id": request_id,
                        "cache": cache,
                        "user_id": caller.user_id if caller is not None else None,
                        "key_id": caller.key_id if caller is not None else None,
                    }
                )
            if step is not None:
                note(**{"http.response.status_code": response.status})
            return response
        finally:
            if step is not None:
                # aiohttp serves a keep-alive connection's requests in one task: the next
                # request must not inherit this one's trace (the step resets it).
                step.__exit__(None, None, None)


def _error_answer(exc: Exception, request: web.Request, request_id: str) -> web.StreamResponse:
    """The JSON error answer to what a handler raised (an HTTP redirect is re-raised)."""
    if isinstance(exc, ApiError):
        response = error_response(exc.status, exc.message, exc.details, exc.headers or None)
        if exc.status == 413:
            # The unread body is still on the wire: this connection cannot carry another request.
            response.force_close()
        return response
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        headers = {k: v for k, v in exc.headers.items() if k == "Allow"}
        return error_response(exc.status, _http_message(exc, request), None, headers)
    if isinstance(exc, DATABASE_UNAVAILABLE):
        log.warning("db.unavailable", extra={"request_id": request_id, "error": repr(exc)})
        return error_response(
            503, "database unavailable, try again shortly", None, {"Retry-After": "1"}
        )
    log.error(
        "http.unhandled_error",
        extra={"request_id": request_id, "path": loggable_path(request.path)},
        exc_info=exc,
    )
    return error_response(
        500,
        "internal error; quote the request id when reporting it",
        {"request_id": request_id},
    )


def _http_message(exc: web.HTTPException, request: web.Request) -> str:
    if isinstance(exc, web.HTTPNotFound):
        return f"no route for {loggable_path(request.path)}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"method {request.method} not allowed; allowed: {', '.join(sorted(exc.allowed_methods))}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return "request body too large"
    return exc.reason


def _body_size(response: web.StreamResponse) -> int | None:
    if response.prepared:  # streamed (e.g. a file): aiohttp counted what it wrote
        return response.body_length
    body = getattr(response, "body", None)
    return len(body) if isinstance(body, bytes) else None
