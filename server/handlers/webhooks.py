"""POST and GET /webhooks, DELETE /webhooks/{id}, GET /webhooks/{id}/deliveries: thin over
server/webhook_registry.py."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from catalogue.events import EVENT_TYPES
from server.body import read_json
from server.callers import acting_for, caller_of, owner_of
from server.keys import WEBHOOKS
from server.validation import parse_id, parse_limit, parse_new_webhook


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def create_webhook(request: web.Request) -> web.Response:
    new = parse_new_webhook(
        await read_json(request), EVENT_TYPES, user_id_required=caller_of(request) is None
    )
    user_id = acting_for(request, new.user_id)
    created = await request.app[WEBHOOKS].register(new, user_id)
    return _json(created, 201)


async def list_webhooks(request: web.Request) -> web.Response:
    named = request.rel_url.query.get("user_id")
    user_id = acting_for(request, None if named is None else parse_id(named, "user_id"))
    return _json(await request.app[WEBHOOKS].list(user_id))


async def delete_webhook(request: web.Request) -> web.Response:
    webhook_id = parse_id(request.match_info["webhook_id"], "webhook_id")
    await request.app[WEBHOOKS].delete(webhook_id, owner_of(request))
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    webhook_id = parse_id(request.match_info["webhook_id"], "webhook_id")
    limit = parse_limit(request.rel_url.query.get("limit"))
    return _json(await request.app[WEBHOOKS].deliveries(webhook_id, owner_of(request), limit))
