"""Webhook endpoints of the API: registering one (its secret shown once), listing, deleting,
and the recent deliveries of one. Delivering is the dispatcher's (webhooks/)."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from catalogue.ssrf import check_url_scheme_and_host
from catalogue.webhooks import new_salt, secret_key, secret_text, url_policy
from config import Settings
from db import webhooks
from db.pool import bounded_acquire
from server.errors import ApiError
from server.validation import NewWebhook

# Each endpoint costs every event of its user a delivery: a user has a bounded number.
MAX_WEBHOOKS_PER_USER = 20
NOT_CONFIGURED = "webhooks are off on this server: its operator has not set WEBHOOK_SIGNING_KEY"


def not_found(webhook_id: int) -> ApiError:
    return ApiError(404, f"webhook {webhook_id} not found")


def webhook_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "webhook_id": str(row["id"]),
        "user_id": str(row["user_id"]),
        "url": row["url"],
        "events": list(row["events"]),
        "created_at": row["created_at"],
        "last_success_at": row["last_success_at"],
        "enabled": row["disabled_at"] is None,
        "disabled_at": row["disabled_at"],
        "disabled_reason": row["disabled_reason"],
    }


def delivery_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "state": row["state"],
        "created_at": row["created_at"],
        "finished_at": row["finished_at"],
        "next_attempt_at": row["next_attempt_at"],
        "attempts": orjson.loads(row["attempt_list"]),
    }


class WebhookRegistry:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.policy = url_policy(settings)

    async def register(self, new: NewWebhook, user_id: int) -> dict[str, Any]:
        if not self.settings.webhooks_enabled:
            raise ApiError(503, NOT_CONFIGURED)
        # The URL's text and a literal address are judged now; a name's addresses only at
        # delivery, on the address connected (they may change at any time).
        if reason := check_url_scheme_and_host(new.url, self.policy):
            raise ApiError(
                400, f"url is refused by the server's address rules ({reason})", {"field": "url"}
            )
        salt = new_salt()
        async with bounded_acquire(self.pool, self.settings) as conn:
            try:
                row = await webhooks.create_webhook(
                    conn,
                    user_id=user_id,
                    url=new.url,
                    events=new.events,
                    salt=salt,
                    most=MAX_WEBHOOKS_PER_USER,
                )
            except webhooks.UnknownUser:
                raise ApiError(
                    422, f"user {user_id} does not exist", {"field": "user_id"}
                ) from None
            except webhooks.TooManyWebhooks:
                raise ApiError(
                    409, f"user {user_id} has {MAX_WEBHOOKS_PER_USER} webhooks already"
                ) from None
        key = secret_key(self.settings.webhook_signing_key, row["id"], salt)
        return {**webhook_json(row), "secret": secret_text(key)}

    async def list(self, user_id: int) -> list[dict[str, Any]]:
        async with bounded_acquire(self.pool, self.settings) as conn:
            return [webhook_json(row) for row in await webhooks.list_webhooks(conn, user_id)]

    async def owned(self, webhook_id: int, owner: int | None) -> asyncpg.Record:
        """The endpoint; 404 if it is not there or not the caller's (`owner` None: anyone's)."""
        async with bounded_acquire(self.pool, self.settings) as conn:
            row = await webhooks.get_webhook(conn, webhook_id)
        if row is None or (owner is not None and row["user_id"] != owner):
            raise not_found(webhook_id)
        return row

    async def delete(self, webhook_id: int, owner: int | None) -> None:
        await self.owned(webhook_id, owner)
        async with bounded_acquire(self.pool, self.settings) as conn:
            if not await webhooks.delete_webhook(conn, webhook_id):
                raise not_found(webhook_id)

    async def deliveries(self, webhook_id: int, owner: int | None, limit: int) -> dict[str, Any]:
        row = await self.owned(webhook_id, owner)
        async with bounded_acquire(self.pool, self.settings) as conn:
            rows = await webhooks.recent_deliveries(conn, webhook_id, limit)
        return {"webhook": webhook_json(row), "deliveries": [delivery_json(r) for r in rows]}
