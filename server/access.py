"""Who may call what, and how often: the bearer key check and the rate limits of every request.

Each route declares what it needs (`Access`); the request observer (server/middleware.py), which
goes around the route's handler and knows that need, asks the `Gate` inside its own try (so refusals are logged and counted like any answer, and a
request pays no middleware layer of its own for access): the gate authenticates the caller,
spends the caller's budget, and the RateLimit header fields go on whatever the handler answers,
errors included. With AUTH_MODE=off nothing here runs: the open contract exactly, for a gateway
that authenticates and limits in front.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.hdrs import AUTHORIZATION

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


def bearer_token(header: str) -> str:
    """The token of an `Authorization: Bearer …` header; 401 when it is not a bearer
    credential."""
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
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.public_reads = settings.product_reads == "public"
        self.open_signup = settings.user_signup == "open"
        self.reads = settings.rate_limit_reads
        self.writes = settings.rate_limit_writes
        self.images = Rate(settings.image_quota_per_hour, 3600.0)

    def anonymous(self, access: Access) -> Caller:
        """The caller of a request without a key, if its route lets one in; 401 if not."""
        if access is Access.READ and self.public_reads:
            return ANONYMOUS
        if access is Access.SIGNUP:
            if self.open_signup:
                return ANONYMOUS
            raise unauthorized("sign-up needs an admin key (USER_SIGNUP=admin)", invalid=False)
        raise unauthorized(
            "this request needs an API key: Authorization: Bearer <key>", invalid=False
        )

    def address_bucket(self, request: web.Request) -> tuple[str, Rate]:
        """The budget of the sender's address: for requests without a (valid) key."""
        if request.method in _READ_METHODS:
            return f"reads:addr:{request.remote}", self.reads
        return f"writes:addr:{request.remote}", self.writes

    def budget(self, request: web.Request, caller: Caller) -> tuple[str, Rate]:
        """The bucket and rate this request spends from (callers but admins have one)."""
        if caller.key_id is None:
            return self.address_bucket(request)
        if request.method in _READ_METHODS:
            return caller.reads_bucket, self.reads
        return caller.writes_bucket, self.writes

    def admit(self, request: web.Request, needs: Access) -> dict[str, str] | None:
        """The hot path, synchronous, for a route that `needs` so much: OPEN_ROUTE for a route
        that checks nothing; for a user
        key this process verified within the last second and a budget with tokens leased, the
        caller set on the request and its RateLimit fields (a hash-free constant-time compare,
        a few dict lookups, one clock read); None for anything else, which `access` decides
        in full (no key, an admin key, a key to load or refuse, a lease to refill, sign-up)."""
        if needs is Access.OPEN:
            return OPEN_ROUTE
        header = request.headers.get(AUTHORIZATION)
        if header is None or needs is Access.SIGNUP:
            return None
        now = time.monotonic()
        caller = self.authenticator.recent_bearer(header, now)
        if caller is None:
            return None
        if request.method in _READ_METHODS:
            fields = self.limiter.spend_leased_fields(caller.reads_bucket, now)
        else:
            fields = self.limiter.spend_leased_fields(caller.writes_bucket, now)
        if fields is not None:
            request[CALLER] = caller
        return fields

    async def spend_address(self, request: web.Request) -> Verdict:
        bucket, rate = self.address_bucket(request)
        return self.limiter.spend_leased(bucket) or await self.limiter.take(bucket, rate)


async def _authenticate(gate: Gate, request: web.Request, token: str) -> Caller | web.Response:
    """The slow path: a key this process does not remember. Its lookup is a database query,
    which an address over its budget (guessing keys, say) does not get to make for a key id this
    process never saw valid; refreshing a key it verified before is always allowed, so a user
    sharing an address with a guesser keeps working."""
    authenticator = gate.authenticator
    if not authenticator.verified_before(token):
        bucket, _ = gate.address_bucket(request)
        refused = gate.limiter.refused(bucket)
        if refused is not None:
            return _too_many(refused)
    try:
        return await authenticator.caller(token)
    except InvalidToken:
        raise unauthorized("the API key is not valid", invalid=True) from None


# What `Gate.admit` answers for a route that checks nothing: no caller, no budget, no fields.
OPEN_ROUTE: dict[str, str] = {}


async def access(
    gate: Gate, request: web.Request, handler: Handler, needs: Access
) -> web.StreamResponse:
    """The access check of a request `Gate.admit` did not admit: the caller decided in full
    (`_checked`), then the handler, with its budget's RateLimit fields on the answer."""
    decided = await _checked(gate, needs, request.headers.get(AUTHORIZATION), request)
    if isinstance(decided, web.StreamResponse):  # refused
        return decided
    if decided is None:  # an admin: no budget
        return await handler(request)
    try:
        response = await handler(request)
    except ApiError as error:
        with_fields(error, decided)
        raise
    response.headers.update(decided)
    return response


def with_fields(error: ApiError, fields: dict[str, str]) -> None:
    """`fields` (the RateLimit fields) on an error a handler raised; a refusal by another
    budget (the image quota) keeps its own."""
    for name, value in fields.items():
        error.headers.setdefault(name, value)


async def _checked(
    gate: Gate, needs: Access, header: str | None, request: web.Request
) -> dict[str, str] | web.StreamResponse | None:
    """Every request the hot path does not admit, decided in full: the caller set on the
    request, then its budget's RateLimit fields (None for an admin, who has no budget), or the
    refusal to answer; a 401 or 403 is raised."""
    try:
        if header is None:
            caller = gate.anonymous(needs)
        else:
            token = bearer_token(header)
            try:
                known = gate.authenticator.remembered(token)
            except InvalidToken:
                raise unauthorized("the API key is not valid", invalid=True) from None
            if known is None:
                loaded = await _authenticate(gate, request, token)
                if isinstance(loaded, web.Response):
                    return loaded
                known = loaded
            caller = known
        if needs is Access.SIGNUP and not gate.open_signup and not caller.is_admin:
            raise ApiError(403, "sign-up needs an admin key (USER_SIGNUP=admin)")
    except ApiError as refused:
        if refused.status != 401:
            raise
        # Failed authentication costs the sender's address its budget, so keys cannot be
        # guessed at the speed of the server.
        verdict = await gate.spend_address(request)
        if not verdict.allowed:
            return _too_many(verdict)
        refused.headers.update(verdict.headers())
        raise
    request[CALLER] = caller
    if caller.is_admin:
        return None
    bucket, rate = gate.budget(request, caller)
    limiter = gate.limiter
    verdict = limiter.spend_leased(bucket) or await limiter.take(bucket, rate)
    if not verdict.allowed:
        return _too_many(verdict)
    return verdict.headers()


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
