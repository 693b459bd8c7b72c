"""Queries of the operator console: products across users, by owner, name and status.

Like db/products.py's list query, assembled from constant fragments by which filters are present;
user input travels only as parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from db.pool import Executor
from db.products import COLUMNS, like_pattern


@dataclass(frozen=True, slots=True)
class ProductSearch:
    user_id: int | None = None
    name_contains: str | None = None
    status: str | None = None  # a processing_status value
    limit: int = 50


def search_query(search: ProductSearch) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    args: list[Any] = []
    optional = (
        (search.user_id, "user_id = ${}"),
        (
            None if search.name_contains is None else like_pattern(search.name_contains),
            "product_name ILIKE ${}",
        ),
        (search.status, "processing_status = ${}::processing_status"),
    )
    for value, fragment in optional:
        if value is not None:
            args.append(value)
            conditions.append(fragment.format(len(args)))
    args.append(search.limit)
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return f"SELECT {COLUMNS} FROM products {where}ORDER BY id DESC LIMIT ${len(args)}", args


async def search_products(conn: Executor, search: ProductSearch) -> list[asyncpg.Record]:
    sql, args = search_query(search)
    return list(await conn.fetch(sql, *args))


_WEBHOOKS = """SELECT id, user_id, url, events, created_at, last_success_at, disabled_at,
                      disabled_reason
                 FROM webhooks {where} ORDER BY id DESC LIMIT ${limit}"""


async def search_webhooks(conn: Executor, user_id: int | None, limit: int) -> list[asyncpg.Record]:
    """Endpoints, newest first, of one user or of all (never their secrets' salts)."""
    if user_id is None:
        return list(await conn.fetch(_WEBHOOKS.format(where="", limit=1), limit))
    return list(
        await conn.fetch(_WEBHOOKS.format(where="WHERE user_id = $1", limit=2), user_id, limit)
    )


async def product_statuses(conn: Executor, product_ids: list[int]) -> dict[str, str]:
    """The processing status of each product that still exists, by id as text."""
    rows = await conn.fetch(
        "SELECT id, processing_status::text AS status FROM products WHERE id = ANY($1::bigint[])",
        product_ids,
    )
    return {str(row["id"]): row["status"] for row in rows}
