"""The API's two reconnect-for-ever loops back off through catalogue.retry: 0.1 s doubling up to
their cap (the outbox relay 5 s, the invalidation listener 2 s), starting over after a success.

Jitter draws each delay from 0 to its bound; the tests pin it to the bound to see the bounds."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from config import load_settings
from server import invalidation
from server.local_cache import LocalCache
from server.metrics import ApiMetrics
from server.relay import OutboxRelay

RELAY_BOUNDS = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
LISTENER_BOUNDS = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


Delays = Callable[[int], list[float]]


class Stop(Exception):
    """Ends a loop that would otherwise run for ever."""


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> Delays:
    """Records the loops' waits instead of waiting; the `count`-th wait raises Stop. Jitter
    draws the bound (see `shortest_jitter` for the other end)."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    recorded: list[float] = []
    limit = [0]

    async def sleep(delay: float) -> None:
        recorded.append(delay)
        if len(recorded) == limit[0]:
            raise Stop

    monkeypatch.setattr(asyncio, "sleep", sleep)

    def until(count: int) -> list[float]:
        limit[0] = count
        return recorded

    return until


def failing_relay(outcomes: list[bool], monkeypatch: pytest.MonkeyPatch) -> OutboxRelay:
    """A relay whose drains succeed or fail as `outcomes` says, then fail."""
    relay = OutboxRelay(
        None,  # type: ignore[arg-type]  # never used: drain() is replaced below
        load_settings({}, dotenv=None),
        ApiMetrics().outbox_published,
    )
    pending = list(outcomes)

    async def drain() -> int:
        if pending and pending.pop(0):
            relay._wake.set()  # as a NOTIFY would: the relay drains again at once
            return 0
        raise ConnectionError("kafka is away")

    async def nothing() -> None:
        pass

    monkeypatch.setattr(relay, "drain", drain)
    monkeypatch.setattr(relay, "_ensure_listener", nothing)  # no PostgreSQL here
    monkeypatch.setattr(relay, "_drop_producer", nothing)  # nor Kafka
    return relay


async def test_the_relay_backs_off_from_a_tenth_of_a_second_doubling_to_five(
    delays: Delays, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = delays(len(RELAY_BOUNDS))
    with pytest.raises(Stop):
        await failing_relay([], monkeypatch).run()
    assert waits == pytest.approx(RELAY_BOUNDS)


async def test_a_successful_drain_starts_the_relays_backoff_over(
    delays: Delays, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = delays(5)
    with pytest.raises(Stop):
        await failing_relay([False, False, False, True], monkeypatch).run()
    # Three failures, a success, and the next failure waits as little as the first.
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.1, 0.2])


class UnreachableRedis:
    """A client whose subscription fails at once, as with Redis down."""

    def pubsub(self) -> UnreachableRedis:
        return self

    async def subscribe(self, channel: str) -> None:
        raise ConnectionError("redis is away")

    async def aclose(self) -> None:
        pass


@pytest.fixture
def unreachable_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        invalidation.redis.Redis, "from_url", staticmethod(lambda *a, **k: UnreachableRedis())
    )


@pytest.fixture
def shortest_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: low)


@pytest.mark.usefixtures("unreachable_redis")
async def test_the_invalidation_listener_backs_off_from_a_tenth_of_a_second_doubling_to_two(
    delays: Delays,
) -> None:
    waits = delays(len(LISTENER_BOUNDS))
    local = LocalCache(ttl_s=1, max_items=1)
    with pytest.raises(Stop):
        await invalidation.listen_for_invalidations("redis://unused", local)
    assert waits == pytest.approx(LISTENER_BOUNDS)
    assert not local.enabled


@pytest.mark.usefixtures("unreachable_redis")
async def test_the_invalidation_listener_never_resubscribes_at_once(
    delays: Delays, shortest_jitter: None
) -> None:
    """However short the jitter, a lost subscription keeps the local cache off for 0.1 s."""
    waits = delays(3)
    with pytest.raises(Stop):
        await invalidation.listen_for_invalidations(
            "redis://unused", LocalCache(ttl_s=1, max_items=1)
        )
    assert waits == pytest.approx([0.1, 0.1, 0.1])
