"""Changing and deleting products and users through the real app and stack: what each write does
to the images, the outbox and every process's cache."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from testkit.products import finish_processing

from .conftest import wait_for

pytestmark = pytest.mark.integration

A, B, C = (f"https://images.example.com/{name}.jpg" for name in "abc")


@pytest.fixture
async def second_api(settings) -> AsyncIterator[TestClient]:
    """Another API process's worth of app: its own memory tier, the same Redis and database."""
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    yield client
    await client.close()


async def new_product(api, user, images=(A, B), **fields) -> int:
    body = {
        "user_id": user["user_id"],
        "product_name": "Lamp",
        "product_price": 10,
        "product_images": list(images),
        **fields,
    }
    response = await api.post("/products", json=body)
    assert response.status == 201, await response.text()
    return int((await response.json())["product_id"])


async def jobs_of(db, product_id: int) -> list[dict]:
    rows = await db.fetch(
        "SELECT payload::text FROM outbox WHERE key = $1 AND payload ? 'kind' ORDER BY id",
        str(product_id),
    )
    return [orjson.loads(r["payload"]) for r in rows]


async def events_of(db, product_id: int) -> list[dict]:
    """The product's events in the outbox, oldest first (catalogue/events.py)."""
    rows = await db.fetch(
        "SELECT payload::text FROM outbox WHERE key = $1 AND payload ? 'type' ORDER BY id",
        str(product_id),
    )
    return [orjson.loads(r["payload"]) for r in rows]


async def hold_the_relay(api) -> None:
    """Stops the relay of this app so outbox rows stay readable (they are deleted once
    published)."""
    from server.keys import RELAY

    api.app[RELAY].request_stop()


@pytest.fixture
async def quiet_api(settings) -> AsyncIterator[TestClient]:
    """The app without a relay publishing: what a write puts in the outbox stays there."""
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    await hold_the_relay(client)
    yield client
    await client.close()


@pytest.fixture
async def quiet_user(quiet_api) -> dict[str, str]:
    """A user made through quiet_api (the `user` fixture would start an app with its relay)."""
    email = f"{uuid.uuid4().hex}@example.com"
    response = await quiet_api.post("/users", json={"username": "quiet", "email": email})
    assert response.status == 201
    return await response.json()


async def test_a_patch_changes_the_given_fields_and_answers_the_whole_product(api, user):
    product_id = await new_product(api, user, images=())
    response = await api.patch(
        f"/products/{product_id}",
        json={"product_name": "Brass lamp", "product_price": 12.5, "product_description": "Warm"},
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["product_name"], body["product_price"], body["product_description"]) == (
        "Brass lamp",
        12.5,
        "Warm",
    )
    assert response.headers["ETag"].startswith('"')
    got = await api.get(f"/products/{product_id}")
    assert await got.json() == body


async def test_after_a_patch_no_process_serves_the_previous_state(api, second_api, user):
    product_id = await new_product(api, user, images=())
    for client in (api, second_api):  # both processes hold the product in memory
        assert (await (await client.get(f"/products/{product_id}")).json())["product_name"] == (
            "Lamp"
        )
    response = await api.patch(f"/products/{product_id}", json={"product_name": "Renamed"})
    assert response.status == 200

    async def second_sees_it() -> bool:
        got = await second_api.get(f"/products/{product_id}")
        return (await got.json())["product_name"] == "Renamed"

    await wait_for(second_sees_it, timeout_s=5)


async def test_changing_images_keeps_outputs_queues_only_new_sources_and_cleans_up_removed(
    quiet_api, quiet_user, db
):
    product_id = await new_product(quiet_api, quiet_user, images=(A, B))
    await finish_processing(db, product_id, urls=["https://cdn.example.com/a", "https://cdn/b"])
    response = await quiet_api.patch(f"/products/{product_id}", json={"product_images": [B, C]})
    assert response.status == 200
    images = (await response.json())["images"]
    assert [(i["source"], i["status"], i["url"]) for i in images] == [
        (B, "ready", "https://cdn/b"),
        (C, "pending", None),
    ]
    jobs = await jobs_of(db, product_id)
    assert jobs[-2:] == [
        {"v": 2, "kind": "images", "product_id": str(product_id), "revision": 2,
         "product_images": [C]},
        {"v": 2, "kind": "delete_objects", "product_id": str(product_id),
         "keys": [f"products/{product_id}/0"]},
    ]  # fmt: skip


async def test_a_pure_reorder_queues_nothing(quiet_api, quiet_user, db):
    product_id = await new_product(quiet_api, quiet_user, images=(A, B))
    await finish_processing(db, product_id, urls=["https://cdn/a", "https://cdn/b"])
    before = await jobs_of(db, product_id)
    response = await quiet_api.patch(f"/products/{product_id}", json={"product_images": [B, A]})
    assert response.status == 200
    body = await response.json()
    assert body["product_images"] == [B, A]
    assert body["compressed_product_images"] == ["https://cdn/b", "https://cdn/a"]
    assert body["processing_status"] == "done"
    assert await jobs_of(db, product_id) == before


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"user_id": "1"}, "user_id"),
        ({"product_id": "1"}, "product_id"),
        ({"processing_status": "done"}, "processing_status"),
        ({"product_price": -1}, "product_price"),
        ({"product_name": ""}, "product_name"),
        ({"product_name": None}, "product_name"),
        ({"product_images": ["ftp://x/y.jpg"]}, "product_images[0]"),
    ],
)
async def test_a_patch_the_api_cannot_apply_is_a_400_naming_the_field(api, user, patch, field):
    product_id = await new_product(api, user, images=())
    response = await api.patch(f"/products/{product_id}", json=patch)
    assert response.status == 400
    assert (await response.json())["details"] == {"field": field}


async def test_an_empty_patch_is_a_400(api, user):
    product_id = await new_product(api, user, images=())
    response = await api.patch(f"/products/{product_id}", json={})
    assert response.status == 400


async def test_a_merge_patch_is_accepted_and_other_media_types_are_415(api, user):
    product_id = await new_product(api, user, images=())
    merge = await api.patch(
        f"/products/{product_id}",
        data=b'{"product_price": 7}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert merge.status == 200
    assert (await merge.json())["product_price"] == 7.0
    text = await api.patch(
        f"/products/{product_id}", data=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert text.status == 415


async def test_if_match_guards_a_patch_against_lost_updates(api, user):
    product_id = await new_product(api, user, images=())
    etag = (await api.patch(f"/products/{product_id}", json={"product_price": 2})).headers["ETag"]
    stale = await api.patch(
        f"/products/{product_id}", json={"product_price": 3}, headers={"If-Match": '"other"'}
    )
    assert stale.status == 412
    current = await api.patch(
        f"/products/{product_id}", json={"product_price": 4}, headers={"If-Match": etag}
    )
    assert current.status == 200
    again = await api.delete(f"/products/{product_id}", headers={"If-Match": etag})
    assert again.status == 412  # the price changed since that ETag


async def test_a_deleted_product_is_404_in_every_process_and_leaves_the_list(api, second_api, user):
    product_id = await new_product(api, user, images=())
    for client in (api, second_api):
        assert (await client.get(f"/products/{product_id}")).status == 200
    assert (await api.delete(f"/products/{product_id}")).status == 204
    assert (await api.get(f"/products/{product_id}")).status == 404

    async def gone_in_the_second() -> bool:
        return (await second_api.get(f"/products/{product_id}")).status == 404

    await wait_for(gone_in_the_second, timeout_s=5)
    listed = await api.get("/products", params={"user_id": user["user_id"]})
    assert str(product_id) not in {p["product_id"] for p in await listed.json()}
    assert (await api.delete(f"/products/{product_id}")).status == 404


async def test_deleting_a_product_queues_the_clean_up_of_its_stored_images(
    quiet_api, quiet_user, db
):
    product_id = await new_product(quiet_api, quiet_user, images=(A, B))
    await finish_processing(db, product_id, urls=["https://cdn/a"])  # B failed
    assert (await quiet_api.delete(f"/products/{product_id}")).status == 204
    assert (await jobs_of(db, product_id))[-1] == {
        "v": 2,
        "kind": "delete_objects",
        "product_id": str(product_id),
        "keys": [f"products/{product_id}/0"],
    }


async def test_deleting_a_user_deletes_their_products_and_queues_their_clean_up(quiet_api, db):
    email = f"{uuid.uuid4().hex}@example.com"
    created = await quiet_api.post("/users", json={"username": "leaver", "email": email})
    user = await created.json()
    first = await new_product(quiet_api, user, images=(A,))
    second = await new_product(quiet_api, user, images=())
    await finish_processing(db, first, urls=["https://cdn/a"])
    assert (await quiet_api.delete(f"/users/{user['user_id']}")).status == 204
    for product_id in (first, second):
        assert (await quiet_api.get(f"/products/{product_id}")).status == 404
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", int(user["user_id"])) == 0
    assert (await jobs_of(db, first))[-1]["kind"] == "delete_objects"
    for product_id in (first, second):
        deleted = (await events_of(db, product_id))[-1]
        assert deleted["type"] == "product.deleted"
        assert deleted["data"] == {"product_id": str(product_id), "user_id": user["user_id"]}
    assert (await quiet_api.delete(f"/users/{user['user_id']}")).status == 404


async def test_two_concurrent_patches_end_as_one_of_the_serial_orders(api, second_api, user, db):
    product_id = await new_product(api, user, images=())
    names = [f"name-{n}" for n in range(10)]
    clients = [api, second_api] * 5
    await asyncio.gather(
        *(
            client.patch(f"/products/{product_id}", json={"product_name": name})
            for client, name in zip(clients, names, strict=True)
        )
    )
    in_db = await db.fetchval("SELECT product_name FROM products WHERE id = $1", product_id)
    assert in_db in names

    async def both_serve_the_database_state() -> bool:
        bodies = [await (await c.get(f"/products/{product_id}")).json() for c in (api, second_api)]
        return all(b["product_name"] == in_db for b in bodies)

    await wait_for(both_serve_the_database_state, timeout_s=5)


async def test_a_get_carries_a_strong_etag_that_changes_with_the_body_and_honours_if_none_match(
    api, user
):
    product_id = await new_product(api, user, images=())
    first = await api.get(f"/products/{product_id}")
    etag = first.headers["ETag"]
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    unchanged = await api.get(f"/products/{product_id}", headers={"If-None-Match": etag})
    assert unchanged.status == 304
    assert unchanged.headers["ETag"] == etag
    assert await unchanged.read() == b""
    await api.patch(f"/products/{product_id}", json={"product_price": 99})
    changed = await api.get(f"/products/{product_id}", headers={"If-None-Match": etag})
    assert changed.status == 200
    assert changed.headers["ETag"] != etag


async def test_reprocess_queues_every_source_again_and_keeps_the_outputs_shown(
    quiet_api, quiet_user, db
):
    product_id = await new_product(quiet_api, quiet_user, images=(A, B))
    await finish_processing(db, product_id, urls=["https://cdn/a", "https://cdn/b"])
    response = await quiet_api.post(f"/products/{product_id}/reprocess")
    assert response.status == 202
    body = await response.json()
    assert body["processing_status"] == "pending"
    assert body["compressed_product_images"] == ["https://cdn/a", "https://cdn/b"]
    assert [i["status"] for i in body["images"]] == ["pending", "pending"]
    assert (await jobs_of(db, product_id))[-1] == {
        "v": 2,
        "kind": "images",
        "product_id": str(product_id),
        "revision": 2,
        "product_images": [A, B],
    }
    got = await quiet_api.get(f"/products/{product_id}")
    assert (await got.json())["processing_status"] == "pending"


async def test_reprocessing_an_unknown_product_is_404(api):
    assert (await api.post("/products/987654321/reprocess")).status == 404


async def test_a_deleted_users_keys_are_refused_at_once_by_the_deleting_process(settings):
    keyed = settings.replace(auth_mode="api_key")
    client = TestClient(TestServer(create_app(keyed)))
    await client.start_server()
    try:
        email = f"{uuid.uuid4().hex}@example.com"
        user = await (await client.post("/users", json={"username": "x", "email": email})).json()
        auth = {"Authorization": f"Bearer {user['api_key']}"}
        assert (await client.get("/products", headers=auth)).status == 200  # key remembered
        assert (await client.delete(f"/users/{user['user_id']}", headers=auth)).status == 204
        assert (await client.get("/products", headers=auth)).status == 401
    finally:
        await client.close()
