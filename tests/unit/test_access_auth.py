"""The key verifier on a controlled clock: a revoked key is refused within one second of the
moment its row was read, a load in flight cannot bring back a key just revoked, an outage costs
one database attempt per second (not one per request), and admin keys are told apart by their
position only. The database is a table in a dict here: what is under test is the memory in front
of it (the real one is tested through the app in tests/integration/test_api_access*.py)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from server import auth
from server.api_keys import issue_key
from server.auth import KEY_CACHE_TTL_S, Authenticator, Caller, InvalidToken

ADMIN_KEYS = ("adm-first-Qk2Lr7Vb4Np8Zt6Wc1Hs5Jd3Fg0Ym", "adm-second-p8Zt6Wc1Hs5Jd3Fg0YmQk2Lr7Vb4N")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(auth.time, "monotonic", clock)
    return clock


class Table:
    """api_keys rows by id; each load takes `load_s` of the clock, and can be held."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[str, dict[str, object]] = {}
        self.loads = 0
        self.load_s = 0.0
        self.down = False
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def load(self, key_id: str):
        self.loads += 1
        row = self.rows.get(key_id)  # the row as the query's snapshot sees it
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        self.clock.now += self.load_s
        if self.down:
            raise OSError("connection refused")
        return row

    def add(self, user_id: int) -> str:
        key = issue_key()
        self.rows[key.key_id] = {"user_id": user_id, "secret_hash": key.secret_hash}
        return key.token


@pytest.fixture
def table(clock) -> Table:
    return Table(clock)


async def test_a_revoked_key_is_refused_one_second_after_its_row_was_read(clock, table):
    token = table.add(7)
    authenticator = Authenticator(table.load, ())
    table.load_s = 0.3  # a slow query: the row is older than the answer
    await authenticator.caller(token)
    read_at = clock.now - table.load_s
    table.rows.clear()  # revoked by another process, right after the read
    clock.now = read_at + KEY_CACHE_TTL_S - 0.001
    assert authenticator.remembered(token) is not None  # still within its second
    clock.now = read_at + KEY_CACHE_TTL_S
    assert authenticator.remembered(token) is None  # must be asked for again
    with pytest.raises(InvalidToken):
        await authenticator.caller(token)


async def test_a_load_in_flight_when_its_key_is_revoked_does_not_bring_it_back(clock, table):
    token = table.add(7)
    key_id = token.split("_")[1]
    authenticator = Authenticator(table.load, ())
    table.gate = asyncio.Event()
    in_flight = asyncio.create_task(authenticator.caller(token))
    await table.started.wait()  # the load has read the row, and waits
    clock.now += 0.1
    del table.rows[key_id]
    authenticator.forget(key_id)  # this process revoked it
    table.gate.set()
    assert (await in_flight).user_id == 7  # it arrived before the revocation
    assert authenticator.remembered(token) is None  # but it is not remembered
    with pytest.raises(InvalidToken):
        await authenticator.caller(token)


async def test_while_the_database_is_down_a_remembered_key_costs_one_attempt_a_second(clock, table):
    token = table.add(7)
    authenticator = Authenticator(table.load, ())
    await authenticator.caller(token)
    table.down = True
    clock.now += KEY_CACHE_TTL_S
    for _ in range(50):
        assert (await authenticator.caller(token)).user_id == 7
    assert table.loads == 2  # the first load, then one failed attempt
    clock.now += KEY_CACHE_TTL_S
    assert (await authenticator.caller(token)).user_id == 7
    assert table.loads == 3
    table.down = False
    table.rows.clear()  # revoked during the outage's last second
    clock.now += KEY_CACHE_TTL_S
    with pytest.raises(InvalidToken):
        await authenticator.caller(token)


async def test_concurrent_requests_of_an_unremembered_key_share_one_load(clock, table):
    token = table.add(7)
    authenticator = Authenticator(table.load, ())
    table.gate = asyncio.Event()
    waiting = [asyncio.create_task(authenticator.caller(token)) for _ in range(20)]
    await table.started.wait()
    table.gate.set()
    assert {(await w).user_id for w in waiting} == {7}
    assert table.loads == 1


async def test_a_remembered_key_is_answered_without_io_and_by_one_shared_caller(clock, table):
    token = table.add(7)
    authenticator = Authenticator(table.load, ())
    loaded = await authenticator.caller(token)
    remembered = authenticator.remembered(token)  # synchronous: no coroutine, no await
    assert remembered is loaded
    assert (remembered.reads_bucket, remembered.writes_bucket) == (
        f"reads:key:{remembered.key_id}",
        f"writes:key:{remembered.key_id}",
    )
    assert table.loads == 1


def test_each_admin_key_is_its_own_caller_named_by_position(table):
    authenticator = Authenticator(table.load, ADMIN_KEYS)
    first, second = (authenticator.remembered(key) for key in ADMIN_KEYS)
    assert first is not None
    assert second is not None
    assert (first.is_admin, first.key_id) == (True, "admin-1")
    assert (second.is_admin, second.key_id) == (True, "admin-2")
    for key in ADMIN_KEYS:  # nothing derived from the key names it
        digest = hashlib.sha256(key.encode())
        assert digest.hexdigest()[:8] not in f"{first.key_id}{second.key_id}"
    with pytest.raises(InvalidToken):
        authenticator.remembered(ADMIN_KEYS[0] + "x")
    assert table.loads == 0


async def test_only_a_key_id_once_found_valid_counts_as_verified_before(clock, table):
    authenticator = Authenticator(table.load, ())
    token = table.add(7)
    unknown = issue_key().token
    assert not authenticator.verified_before(token)
    await authenticator.caller(token)
    with pytest.raises(InvalidToken):
        await authenticator.caller(unknown)
    assert authenticator.verified_before(token)
    assert not authenticator.verified_before(unknown)
    assert not authenticator.verified_before("not a key")


async def test_a_remembered_key_id_with_any_other_secret_is_refused(clock, table):
    token = table.add(7)
    authenticator = Authenticator(table.load, ())
    await authenticator.caller(token)
    head = token[:-43]  # the secret is 43 characters and may itself contain "_"
    for secret in ("A" * 43, "!" * 43, token[-43:-1] + "é", token[-43:].swapcase()):
        with pytest.raises(InvalidToken):
            authenticator.remembered(head + secret)
    assert authenticator.remembered(token) is not None
    assert table.loads == 1


def recent(authenticator: Authenticator, token: str, now: float) -> Caller | None:
    """The hot path's answer to a request sending `token` as its bearer key."""
    return authenticator.recent_bearer(f"Bearer {token}", now)


async def test_the_hot_path_knows_a_repeated_key_and_refuses_any_other_secret(clock, table):
    token = table.add(7)
    authenticator = Authenticator(table.load, ())
    loaded = await authenticator.caller(token)
    now = clock.now
    # The first recent() hashes the secret; the repeats compare the whole token with it.
    assert [recent(authenticator, token, now) for _ in range(3)] == [loaded] * 3
    assert recent(authenticator, "".join(token), now) is loaded  # an equal string, not the same
    head = token[: -len(token.rsplit("_", 1)[1])]
    for secret in ("A" * 43, token[-43:-1] + "é", token[-43:].swapcase(), token[-43:-1] + "x"):
        assert recent(authenticator, head + secret, now) is None  # non-ASCII included: no raise
    assert recent(authenticator, token, now) is loaded  # a refused guess left the key working
    # Another spelling of the scheme is the full check's to decide (it accepts any case).
    assert authenticator.recent_bearer(f"bearer {token}", now) is None
    assert authenticator.recent_bearer(f"Bearer  {token}"[:-1], now) is None
    assert table.loads == 1


async def test_the_hot_path_forgets_a_key_at_its_revocation_and_its_rows_age(clock, table):
    token = table.add(7)
    authenticator = Authenticator(table.load, ())
    caller = await authenticator.caller(token)
    assert caller.key_id is not None
    assert recent(authenticator, token, clock.now) is caller
    assert recent(authenticator, token, clock.now + KEY_CACHE_TTL_S) is None  # must be reloaded
    authenticator.forget(caller.key_id)
    assert recent(authenticator, token, clock.now) is None


async def test_a_new_secret_for_a_remembered_key_id_is_checked_against_its_hash(clock, table):
    token = table.add(7)
    authenticator = Authenticator(table.load, ())
    await authenticator.caller(token)
    assert recent(authenticator, token, clock.now) is not None
    # The row changes (as a reissued secret would): after the reload, only its hash decides.
    key_id = token.split("_")[1]
    replacement = issue_key()
    # The secret may itself contain "_", so cut at the id rather than split.
    fresh = f"catk_{key_id}_{replacement.token.removeprefix(f'catk_{replacement.key_id}_')}"
    table.rows[key_id]["secret_hash"] = replacement.secret_hash
    clock.now += KEY_CACHE_TTL_S
    assert recent(authenticator, token, clock.now) is None
    assert await authenticator.caller(fresh) is not None
    assert recent(authenticator, fresh, clock.now) is not None
    assert (
        recent(authenticator, token, clock.now) is None
    )  # the old secret's memo went with its row
