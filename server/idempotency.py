"""Idempotency-Key on creates (draft-ietf-httpapi-idempotency-key-header).

The first request with a key runs and its answer is recorded in the same transaction as what it
created; a retry by the same caller with the same key and body gets that answer again, with
`Idempotent-Replayed: true`, and creates nothing. The same key with another body is `422`; a
retry while the first is still running is `409` (the first holds a transaction-scoped advisory
lock on the key, so a crash mid-way leaves nothing behind to block the key).

Neither the key nor the answer is stored in clear: rows are found by a hash of the key, and the
answer (POST /users returns an API key) is sealed with AES-GCM under a key derived from the
Idempotency-Key and its caller, so only a client that still holds the key can read it back.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from db import idempotency as records
from server.errors import ApiError, bad_request

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_NONCE_BYTES = 12


Charge = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Idempotent:
    """A create sent with an Idempotency-Key: who sent it, the key, and the request's identity."""

    owner: str  # 'user:ID', 'admin:admin-N' or 'addr:IP'
    key: str
    request: bytes  # fingerprint() of the body
    ttl_hours: int
    # What the create costs besides (the image quota), paid only when it runs: raising refuses
    # it, and the transaction it runs in records nothing.
    charge: Charge | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


def parse_key(value: str | None) -> str | None:
    """The header's key, None when absent; 400 unless 1-255 printable ASCII characters."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not (value.isascii() and value.isprintable()):
        raise bad_request(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters", HEADER
        )
    return value


def fingerprint(body: Any) -> bytes:
    """The request's identity: its JSON with keys sorted, so spacing and key order don't count."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()


def _key_hash(operation: str, key: str) -> bytes:
    return hashlib.sha256(f"{operation}\0{key}".encode()).digest()


def _sealing_key(owner: str, operation: str, key: str) -> bytes:
    return hashlib.sha256(
        f"catalogue idempotency v1\0{owner}\0{operation}\0{key}".encode()
    ).digest()


def seal(answer: Answer, *, owner: str, operation: str, key: str) -> bytes:
    plain = orjson.dumps({"status": answer.status, "body": answer.body, "headers": answer.headers})
    nonce = os.urandom(_NONCE_BYTES)
    aad = owner.encode()
    return nonce + AESGCM(_sealing_key(owner, operation, key)).encrypt(nonce, plain, aad)


def unseal(sealed: bytes, *, owner: str, operation: str, key: str) -> Answer:
    nonce, cipher = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    plain = AESGCM(_sealing_key(owner, operation, key)).decrypt(nonce, cipher, owner.encode())
    data = orjson.loads(plain)
    return Answer(data["status"], data["body"], data["headers"], replayed=True)


async def once(
    conn: asyncpg.Connection | PoolConnectionProxy,
    idempotent: Idempotent,
    operation: str,
    create: Callable[[], Awaitable[Answer]],
) -> Answer:
    """Runs `create` unless this caller's key has an answer already; call inside the
    transaction that `create` writes in, so the record commits (or not) with what it made."""
    owner, key = idempotent.owner, idempotent.key
    key_hash = _key_hash(operation, key)
    if not await records.try_lock(conn, owner, key_hash):
        raise ApiError(
            409,
            f"a request with this {HEADER} is still in progress; retry later",
            {"header": HEADER},
        )
    found = await records.find(conn, owner, key_hash, idempotent.ttl_hours)
    if found is not None:
        if found["request_hash"] != idempotent.request:
            raise ApiError(
                422, f"this {HEADER} was used with a different request body", {"header": HEADER}
            )
        return unseal(found["sealed_answer"], owner=owner, operation=operation, key=key)
    if idempotent.charge is not None:
        await idempotent.charge()
    answer = await create()
    sealed = seal(answer, owner=owner, operation=operation, key=key)
    await records.record(conn, owner, key_hash, idempotent.request, answer.status, sealed)
    return answer
