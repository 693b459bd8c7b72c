"""What handlers ask of the caller: which user they act for, and may they."""

from __future__ import annotations

from aiohttp import web

from server.auth import ANONYMOUS, Caller
from server.errors import ApiError
from server.idempotency import HEADER, Charge, Idempotent, fingerprint, parse_key
from server.keys import CALLER, SETTINGS


def caller_of(request: web.Request) -> Caller | None:
    """The caller the access middleware found; None with AUTH_MODE=off (no one is checked)."""
    return request.get(CALLER)


def public_reads(request: web.Request) -> bool:
    return request.app[SETTINGS].product_reads == "public"


def acting_for(
    request: web.Request, user_id: int | None, *, reading: bool = False, field: str = "user_id"
) -> int:
    """The user a request acts for: the one named if the caller may act for it (403 if not;
    anyone may read anyone's with PRODUCT_READS=public), else the caller's own. Admins and
    unchecked callers must name one."""
    caller = caller_of(request)
    if caller is None or caller.is_admin or caller.user_id is None:
        if user_id is None:
            raise ApiError(400, f"{field} is required", {"field": field})
        return user_id
    if user_id is None:
        return caller.user_id
    if user_id != caller.user_id and not (reading and public_reads(request)):
        raise ApiError(403, f"this API key may not act for user {user_id}", {"field": field})
    return user_id


def owner_of(request: web.Request) -> int | None:
    """Whose products and webhooks the caller may change: their own; anyone's for an admin, or
    with AUTH_MODE=off (None)."""
    caller = caller_of(request)
    return None if caller is None or caller.is_admin else caller.user_id


def require_self(request: web.Request, user_id: int) -> None:
    """403 unless the caller is that user or an admin."""
    caller = caller_of(request)
    if caller is not None and not caller.may_act_for(user_id):
        raise ApiError(403, f"this API key may not act for user {user_id}")


def idempotent(
    request: web.Request, body: object, *, charge: Charge | None = None
) -> Idempotent | None:
    """The request's Idempotency-Key context, None when it sent no key. `charge` is what only a
    first run pays (the image quota): a replay, a 409 or a 422 costs nothing."""
    key = parse_key(request.headers.get(HEADER))
    if key is None:
        return None
    caller = caller_of(request) or ANONYMOUS
    if caller.is_admin:
        owner = f"admin:{caller.key_id}"  # each admin key its own caller
    elif caller.user_id is not None:
        owner = f"user:{caller.user_id}"
    else:
        owner = f"addr:{request.remote}"
    ttl_hours = request.app[SETTINGS].idempotency_ttl_hours
    return Idempotent(owner, key, fingerprint(body), ttl_hours, charge)
