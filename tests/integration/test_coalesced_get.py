"""Redis GETs of one loop iteration sent as one MGET, against the real Redis."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from catalogue.coalesced_get import CoalescedGet

pytestmark = pytest.mark.integration


class CountingRedis(redis.Redis):
    """The real client, counting the commands it sends."""

    sent: Counter[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent[str(args[0]).upper()] += 1
        return await super().execute_command(*args, **options)


@pytest.fixture
async def client(settings):
    c = CountingRedis.from_url(settings.redis_url)
    c.sent = Counter()
    yield c
    await c.aclose()


def keys(n: int) -> list[str]:
    prefix = uuid.uuid4().hex
    return [f"test:coalesce:{prefix}:{i}" for i in range(n)]


async def test_gets_of_one_iteration_share_one_mget_and_each_gets_its_value(client):
    names = keys(50)
    await client.mset({name: f"value-{i}" for i, name in enumerate(names[:40])})
    client.sent.clear()
    gets = CoalescedGet(client)
    values = await asyncio.gather(*(gets.get(name) for name in [*names, names[0]]))
    assert values[:40] == [f"value-{i}".encode() for i in range(40)]
    assert values[40:50] == [None] * 10  # absent keys
    assert values[50] == b"value-0"  # the same key twice in one batch
    assert client.sent == Counter({"MGET": 1})


async def test_a_lone_get_is_a_plain_get_and_waits_for_no_one(client):
    [name] = keys(1)
    await client.set(name, "alone")
    client.sent.clear()
    assert await CoalescedGet(client).get(name) == b"alone"
    assert client.sent == Counter({"GET": 1})


async def test_gets_after_a_batch_left_go_in_the_next_one(client):
    names = keys(4)
    client.sent.clear()
    gets = CoalescedGet(client)
    assert await asyncio.gather(*(gets.get(name) for name in names[:2])) == [None, None]
    assert await asyncio.gather(*(gets.get(name) for name in names[2:])) == [None, None]
    assert client.sent == Counter({"MGET": 2})


async def test_a_full_batch_leaves_at_once(client):
    names = keys(10)
    client.sent.clear()
    gets = CoalescedGet(client, max_batch=4)
    assert await asyncio.gather(*(gets.get(name) for name in names)) == [None] * 10
    assert client.sent == Counter({"MGET": 3})  # 4 + 4 + 2


async def test_a_failed_mget_fails_every_waiter():
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    try:
        gets = CoalescedGet(dead)
        results = await asyncio.gather(*(gets.get(n) for n in keys(3)), return_exceptions=True)
    finally:
        await dead.aclose()
    assert all(isinstance(r, (RedisConnectionError, OSError)) for r in results), results


async def test_a_cancelled_follower_does_not_disturb_the_others(client):
    names = keys(3)
    await client.mset(dict.fromkeys(names, "v"))
    gets = CoalescedGet(client)
    tasks = [asyncio.ensure_future(gets.get(name)) for name in names]
    await asyncio.sleep(0)  # all three joined the batch
    tasks[1].cancel()
    assert await tasks[0] == b"v"
    assert await tasks[2] == b"v"
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]


async def test_the_followers_get_their_values_when_the_leader_is_cancelled(client):
    names = keys(3)
    await client.mset(dict.fromkeys(names, "v"))
    client.sent.clear()
    gets = CoalescedGet(client)
    tasks = [asyncio.ensure_future(gets.get(name)) for name in names]
    await asyncio.sleep(0)  # the leader (the first) waits for its turn; the others joined
    tasks[0].cancel()
    assert await asyncio.gather(tasks[1], tasks[2]) == [b"v", b"v"]
    assert tasks[0].cancelled()
    assert client.sent == Counter({"MGET": 1})
