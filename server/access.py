"""Who may call what, and how often: the bearer key check and the rate limits of every request.

Each route declares what it needs (`Access`); this middleware, inside the observing one (so
refusals are logged and counted like any answer), authenticates the caller, spends the caller's
budget, and puts the RateLimit header fields on whatever the handler answers, errors included.
With AUTH_MODE=off nothing here runs: the open contract exactly, for a gateway that
authenticates and limits in front.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from config import Settings
from config.rates import Rate
from server.auth import ANONYMOUS, Authenticator, Caller, InvalidToken
from server.errors import ApiError, error_response
from server.keys import CALLER, GATE
from server.rate_limits import RateLimiter, Verdict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_READ_METHODS = frozenset({"GET", "HEAD"})


class Access(enum.Enum):
    OPEN = "open"  # no key, no budget: health, metrics, the document, public image URLs
    SIGNUP = "signup"  # POST /users: anyone with USER_SIGNUP=open, an admin key otherwise
    READ = "read"  # product reads: a key, unless PRODUCT_READS=public
    KEY = "key"  # everything else


def unauthorized(message: str, *, invalid: bool) -> ApiError:
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return ApiError(401, message, None, {"WWW-Authenticate": challenge})


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header; None when there is no header;
    401 when it is not a bearer credential."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Authorization must be 'Bearer <API key>'", invalid=True)
    return token


class Gate:
    """The decisions of the access middleware, given the settings and the route's needs."""

    def __init__(
        self,
        settings: Settings,
        authenticator: Authenticator,
        limiter: RateLimiter,
        routes: dict[Handler, Access],
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.routes = routes
        self.public_reads = settings.product_reads == "public"
        self.open_signup = settings.user_signup == "open"
        self.reads = settings.rate_limit_reads
        self.writes = settings.rate_limit_writes
        self.images = Rate(settings.image_quota_per_hour, 3600.0)

    async def caller(self, request: web.Request, access: Access) -> Caller:
        token = bearer_token(request.headers.get("Authorization"))
        if token is not None:
            try:
                return await self.authenticator.caller(token)
            except InvalidToken:
                raise unauthorized("the API key is not valid", invalid=True) from None
        if access is Access.READ and self.public_reads:
            return ANONYMOUS
        if access is Access.SIGNUP:
            if self.open_signup:
                return ANONYMOUS
            raise unauthorized("sign-up needs an admin key (USER_SIGNUP=admin)", invalid=False)
        raise unauthorized(
            "this request needs an API key: Authorization: Bearer <key>", invalid=False
        )

    async def spend(self, request: web.Request, caller: Caller) -> Verdict | None:
        """The caller's budget for this request (None for admins, who have none)."""
        if caller.is_admin:
            return None
        subject = f"key:{caller.key_id}" if caller.key_id else f"addr:{request.remote}"
        if request.method in _READ_METHODS:
            bucket, rate = "reads:" + subject, self.reads
        else:
            bucket, rate = "writes:" + subject, self.writes
        return self.limiter.spend_leased(bucket) or await self.limiter.take(bucket, rate)


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The access middleware (installed unless AUTH_MODE=off)."""
    gate = request.app[GATE]
    needs = gate.routes.get(request.match_info.handler, Access.OPEN)
    if needs is Access.OPEN:
        return await handler(request)
    try:
        caller = await gate.caller(request, needs)
    except ApiError as refused:
        # Failed authentication costs the sender's address its budget, so keys cannot be
        # guessed at the speed of the server.
        verdict = await gate.spend(request, ANONYMOUS)
        if verdict is not None and not verdict.allowed:
            return _too_many(verdict)
        if verdict is not None:
            refused.headers.update(verdict.headers())
        raise
    request[CALLER] = caller
    verdict = await gate.spend(request, caller)
    if verdict is None:
        return await handler(request)
    if not verdict.allowed:
        return _too_many(verdict)
    headers = verdict.headers()
    try:
        response = await handler(request)
    except ApiError as error:
        error.headers.update(headers)
        raise
    response.headers.update(headers)
    return response


async def spend_image_quota(request: web.Request, images: int) -> None:
    """Charges the caller's hourly image budget (IMAGE_QUOTA_PER_HOUR) for the images a create
    or a change accepts, all or nothing: 429 when they do not fit. Admins and unchecked callers
    (AUTH_MODE=off) have no such budget."""
    caller = request.get(CALLER)
    if images == 0 or caller is None or caller.is_admin or caller.key_id is None:
        return
    gate = request.app[GATE]
    bucket = f"images:key:{caller.key_id}"
    verdict = await gate.limiter.take(bucket, gate.images, images, lease=False)
    if not verdict.allowed:
        raise ApiError(
            429,
            f"image quota exceeded: {images} images do not fit in this hour's budget",
            {"limit": verdict.limit, "remaining": verdict.remaining},
            verdict.headers(),
        )


def _too_many(verdict: Verdict) -> web.Response:
    return error_response(
        429,
        f"rate limit exceeded; retry in {verdict.headers()['Retry-After']} s",
        {"limit": verdict.limit},
        verdict.headers(),
    )


def log_open_access(logger: logging.Logger, settings: Settings) -> None:
    """At start-up: a warning for each switch that opens what is closed by default."""
    if settings.auth_mode == "off":
        logger.warning(
            "access.auth_off",
            extra={
                "note": "AUTH_MODE=off: no keys, no ownership, no rate limits; only behind a "
                "gateway that authenticates"
            },
        )
    elif settings.product_reads == "public":
        logger.warning(
            "access.public_reads",
            extra={"note": "PRODUCT_READS=public: anyone may read every product without a key"},
        )
    else:
        logger.info(
            "access.api_keys",
            extra={
                "signup": settings.user_signup,
                "admin_keys": len(settings.admin_keys),
                "reads": str(settings.rate_limit_reads),
                "writes": str(settings.rate_limit_writes),
                "images_per_hour": settings.image_quota_per_hour,
            },
        )
