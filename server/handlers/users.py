"""POST /users."""

from __future__ import annotations

from aiohttp import web

from db import users
from server.body import read_json
from server.database import connection
from server.errors import ApiError
from server.validation import parse_new_user


async def create_user(request: web.Request) -> web.Response:
    new = parse_new_user(await read_json(request))
    try:
        async with connection(request) as conn:
            user_id = await users.create_user(conn, new.username, new.email)
    except users.DuplicateEmail:
        raise ApiError(
            409, f"a user with email {new.email} exists already", {"field": "email"}
        ) from None
    return web.json_response(
        {"user_id": str(user_id), "username": new.username, "email": new.email}, status=201
    )
