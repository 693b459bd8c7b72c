"""The console's request handlers: sign-in, sign-out and the products page.

Every answer is HTML with the console's security headers (`secured`), errors included: a bad
key is a 401 page, a missing or mismatched CSRF token a 403 page, a bad search field a 400 page
naming it. The JSON API's error shape is not used here: a browser shows these.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from catalogue.product_json import product_dict
from db.console import ProductSearch, product_statuses, search_products, search_webhooks
from db.webhooks import recent_deliveries
from server.auth import InvalidToken
from server.console import dead_letters, templates
from server.console.pipeline import PipelineView
from server.console.sessions import COOKIE, Session, Sessions, clear_cookie, set_cookie
from server.database import connection
from server.errors import ApiError, bad_request, error_response
from server.keys import GATE, SETTINGS
from server.validation import parse_id

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SESSIONS: web.AppKey[Sessions] = web.AppKey("console_sessions")
PIPELINE: web.AppKey[PipelineView] = web.AppKey("console_pipeline")
SCRAPER: web.AppKey[aiohttp.ClientSession] = web.AppKey("console_scraper")
SESSION: web.RequestKey[Session] = web.RequestKey("console_session")
MAX_NAME_LENGTH = 200
SEARCH_FIELDS = frozenset({"user_id", "name", "status"})
PAGE_SIZE = 50

ConsoleHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def secured(response: web.StreamResponse, image_origin: str) -> web.StreamResponse:
    """The console's headers: nothing from elsewhere but the image store's images, no framing,
    no referrer, nothing cached (pages show live state and carry CSRF tokens)."""
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; img-src 'self' {image_origin}; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def wants_json(request: web.Request) -> bool:
    """The page's own script asks for JSON; a plain form submission gets HTML."""
    return request.headers.get("Accept", "").startswith("application/json")


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def console_page(
    image_origin: str, *, signed_in: bool
) -> Callable[[ConsoleHandler], ConsoleHandler]:
    """A console handler with its headers and HTML errors; with `signed_in`, the session
    required (GET: sent to sign in; POST: 401) and, on POST, its CSRF token checked (403)."""

    def wrap(handler: ConsoleHandler) -> ConsoleHandler:
        async def answer(request: web.Request) -> web.StreamResponse:
            csrf = None
            try:
                if signed_in:
                    session = await request.app[SESSIONS].find(request.cookies.get(COOKIE))
                    if session is None:
                        if request.method == "GET":
                            return secured(redirect("/console/sign-in"), image_origin)
                        raise ApiError(401, "not signed in, or the session has expired")
                    csrf = session.csrf
                    request[SESSION] = session
                    if request.method == "POST":
                        form = await request.post()
                        sent = form.get("csrf_token")
                        if not session.csrf_matches(sent if isinstance(sent, str) else None):
                            log.warning("console.csrf_refused", extra={"admin": session.admin})
                            raise ApiError(403, "the form's CSRF token is missing or wrong")
                response = await handler(request)
            except ApiError as error:
                if wants_json(request):
                    return secured(
                        error_response(error.status, error.message, error.details), image_origin
                    )
                response = html(
                    templates.error_page(error.status, error.message, csrf=csrf), error.status
                )
            return secured(response, image_origin)

        return answer

    return wrap


def _same_origin(request: web.Request) -> bool:
    """Whether a POST came from this server's own page, as far as the browser says: a sign-in
    form on another site cannot sign the operator in to an attacker's session (login CSRF).
    Sec-Fetch-Site first (every current browser sends it); the Origin otherwise, which is
    "null" under our Referrer-Policy: no-referrer, so only a named foreign origin is refused."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin in (None, "null") or origin == f"{request.scheme}://{request.host}"


async def sign_in_form(request: web.Request) -> web.StreamResponse:
    return html(templates.sign_in())


async def sign_in(request: web.Request) -> web.StreamResponse:
    if not _same_origin(request):
        raise ApiError(403, "sign-in from another origin")
    form = await request.post()
    key = form.get("admin_key")
    caller = None
    if isinstance(key, str) and key:
        try:
            caller = request.app[GATE].authenticator.remembered(key)
        except InvalidToken:
            caller = None
    if caller is None or not caller.is_admin or caller.key_id is None:
        # Failed sign-ins cost the sender's address its budget, as failed API keys do.
        verdict = await request.app[GATE].spend_address(request)
        log.warning("console.sign_in_refused", extra={"remote": request.remote})
        if not verdict.allowed:
            raise ApiError(429, "too many failed sign-ins; try again later")
        return html(templates.sign_in("that is not an admin key"), 401)
    sessions = request.app[SESSIONS]
    token, _ = await sessions.start(caller.key_id)
    log.info("console.signed_in", extra={"admin": caller.key_id})
    response = redirect("/console/products")
    set_cookie(response, request, token, sessions.ttl_s)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    token = request.cookies.get(COOKIE)
    if token:
        await request.app[SESSIONS].end(token)
    log.info("console.signed_out", extra={"admin": request[SESSION].admin})
    response = redirect("/console/sign-in")
    clear_cookie(response, request)
    return response


async def home(request: web.Request) -> web.StreamResponse:
    return redirect("/console/products")


def parse_search(query: Any) -> ProductSearch:
    """The products page's search: 400 naming the field for anything it does not take."""
    for field in query:
        if field not in SEARCH_FIELDS:
            raise bad_request(f"unknown search field {field!r}", field)
    user_id = parse_id(query["user_id"], "user_id") if query.get("user_id") else None
    name = query.get("name") or None
    if name is not None and (len(name) > MAX_NAME_LENGTH or "\x00" in name):
        raise bad_request(f"name must be at most {MAX_NAME_LENGTH} characters, without NUL", "name")
    status = query.get("status") or None
    if status is not None and status not in templates.STATUSES:
        raise bad_request(f"status must be one of {', '.join(templates.STATUSES)}", "status")
    return ProductSearch(user_id=user_id, name_contains=name, status=status, limit=PAGE_SIZE)


async def products(request: web.Request) -> web.StreamResponse:
    query = request.rel_url.query
    search = parse_search(query)
    async with connection(request) as conn:
        rows = await search_products(conn, search)
    shown = {k: v for k, v in query.items() if k in SEARCH_FIELDS}
    return html(
        templates.products_page(
            shown, [product_dict(row) for row in rows], csrf=request[SESSION].csrf
        )
    )


WEBHOOKS_SHOWN = 50
DELIVERIES_SHOWN = 10


async def webhooks(request: web.Request) -> web.StreamResponse:
    """Endpoints (of one user, or the newest of all) with their newest deliveries."""
    query = request.rel_url.query
    for field in query:
        if field != "user_id":
            raise bad_request(f"unknown search field {field!r}", field)
    user_id = parse_id(query["user_id"], "user_id") if query.get("user_id") else None
    cards = []
    async with connection(request) as conn:
        for hook in await search_webhooks(conn, user_id, WEBHOOKS_SHOWN):
            deliveries = [
                {**dict(row), "attempt_list": orjson.loads(row["attempt_list"])}
                for row in await recent_deliveries(conn, hook["id"], DELIVERIES_SHOWN)
            ]
            cards.append(templates.webhook_card(dict(hook), deliveries))
    return html(
        templates.webhooks_page(query.get("user_id", ""), cards, csrf=request[SESSION].csrf)
    )


MAX_STATUS_IDS = 200


async def dead_letters_page(request: web.Request) -> web.StreamResponse:
    letters = [
        letter.as_dict() | {"product_id": letter.product_id}
        for letter in await dead_letters.letters(request.app[SETTINGS])
    ]
    ids = sorted({int(shown["product_id"]) for shown in letters if shown["product_id"].isdigit()})
    async with connection(request) as conn:
        now = await product_statuses(conn, ids)
    return html(templates.dead_letters_page(letters, now, csrf=request[SESSION].csrf))


async def replay(request: web.Request) -> web.StreamResponse:
    """Replays one product's letters (product_id) or all (none given)."""
    form = await request.post()
    for field in form:
        if field not in ("csrf_token", "product_id"):
            raise bad_request(f"unknown form field {field!r}", field)
    given = form.get("product_id")
    product_id = None
    if given is not None:
        product_id = str(parse_id(given if isinstance(given, str) else None, "product_id"))
    result = await dead_letters.replay_letters(request.app[SETTINGS], product_id)
    log.info(
        "console.replayed",
        extra={
            "admin": request[SESSION].admin,
            "product_id": product_id,
            "published": result.published,
            "skipped": result.skipped,
        },
    )
    if wants_json(request):
        return web.json_response({"published": result.published, "skipped": result.skipped})
    return redirect("/console/dead-letters")


async def statuses(request: web.Request) -> web.StreamResponse:
    """{product id: processing status} of the listed products that exist: the live view's feed."""
    query = request.rel_url.query
    for field in query:
        if field != "ids":
            raise bad_request(f"unknown field {field!r}", field)
    listed = [part for part in query.get("ids", "").split(",") if part]
    if not listed or len(listed) > MAX_STATUS_IDS:
        raise bad_request(f"ids must list 1 to {MAX_STATUS_IDS} product ids", "ids")
    ids = [parse_id(part, "ids") for part in listed]
    async with connection(request) as conn:
        return web.json_response(await product_statuses(conn, ids))


async def stylesheet(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "console.css")


async def script(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "console.js")


async def pipeline_page(request: web.Request) -> web.StreamResponse:
    return html(templates.pipeline_page(csrf=request[SESSION].csrf))


async def pipeline_json(request: web.Request) -> web.StreamResponse:
    """The live view's feed: the worker's numbers and the consumer lag, now."""
    return web.json_response(await request.app[PIPELINE].snapshot(request.app[SCRAPER]))
