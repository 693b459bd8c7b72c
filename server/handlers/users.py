"""POST /users, and a user's API keys: POST, GET /users/{id}/api-keys, DELETE …/{key_id}."""

from __future__ import annotations

import re

from aiohttp import web

from server.body import read_json
from server.callers import idempotent, require_self
from server.errors import ApiError
from server.idempotency import Answer
from server.keys import ACCOUNTS
from server.validation import parse_id, parse_new_user

_KEY_ID = re.compile(r"[0-9a-f]{16}")


def answer(result: Answer) -> web.Response:
    headers = dict(result.headers)
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(result.body, status=result.status, headers=headers)


async def create_user(request: web.Request) -> web.Response:
    body = await read_json(request)
    new = parse_new_user(body)
    return answer(await request.app[ACCOUNTS].sign_up(new, idempotent(request, body)))


def _user_id(request: web.Request) -> int:
    user_id = parse_id(request.match_info["user_id"], "user_id")
    require_self(request, user_id)
    return user_id


async def create_key(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ACCOUNTS].add_key(_user_id(request)), status=201)


async def list_keys(request: web.Request) -> web.Response:
    return web.json_response(await request.app[ACCOUNTS].keys(_user_id(request)))


async def delete_key(request: web.Request) -> web.Response:
    user_id = _user_id(request)
    key_id = request.match_info["key_id"]
    if not _KEY_ID.fullmatch(key_id):
        # Not echoed: whatever was sent in its place (a whole key, pasted by mistake) stays out
        # of the answer.
        raise ApiError(404, "no such API key")
    await request.app[ACCOUNTS].revoke_key(user_id, key_id)
    return web.Response(status=204)
