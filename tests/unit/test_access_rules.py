"""Access rules without services: key format, key verification, rates, idempotency sealing."""

from __future__ import annotations

import math

import pytest
from cryptography.exceptions import InvalidTag

from config.rates import Rate, parse_rate
from server import auth
from server.api_keys import PREFIX, hash_secret, issue_key, parse_token
from server.auth import Authenticator, InvalidToken
from server.errors import ApiError
from server.idempotency import Answer, fingerprint, parse_key, seal, unseal
from server.rate_limits import LocalBucket

ADMIN_KEY = "adm_" + "x9Qk2Lr7Vb4Np8Zt6Wc1Hs5Jd3Fg0Ym"


def test_an_issued_key_has_the_prefix_256_random_bits_and_only_its_hash_is_kept():
    key = issue_key()
    assert key.token.startswith(PREFIX)
    key_id, secret = parse_token(key.token)
    assert key_id == key.key_id
    assert len(secret) == 43  # 32 bytes, base64url: 256 bits
    assert key.secret_hash == hash_secret(secret)
    assert secret.encode() not in key.secret_hash
    assert issue_key().token != key.token


@pytest.mark.parametrize(
    "token",
    ["", "catk_", "catk_0123456789abcdef", "catk_0123456789abcdeg_" + "a" * 43, "Bearer x"],
)
def test_a_malformed_token_parses_to_nothing(token):
    assert parse_token(token) is None


class Keys:
    """Rows as the api_keys query returns them, counted per load."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, object]] = {}
        self.loads = 0
        self.down = False

    async def load(self, key_id: str):
        self.loads += 1
        if self.down:
            raise OSError("connection refused")
        return self.rows.get(key_id)


@pytest.fixture
def keys():
    return Keys()


def add(keys: Keys, user_id: int) -> str:
    key = issue_key()
    keys.rows[key.key_id] = {"user_id": user_id, "secret_hash": key.secret_hash}
    return key.token


async def test_a_known_key_names_its_user_and_is_remembered(keys):
    token = add(keys, 7)
    authenticator = Authenticator(keys.load, ())
    first = await authenticator.caller(token)
    second = await authenticator.caller(token)
    assert (first.user_id, first.is_admin) == (7, False)
    assert second == first
    assert keys.loads == 1


async def test_a_wrong_secret_for_a_known_key_id_is_refused(keys):
    token = add(keys, 7)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    authenticator = Authenticator(keys.load, ())
    with pytest.raises(InvalidToken):
        await authenticator.caller(forged)


async def test_a_revoked_key_is_refused_once_its_memory_expires(keys, monkeypatch):
    token = add(keys, 7)
    authenticator = Authenticator(keys.load, ())
    await authenticator.caller(token)
    keys.rows.clear()  # revoked by another process
    now = auth.time.monotonic()
    monkeypatch.setattr(auth.time, "monotonic", lambda: now + auth.KEY_CACHE_TTL_S)
    with pytest.raises(InvalidToken):
        await authenticator.caller(token)


async def test_an_unknown_key_id_is_remembered_too(keys):
    authenticator = Authenticator(keys.load, ())
    token = issue_key().token
    for _ in range(3):
        with pytest.raises(InvalidToken):
            await authenticator.caller(token)
    assert keys.loads == 1


async def test_a_remembered_key_keeps_working_while_the_database_is_down(keys, monkeypatch):
    token = add(keys, 7)
    authenticator = Authenticator(keys.load, ())
    await authenticator.caller(token)
    keys.down = True
    now = auth.time.monotonic()
    monkeypatch.setattr(auth.time, "monotonic", lambda: now + 10)
    assert (await authenticator.caller(token)).user_id == 7
    with pytest.raises(OSError, match="connection refused"):
        await authenticator.caller(add(keys, 8))  # never seen: nothing to fall back on


async def test_an_admin_key_is_admin_and_needs_no_database(keys):
    authenticator = Authenticator(keys.load, (ADMIN_KEY,))
    caller = await authenticator.caller(ADMIN_KEY)
    assert caller.is_admin
    assert caller.may_act_for(12345)
    assert keys.loads == 0
    with pytest.raises(InvalidToken):
        await authenticator.caller(ADMIN_KEY[:-1] + "n")


@pytest.mark.parametrize(
    ("text", "rate"),
    [("200/s", Rate(200, 1.0)), ("20/min", Rate(20, 60.0)), ("100/h", Rate(100, 3600.0))],
)
def test_rates_read_as_count_per_period(text, rate):
    assert parse_rate(text) == rate
    assert str(parse_rate(text)) == text


@pytest.mark.parametrize("text", ["", "200", "0/s", "-1/s", "20/week", "2.5/s", "²/s"])
def test_a_malformed_rate_is_refused(text):
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_a_local_bucket_allows_one_period_at_once_then_one_per_interval():
    bucket = LocalBucket(Rate(4, 1.0))
    assert [bucket.take(100.0).allowed for _ in range(5)] == [True] * 4 + [False]
    refused = bucket.take(100.0)
    assert math.isclose(refused.retry_after_s, 0.25)
    assert bucket.take(100.25).allowed
    assert not bucket.take(100.25).allowed


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_an_idempotency_key_must_be_1_to_255_printable_ascii_characters(value):
    with pytest.raises(ApiError) as raised:
        parse_key(value)
    assert raised.value.status == 400
    assert raised.value.details == {"field": "Idempotency-Key"}


def test_the_request_fingerprint_ignores_key_order_but_not_values():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_a_sealed_answer_opens_only_with_its_key_and_caller():
    answer = Answer(201, {"api_key": "catk_secret"}, {"Location": "/users/1"})
    sealed = seal(answer, owner="addr:127.0.0.1", operation="POST /users", key="k1")
    assert b"catk_secret" not in sealed
    opened = unseal(sealed, owner="addr:127.0.0.1", operation="POST /users", key="k1")
    assert (opened.status, opened.body, opened.headers, opened.replayed) == (
        201,
        {"api_key": "catk_secret"},
        {"Location": "/users/1"},
        True,
    )
    with pytest.raises(InvalidTag):
        unseal(sealed, owner="addr:127.0.0.2", operation="POST /users", key="k1")
    with pytest.raises(InvalidTag):
        unseal(sealed, owner="addr:127.0.0.1", operation="POST /users", key="k2")
