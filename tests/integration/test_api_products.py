"""The product API against the real stack: users, create → get (cache HIT/MISS), list filters,
keyset pagination, and the trigram index behind the name search."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal

import orjson
import pytest

from catalogue.cache import NOT_FOUND, product_key
from db.pool import create_pool
from db.products import ListFilter, list_products, list_query

pytestmark = pytest.mark.integration

PRODUCT_FIELDS = {
    "product_id",
    "user_id",
    "product_name",
    "product_description",
    "product_images",
    "compressed_product_images",
    "product_price",
    "processing_status",
    "images",  # per-source state: {"source", "status", "url", "error"}
    "created_at",
    "updated_at",
}
IMAGES = ["https://images.example.com/a.jpg", "http://images.example.com/b.png"]
_NEXT = re.compile(r'^<([^>]+)>; rel="next"$')


async def create_user(api, email: str | None = None) -> dict:
    email = email or f"{uuid.uuid4().hex}@example.com"
    response = await api.post("/users", json={"username": "shopper", "email": email})
    assert response.status == 201, await response.text()
    return await response.json()


async def create_product(api, user_id: str, **fields) -> str:
    body = {
        "user_id": user_id,
        "product_name": "Desk lamp",
        "product_description": "A lamp for a desk",
        "product_images": [],
        "product_price": 19.99,
        **fields,
    }
    response = await api.post("/products", json=body)
    assert response.status == 201, await response.text()
    return (await response.json())["product_id"]


async def list_page(api, **params):
    response = await api.get("/products", params=params)
    assert response.status == 200, await response.text()
    return await response.json(), response.headers.get("Link")


def names(products: list[dict]) -> list[str]:
    return [p["product_name"] for p in products]


def next_url(link: str | None) -> str | None:
    if link is None:
        return None
    match = _NEXT.match(link)
    assert match, f"malformed Link header: {link!r}"
    return match.group(1)


# -- users ---------------------------------------------------------------------------------------


async def test_create_user_returns_201_with_the_id_as_a_string(api):
    email = f"{uuid.uuid4().hex}@example.com"
    response = await api.post("/users", json={"username": "ada", "email": email})
    assert response.status == 201
    body = await response.json()
    assert set(body) == {"user_id", "username", "email"}
    assert isinstance(body["user_id"], str)
    assert body["user_id"].isdigit()
    assert (body["username"], body["email"]) == ("ada", email)


async def test_duplicate_email_is_a_409_whatever_its_case(api):
    local = uuid.uuid4().hex
    await create_user(api, f"{local}@example.com")
    for email in (f"{local}@example.com", f"{local.upper()}@EXAMPLE.com"):
        response = await api.post("/users", json={"username": "again", "email": email})
        assert response.status == 409, email
        body = await response.json()
        assert body["status"] == "error"
        assert body["details"] == {"field": "email"}


# -- create and get ------------------------------------------------------------------------------


async def test_create_product_answers_exactly_the_specified_body_and_location(api, user):
    response = await api.post(
        "/products",
        json={
            "user_id": user["user_id"],
            "product_name": "Desk lamp",
            "product_description": "A lamp for a desk",
            "product_images": IMAGES,
            "product_price": 19.99,
        },
    )
    assert response.status == 201
    body = await response.json()
    assert set(body) == {"status", "message", "product_id"}
    assert body["status"] == "success"
    assert body["message"] == "Product created successfully"
    assert isinstance(body["product_id"], str)
    assert body["product_id"].isdigit()
    assert response.headers["Location"] == f"/products/{body['product_id']}"


async def test_an_integer_user_id_is_accepted_too(api, user):
    product_id = await create_product(api, int(user["user_id"]))
    response = await api.get(f"/products/{product_id}")
    assert (await response.json())["user_id"] == user["user_id"]


async def test_get_product_returns_every_field(api, user):
    product_id = await create_product(
        api, user["user_id"], product_images=IMAGES, product_description="Bright"
    )
    response = await api.get(f"/products/{product_id}")
    assert response.status == 200
    assert response.content_type == "application/json"
    raw = await response.read()
    body = orjson.loads(raw)
    assert set(body) == PRODUCT_FIELDS
    assert body["product_id"] == product_id
    assert body["user_id"] == user["user_id"]
    assert body["product_name"] == "Desk lamp"
    assert body["product_description"] == "Bright"
    assert body["product_images"] == IMAGES
    assert body["compressed_product_images"] == []
    assert body["processing_status"] == "pending"
    # A JSON number written as the decimal the client sent, not a string or 19.989999….
    assert b'"product_price":19.99' in raw
    assert body["product_price"] == 19.99
    created = datetime.fromisoformat(body["created_at"])
    updated = datetime.fromisoformat(body["updated_at"])
    assert created.tzinfo is not None
    assert updated >= created


async def test_first_get_after_create_is_a_hit_because_create_fills_the_cache(api, user):
    product_id = await create_product(api, user["user_id"])
    response = await api.get(f"/products/{product_id}")
    assert response.status == 200
    assert response.headers["X-Cache"] == "HIT"


async def test_get_is_a_miss_once_the_cache_is_emptied_then_a_hit(api, user, redis_client):
    product_id = await create_product(api, user["user_id"], product_name="Cached lamp")
    assert await redis_client.delete(product_key(int(product_id))) == 1

    first = await api.get(f"/products/{product_id}")
    assert first.status == 200
    assert first.headers["X-Cache"] == "MISS"
    assert await redis_client.exists(product_key(int(product_id))) == 1

    second = await api.get(f"/products/{product_id}")
    assert second.status == 200
    assert second.headers["X-Cache"] == "HIT"
    assert await second.read() == await first.read()
    assert (await second.json())["product_name"] == "Cached lamp"


async def test_a_product_without_images_is_created_done(api, user, db):
    product_id = await create_product(api, user["user_id"], product_images=[])
    response = await api.get(f"/products/{product_id}")
    assert (await response.json())["processing_status"] == "done"
    # Nothing to process, so no job either: its product.created event only.
    rows = await db.fetch("SELECT payload::text FROM outbox WHERE key = $1", product_id)
    assert [orjson.loads(r["payload"])["type"] for r in rows] == ["product.created"]


async def test_a_product_with_images_is_created_pending(api, user):
    product_id = await create_product(api, user["user_id"], product_images=IMAGES)
    response = await api.get(f"/products/{product_id}")
    assert (await response.json())["processing_status"] == "pending"


async def test_unknown_user_id_is_a_422(api, db):
    unknown = await db.fetchval("SELECT coalesce(max(id), 0) + 1000000 FROM users")
    response = await api.post(
        "/products", json={"user_id": str(unknown), "product_name": "Orphan", "product_price": 1}
    )
    assert response.status == 422
    body = await response.json()
    assert body["status"] == "error"
    assert body["details"] == {"field": "user_id"}
    assert str(unknown) in body["message"]


async def test_unknown_product_is_a_404_and_then_served_from_the_negative_cache(
    api, db, redis_client
):
    unknown = await db.fetchval("SELECT coalesce(max(id), 0) + 1000000 FROM products")
    await redis_client.delete(product_key(unknown))

    first = await api.get(f"/products/{unknown}")
    assert first.status == 404
    assert first.headers["X-Cache"] == "MISS"
    body = await first.json()
    assert body["status"] == "error"
    assert str(unknown) in body["message"]

    second = await api.get(f"/products/{unknown}")
    assert second.status == 404
    assert second.headers["X-Cache"] == "HIT"
    assert await second.json() == body


async def test_a_product_created_over_a_cached_404_is_found(api, user, db, redis_client):
    next_id = await db.fetchval(
        "SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM products_id_seq"
    )
    # What GET /products/{next_id} leaves behind before the product exists: a cached 404.
    await redis_client.set(product_key(next_id), NOT_FOUND, ex=60)
    product_id = await create_product(api, user["user_id"], product_name="Just in time")
    if product_id != str(next_id):
        await redis_client.delete(product_key(next_id))
        pytest.skip("a concurrent session took the id in between")
    found = await api.get(f"/products/{product_id}")
    assert found.status == 200
    assert found.headers["X-Cache"] == "HIT"
    assert (await found.json())["product_name"] == "Just in time"


# -- list ----------------------------------------------------------------------------------------


async def test_list_returns_only_the_given_users_products_newest_first(api):
    alice, bob = await create_user(api), await create_user(api)
    alice_ids = [
        await create_product(api, alice["user_id"], product_name=f"alice {i}") for i in range(3)
    ]
    await create_product(api, bob["user_id"], product_name="bob 0")

    products, link = await list_page(api, user_id=alice["user_id"])
    assert [p["product_id"] for p in products] == alice_ids[::-1]
    assert names(products) == ["alice 2", "alice 1", "alice 0"]
    assert {p["user_id"] for p in products} == {alice["user_id"]}
    assert set(products[0]) == PRODUCT_FIELDS
    assert link is None

    products, _ = await list_page(api, user_id=bob["user_id"])
    assert names(products) == ["bob 0"]


async def test_list_of_a_user_without_products_is_empty(api, user):
    assert await list_page(api, user_id=user["user_id"]) == ([], None)


@pytest.mark.parametrize(
    ("price_range", "expected"),
    [
        ("19.99-20.01", {"19.99", "20.00", "20.01"}),
        ("20-", {"20.00", "20.01", "20.02", "50.00", "50.01"}),
        ("-50", {"19.98", "19.99", "20.00", "20.01", "20.02", "50.00"}),
        ("20.01-20.01", {"20.01"}),
        ("0-19.98", {"19.98"}),
    ],
)
async def test_price_range_is_inclusive_on_both_ends(api, user, price_range, expected):
    for price in ("19.98", "19.99", "20.00", "20.01", "20.02", "50.00", "50.01"):
        await create_product(api, user["user_id"], product_name=price, product_price=float(price))
    products, _ = await list_page(api, user_id=user["user_id"], price_range=price_range)
    assert set(names(products)) == expected
    assert {Decimal(str(p["product_price"])) for p in products} == {Decimal(e) for e in expected}


async def test_product_name_is_a_case_insensitive_substring(api, user):
    for name in ("Blue Lamp", "LAMPSHADE", "desk lamp", "Chair"):
        await create_product(api, user["user_id"], product_name=name)
    products, _ = await list_page(api, user_id=user["user_id"], product_name="lAmP")
    assert names(products) == ["desk lamp", "LAMPSHADE", "Blue Lamp"]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("%", ["100% cotton"]),
        ("0% c", ["100% cotton"]),
        ("_", ["a_b"]),
        ("a_b", ["a_b"]),
        ("\\", ["back\\slash"]),
        ("k\\s", ["back\\slash"]),
        ("abc", ["ABC deluxe", "abc"]),
    ],
)
async def test_percent_underscore_and_backslash_in_the_name_search_are_literal(
    api, user, search, expected
):
    # Each decoy matches when the character is taken as a wildcard or an escape.
    for name in ("100% cotton", "1000 cotton", "a_b", "axb", "back\\slash", "backslash", "abc"):
        await create_product(api, user["user_id"], product_name=name)
    await create_product(api, user["user_id"], product_name="ABC deluxe")
    products, _ = await list_page(api, user_id=user["user_id"], product_name=search)
    assert names(products) == expected


async def test_filters_combine(api, user):
    for name, price in (("lamp cheap", 5), ("lamp dear", 500), ("chair cheap", 5)):
        await create_product(api, user["user_id"], product_name=name, product_price=price)
    products, _ = await list_page(
        api, user_id=user["user_id"], product_name="lamp", price_range="-10"
    )
    assert names(products) == ["lamp cheap"]


# -- pagination ----------------------------------------------------------------------------------


async def walk_pages(api, first_url: str, between_pages=None) -> list[list[dict]]:
    """All pages, following each Link header exactly as given."""
    pages = []
    url: str | None = first_url
    while url is not None:
        response = await api.get(url)
        assert response.status == 200, await response.text()
        pages.append(await response.json())
        url = next_url(response.headers.get("Link"))
        if url is not None:
            assert url.startswith("/products?")
            if between_pages is not None:
                await between_pages()
        assert len(pages) < 50, "pagination does not end"
    return pages


async def test_link_header_pagination_walks_every_row_once(api, user):
    created = [
        await create_product(api, user["user_id"], product_name=f"item {i}") for i in range(7)
    ]
    pages = await walk_pages(api, f"/products?user_id={user['user_id']}&limit=3")
    assert [len(page) for page in pages] == [3, 3, 1]
    seen = [p["product_id"] for page in pages for p in page]
    assert seen == created[::-1]  # newest first, no duplicates, no gaps


async def test_an_exactly_full_last_page_has_no_link(api, user):
    for i in range(4):
        await create_product(api, user["user_id"], product_name=f"item {i}")
    pages = await walk_pages(api, f"/products?user_id={user['user_id']}&limit=2")
    assert [len(page) for page in pages] == [2, 2]


async def test_pagination_keeps_the_filters(api, user):
    for i in range(6):
        await create_product(
            api, user["user_id"], product_name=f"{'lamp' if i % 2 else 'chair'} {i}"
        )
    pages = await walk_pages(api, f"/products?user_id={user['user_id']}&product_name=lamp&limit=1")
    assert [names(page) for page in pages] == [["lamp 5"], ["lamp 3"], ["lamp 1"]]


async def test_pagination_is_stable_when_rows_are_inserted_between_pages(api, user):
    created = [
        await create_product(api, user["user_id"], product_name=f"item {i}") for i in range(6)
    ]
    inserted: list[str] = []

    async def insert_one() -> None:
        inserted.append(
            await create_product(api, user["user_id"], product_name=f"late {len(inserted)}")
        )

    pages = await walk_pages(
        api, f"/products?user_id={user['user_id']}&limit=2", between_pages=insert_one
    )
    seen = [p["product_id"] for page in pages for p in page]
    assert len(inserted) == 2
    # Offset paging would repeat rows here; the keyset cursor neither repeats nor skips.
    assert seen == created[::-1]
    # The new rows are there for whoever starts over.
    first, _ = await list_page(api, user_id=user["user_id"], limit=2)
    assert [p["product_id"] for p in first] == inserted[::-1]


# -- the trigram index ---------------------------------------------------------------------------


async def delete_products_of(db, user_ids: list[int]) -> None:
    """Deletes the users' products straight in the database, and the cache debts that commits
    (db/migrations/0010_cache_debts.sql): none of these rows was ever cached, and thousands of
    tombstones to write would keep the repair loops of the tests after this one busy."""
    gone = await db.fetch(
        "DELETE FROM products WHERE user_id = ANY($1::bigint[]) RETURNING id", user_ids
    )
    await db.execute(
        "DELETE FROM cache_debts WHERE product_id = ANY($1::bigint[])", [r["id"] for r in gone]
    )


@pytest.fixture
async def many_products(db):
    """~5000 products of a user of their own, a few named '…rarezz…'; removed afterwards."""
    user_id = await db.fetchval(
        "INSERT INTO users (username, email) VALUES ('bulk', $1) RETURNING id",
        f"{uuid.uuid4().hex}@example.com",
    )
    await db.execute(
        """INSERT INTO products (user_id, product_name, product_price, processing_status)
           SELECT $1,
                  CASE WHEN i % 1000 = 0 THEN 'the rarezz model ' || i
                       ELSE (ARRAY['lamp', 'chair', 'desk', 'sofa', 'rug'])[1 + i % 5]
                            || ' ' || md5(i::text) END,
                  (i % 10000) / 100.0,
                  'done'
             FROM generate_series(1, 5000) AS i""",
        user_id,
    )
    # What autovacuum does in steady state: merge the GIN index's pending list (fresh inserts wait
    # there, and the planner rightly avoids an index with a long one) and refresh the statistics.
    await db.execute("VACUUM ANALYZE products")
    try:
        yield user_id
    finally:
        await delete_products_of(db, [user_id])
        await db.execute("DELETE FROM users WHERE id = $1", user_id)


async def test_the_name_search_uses_the_trigram_index(api, db, many_products):
    sql, args = list_query(ListFilter(user_id=many_products, name_contains="rarezz", limit=51))
    async with db.acquire() as conn:
        plan = "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + sql, *args))
    assert "products_name_trgm_idx" in plan, plan
    assert "Seq Scan" not in plan, plan

    products, _ = await list_page(api, user_id=str(many_products), product_name="RAREZZ")
    assert names(products) == [f"the rarezz model {i}" for i in range(5000, 0, -1000)]


@pytest.fixture
async def skewed_owners(db, many_products):
    """After many_products' ~5000 rows of one user, 6000 newer rows of 300 other users: the user
    owns much of the table but none of its newest rows."""
    owners = await db.fetch(
        """INSERT INTO users (username, email)
           SELECT 'small', md5(random()::text) || i || '@example.com'
             FROM generate_series(1, 300) AS i RETURNING id"""
    )
    owner_ids = [row["id"] for row in owners]
    await db.execute(
        """INSERT INTO products (user_id, product_name, product_price, processing_status)
           SELECT owner, 'small ' || i, i, 'done'
             FROM unnest($1::bigint[]) AS owner, generate_series(1, 20) AS i""",
        owner_ids,
    )
    await db.execute("VACUUM ANALYZE products")  # as in many_products
    try:
        yield many_products, owner_ids
    finally:
        await delete_products_of(db, owner_ids)
        await db.execute("DELETE FROM users WHERE id = ANY($1::bigint[])", owner_ids)


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "products_user_newest_idx"),
        ({"min_price": Decimal("1"), "max_price": Decimal("50")}, "products_user_newest_idx"),
        ({"before_id": 2**62}, "products_user_newest_idx"),
        # A price range matching few of the user's rows: straight to them by price.
        (
            {"min_price": Decimal("10.001"), "max_price": Decimal("10.009")},
            "products_user_price_idx",
        ),
        ({"name_contains": "rarezz"}, "products_name_trgm_idx"),
    ],
    ids=["user-only", "price", "cursor", "rare-price", "name"],
)
async def test_the_list_never_walks_the_primary_key_past_other_users_rows(
    db, skewed_owners, filters, index
):
    """Were the list ordered by `id DESC`, the planner could walk the primary key from the newest
    product of anyone, reading every other user's newer rows first (it does, on these rows). The
    work must stay bounded by the user's own rows, using the index that fits each filter."""
    big_owner, _ = skewed_owners
    sql, args = list_query(ListFilter(user_id=big_owner, limit=21, **filters))
    async with db.acquire() as conn:
        plan = "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + sql, *args))
    assert "products_pkey" not in plan, plan
    assert "Seq Scan" not in plan, plan
    assert index in plan, plan


async def test_list_queries_are_planned_for_their_own_parameters(settings, skewed_owners):
    """asyncpg prepares statements. Left alone, PostgreSQL compares the plans of the first five
    runs with a generic one made for the average user (a few rows) and keeps the generic plan for
    every later run, including the user owning most rows, for whom it reads and sorts all of them
    (measured: 154 ms instead of 0.04 ms at 300k rows). The API's pool plans each run for its
    values."""
    big_owner, small_owners = skewed_owners
    owners = [*small_owners[:5], *[big_owner] * 5]
    pool = await create_pool(settings, min_size=1)
    try:
        async with pool.acquire() as conn:
            for owner in owners:
                await list_products(conn, _price_filter(owner))
            plans = await conn.fetchrow(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement = $1",
                list_query(_price_filter(big_owner))[0],
            )
    finally:
        await pool.close()
    assert plans is not None, "the list query was not a prepared statement"
    assert (plans["generic_plans"], plans["custom_plans"]) == (0, len(owners))


def _price_filter(user_id: int) -> ListFilter:
    return ListFilter(user_id=user_id, min_price=Decimal("1"), max_price=Decimal("50"), limit=21)
