"""Queries of the products table.

The list query is assembled from constant fragments chosen by which filters are present, so each
combination gets its own plan (a catch-all `$n IS NULL OR …` would hide the trigram index from
the planner); user input only ever travels as parameters.

It orders by `-id`, not `id DESC`: only `products_user_newest_idx` yields that order, so the
planner cannot walk the primary key backwards past other users' newer rows looking for this
user's (see db/migrations/0002_list_order_index.sql).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from db.outbox import OutboxMessage
from db.pool import Connection, Executor

# Every committed insert, update or delete of a row notifies this channel with the product id
# (a trigger: db/migrations/0007_product_change_notify.sql).
CHANGES_CHANNEL = "product_changes"

COLUMNS = (
    "id, user_id, product_name, product_description, product_price, images::text AS images, "
    "images_revision, version, created_at, updated_at"
)

# The id is reserved first so the caller can encode the product's job (catalogue.jobs) before
# the one statement that writes both: the job contract stays in Python, in one place.
_RESERVE_ID = "SELECT nextval(pg_get_serial_sequence('products', 'id'))"

_CREATE = f"""
WITH product AS (
    INSERT INTO products (id, user_id, product_name, product_description, product_images,
                          product_price, images, processing_status)
    OVERRIDING SYSTEM VALUE
    VALUES ($1, $2, $3, $4, $5::text[], $6, $10::text::jsonb,
            CASE WHEN cardinality($5::text[]) = 0 THEN 'done' ELSE 'pending' END::processing_status)
    RETURNING *
), job AS (
    INSERT INTO outbox (topic, key, payload, traceparent)
    SELECT $7, $8, $9::text::jsonb, $11 FROM product WHERE $9::text IS NOT NULL
)
SELECT {COLUMNS} FROM product
"""

_GET = f"SELECT {COLUMNS} FROM products WHERE id = $1"


class UnknownUser(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ListFilter:
    user_id: int
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    name_contains: str | None = None
    before_id: int | None = None  # keyset cursor: ids strictly below this one
    limit: int = 50


def like_pattern(substring: str) -> str:
    """An ILIKE pattern matching `substring` anywhere, with %, _ and \\ taken literally."""
    escaped = substring.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_query(filters: ListFilter) -> tuple[str, list[Any]]:
    conditions = ["user_id = $1"]
    args: list[Any] = [filters.user_id]
    optional = (
        (filters.min_price, "product_price >= ${}"),
        (filters.max_price, "product_price <= ${}"),
        (
            None if filters.name_contains is None else like_pattern(filters.name_contains),
            "product_name ILIKE ${}",
        ),
        (filters.before_id, "-id > -${}::bigint"),  # id < cursor, in the index's terms
    )
    for value, fragment in optional:
        if value is not None:
            args.append(value)
            conditions.append(fragment.format(len(args)))
    args.append(filters.limit)
    sql = (
        f"SELECT {COLUMNS} FROM products WHERE {' AND '.join(conditions)} "
        f"ORDER BY -id LIMIT ${len(args)}"
    )
    return sql, args


async def reserve_product_id(conn: Executor) -> int:
    return await conn.fetchval(_RESERVE_ID)


async def create_product(
    conn: Executor,
    *,
    product_id: int,
    user_id: int,
    name: str,
    description: str,
    images: Sequence[str],
    entries: str,
    price: Decimal,
    job: OutboxMessage | None,
) -> asyncpg.Record:
    """Inserts the product under its reserved id with its image entries (JSON text), and, in
    the same statement, its job into the outbox."""
    topic, key, payload, traceparent = (
        (job.topic, job.key, job.payload, job.traceparent) if job else (None, None, None, None)
    )
    try:
        row = await conn.fetchrow(
            _CREATE,
            product_id,
            user_id,
            name,
            description,
            list(images),
            price,
            topic,
            key,
            payload,
            entries,
            traceparent,
        )
    except asyncpg.ForeignKeyViolationError:
        raise UnknownUser(user_id) from None
    if row is None:  # never: the INSERT returns its row or raises
        raise RuntimeError(f"creating product {product_id} returned no row")
    return row


async def get_product(conn: Executor, product_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_GET, product_id)


async def lock_product(conn: Connection, product_id: int) -> asyncpg.Record | None:
    """The product's row, locked until the transaction ends (writers of one product queue)."""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM products WHERE id = $1 FOR UPDATE", product_id
    )


async def update_product(
    conn: Connection,
    product_id: int,
    *,
    name: str | None,
    description: str | None,
    price: Decimal | None,
    entries: Sequence[dict[str, Any]],
    status: str,
    revision: int,
) -> asyncpg.Record:
    """One more version of a locked row: the fields given (None: unchanged) and its images."""
    row = await conn.fetchrow(
        f"""UPDATE products
               SET product_name = coalesce($2, product_name),
                   product_description = coalesce($3, product_description),
                   product_price = coalesce($4, product_price),
                   images = $5::text::jsonb,
                   product_images = $6::text[],
                   processing_status = $7::processing_status,
                   images_revision = $8,
                   version = version + 1,
                   updated_at = now()
             WHERE id = $1
         RETURNING {COLUMNS}""",
        product_id,
        name,
        description,
        price,
        orjson.dumps(list(entries)).decode(),
        [e["source"] for e in entries],
        status,
        revision,
    )
    if row is None:  # never: the caller holds the row's lock
        raise RuntimeError(f"product {product_id} vanished under its lock")
    return row


async def delete_product(conn: Connection, product_id: int) -> None:
    await conn.execute("DELETE FROM products WHERE id = $1", product_id)


async def delete_users_products(conn: Connection, user_id: int) -> list[asyncpg.Record]:
    """Deletes every product of the user; returns their ids, owner and image entries (JSON
    text)."""
    return await conn.fetch(
        "DELETE FROM products WHERE user_id = $1 RETURNING id, user_id, images::text AS images",
        user_id,
    )


async def list_products(conn: Executor, filters: ListFilter) -> list[asyncpg.Record]:
    sql, args = list_query(filters)
    return await conn.fetch(sql, *args)


async def lock_images(conn: Connection, product_id: int) -> asyncpg.Record | None:
    """The product's image entries and revision, locked until the transaction ends."""
    return await conn.fetchrow(
        "SELECT images::text AS images, images_revision FROM products WHERE id = $1 FOR UPDATE",
        product_id,
    )


async def image_entries(conn: Executor, product_id: int) -> list[dict[str, Any]] | None:
    """The product's image entries (catalogue/image_state.py); None if there is no product."""
    text = await conn.fetchval("SELECT images::text FROM products WHERE id = $1", product_id)
    return None if text is None else orjson.loads(text)


async def save_images(
    conn: Connection,
    product_id: int,
    entries: Sequence[dict[str, Any]],
    *,
    status: str,
    revision: int,
) -> asyncpg.Record:
    """Writes new image entries and the status derived from them, as one more version of the
    row."""
    row = await conn.fetchrow(
        f"""UPDATE products
               SET images = $2::text::jsonb,
                   product_images = $3::text[],
                   processing_status = $4::processing_status,
                   images_revision = $5,
                   version = version + 1,
                   updated_at = now()
             WHERE id = $1
         RETURNING {COLUMNS}""",
        product_id,
        orjson.dumps(list(entries)).decode(),
        [e["source"] for e in entries],
        status,
        revision,
    )
    if row is None:  # never: the caller holds the row's lock
        raise RuntimeError(f"product {product_id} vanished under its lock")
    return row


# -- selecting products to reprocess (python -m compressor.reprocess) -------------------------


@dataclass(frozen=True, slots=True)
class ReprocessFilter:
    """Products with images, narrowed by every criterion given (all of them must hold)."""

    user_id: int | None = None
    statuses: tuple[str, ...] = ()  # processing_status values
    # Products showing an output produced under other image settings than this fingerprint
    # (catalogue/fingerprint.py), or under unknown ones (no fingerprint recorded).
    outdated_fingerprint: str | None = None


_OUTDATED = """EXISTS (SELECT 1 FROM jsonb_array_elements(images) AS entry
                WHERE entry ->> 'key' IS NOT NULL
                  AND (entry ->> 'fingerprint') IS DISTINCT FROM ${})"""


def reprocess_conditions(filters: ReprocessFilter) -> tuple[list[str], list[Any]]:
    """The WHERE conditions and their arguments ($1…), each a constant fragment."""
    conditions = ["jsonb_array_length(images) > 0"]
    args: list[Any] = []
    optional = (
        (filters.user_id, "user_id = ${}"),
        (list(filters.statuses) or None, "processing_status::text = ANY(${}::text[])"),
        (filters.outdated_fingerprint, _OUTDATED),
    )
    for value, fragment in optional:
        if value is not None:
            args.append(value)
            conditions.append(fragment.format(len(args)))
    return conditions, args


async def reprocess_candidates(
    conn: Executor, filters: ReprocessFilter, *, after_id: int = 0, limit: int = 500
) -> list[int]:
    """The ids of matching products above `after_id`, ascending: one page of a keyset walk."""
    conditions, args = reprocess_conditions(filters)
    args += [after_id, limit]
    sql = (
        f"SELECT id FROM products WHERE {' AND '.join(conditions)} AND id > ${len(args) - 1} "
        f"ORDER BY id LIMIT ${len(args)}"
    )
    return [record["id"] for record in await conn.fetch(sql, *args)]


async def count_reprocess_candidates(conn: Executor, filters: ReprocessFilter) -> int:
    conditions, args = reprocess_conditions(filters)
    return await conn.fetchval(
        f"SELECT count(*) FROM products WHERE {' AND '.join(conditions)}", *args
    )
