"""The soak's clients: several users, each with its own API key, running one operation at a time
(creates with an Idempotency-Key, changes, deletes, reprocesses, reads, lists), paced to a steady
total rate, over both API processes. A request that gets no answer, a 5xx or a 429 is sent again
(a create with the same Idempotency-Key), to the other API process, with backoff.

Every attempt is recorded (when, what, status or exception, latency) for the report and the
5xx check, and each client keeps what it was answered about its products (invariants.Expected)
for the end-state checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from testkit.loadgen import bearer
from testkit.soak.invariants import Answer, Creation, Expected

REQUEST_TIMEOUT_S = 5.0
ATTEMPTS = 8
BACKOFF_S = (0.2, 3.0)  # first delay, cap: full jitter, doubling
RETRIED = {409, 429, 500, 502, 503, 504}  # 409: the same Idempotency-Key still running
# The operation mix (weights) of each client.
MIX = {
    "create": 25,
    "patch": 18,
    "delete": 7,
    "reprocess": 5,
    "get": 33,
    "list": 12,
}


@dataclass(frozen=True, slots=True)
class Attempt:
    at_s: float  # since the load started
    operation: str
    status: int | None  # None: no HTTP answer
    error: str | None  # the exception's type when there was no answer
    latency_s: float


@dataclass
class Record:
    """What every client saw, shared by all of them."""

    started: float = field(default_factory=time.monotonic)
    attempts: list[Attempt] = field(default_factory=list)
    creations: list[Creation] = field(default_factory=list)
    expected: dict[int, Expected] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)  # answers no correct API gives
    stale_reads: list[str] = field(default_factory=list)  # a GET behind an answered write

    def now(self) -> float:
        return time.monotonic() - self.started

    def answers(self) -> list[Answer]:
        return [
            Answer(a.at_s, a.operation, a.status) for a in self.attempts if a.status is not None
        ]


class Api:
    """Requests over the API processes, retried (see the module)."""

    def __init__(self, session: aiohttp.ClientSession, urls: Sequence[str], record: Record):
        self.session = session
        self.urls = list(urls)
        self.record = record

    async def once(
        self, operation: str, method: str, url: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, bytes] | None:
        started = time.monotonic()
        at = self.record.now()
        try:
            async with self.session.request(
                method, url, data=None if body is None else orjson.dumps(body), headers=headers
            ) as response:
                payload = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            elapsed = time.monotonic() - started
            self.record.attempts.append(Attempt(at, operation, None, type(exc).__name__, elapsed))
            return None
        elapsed = time.monotonic() - started
        self.record.attempts.append(Attempt(at, operation, response.status, None, elapsed))
        return response.status, payload

    async def call(
        self,
        rng: random.Random,
        operation: str,
        method: str,
        path: str,
        *,
        key: str | None,
        body: Any = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, bytes, int] | None:
        """The final answer and the attempts it took, or None when none came in `ATTEMPTS`."""
        headers = {**bearer(key), "Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        which = rng.randrange(len(self.urls))
        delay = BACKOFF_S[0]
        for attempt in range(1, ATTEMPTS + 1):
            answer = await self.once(operation, method, self.urls[which] + path, body, headers)
            if answer is not None and answer[0] not in RETRIED:
                return answer[0], answer[1], attempt
            which = (which + 1) % len(self.urls)  # the other process, which may be up
            await asyncio.sleep(rng.uniform(0, delay))  # backoff with full jitter
            delay = min(delay * 2, BACKOFF_S[1])
        return None


@dataclass
class Client:
    """One user and its products."""

    number: int
    api: Api
    record: Record
    sources: Sequence[str]
    rng: random.Random
    user_id: str = ""
    key: str = ""
    mine: list[int] = field(default_factory=list)

    def _token(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    async def sign_up(self) -> None:
        token = self._token()
        body = {"username": f"soak{self.number}", "email": f"soak-{token}@example.com"}
        for _ in range(10):  # the stack may be starting up: sign-up is retried as a whole
            answer = await self.api.call(
                self.rng, "sign_up", "POST", "/users", key=None, body=body, idempotency_key=token
            )
            if answer is not None and answer[0] == 201:
                created = orjson.loads(answer[1])
                self.user_id, self.key = created["user_id"], created["api_key"]
                return
        raise RuntimeError(f"client {self.number}: signing up failed: {answer}")

    def _images(self, most: int = 3) -> list[str]:
        picked = [self.rng.choice(self.sources) for _ in range(self.rng.randint(0, most))]
        return list(dict.fromkeys(picked))

    def _live(self) -> list[int]:
        return [p for p in self.mine if not self.record.expected[p].deleted]

    async def step(self) -> None:
        operation = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        live = self._live()
        if operation != "list" and operation != "create" and not live:
            operation = "create"
        if operation == "create":
            await self.create()
        elif operation == "list":
            await self.api.call(
                self.rng,
                "list",
                "GET",
                f"/products?user_id={self.user_id}&limit=20",
                key=self.key,
            )
        else:
            target = self.rng.choice(live)
            await getattr(self, operation)(target)

    def _unexpected(self, what: str, answer: tuple[int, bytes, int]) -> None:
        self.record.unexpected.append(
            f"client {self.number} {what} → {answer[0]} {answer[1][:200].decode(errors='replace')}"
        )

    async def create(self) -> None:
        token = self._token()
        name, price, images = (
            f"soak {self.number}-{len(self.mine)}",
            round(self.rng.uniform(1, 500), 2),
            self._images(),
        )
        body = {
            "product_name": name,
            "product_description": token,  # the key: the database tells what each create made
            "product_price": price,
            "product_images": images,
        }
        answer = await self.api.call(
            self.rng, "create", "POST", "/products", key=self.key, body=body, idempotency_key=token
        )
        if answer is None:
            self.record.creations.append(Creation(token, None))
            return
        if answer[0] != 201:
            self._unexpected("create", answer)
            self.record.creations.append(Creation(token, None))
            return
        product_id = int(orjson.loads(answer[1])["product_id"])
        self.record.creations.append(Creation(token, product_id))
        self.record.expected[product_id] = Expected(product_id, name, price, images)
        self.mine.append(product_id)

    async def patch(self, product_id: int) -> None:
        seen = self.record.expected[product_id]
        body: dict[str, Any] = {}
        if self.rng.random() < 0.7:
            images = list(seen.images)
            roll = self.rng.random()
            if roll < 0.4 or not images:
                images.append(self.rng.choice(self.sources))
            elif roll < 0.7:
                images.pop(self.rng.randrange(len(images)))
            else:
                images = self._images()
            body["product_images"] = list(dict.fromkeys(images))[:4]
        if self.rng.random() < 0.5 or not body:
            body["product_name"] = f"soak {self.number} renamed {self.rng.randrange(10_000)}"
        if self.rng.random() < 0.3:
            body["product_price"] = round(self.rng.uniform(1, 500), 2)
        answer = await self.api.call(
            self.rng, "patch", "PATCH", f"/products/{product_id}", key=self.key, body=body
        )
        if answer is None:
            seen.certain = False
            return
        if answer[0] == 200:
            product = orjson.loads(answer[1])
            seen.name = product["product_name"]
            seen.price = product["product_price"]
            seen.images = product["product_images"]
        elif not (answer[0] == 404 and not seen.certain):
            self._unexpected(f"PATCH product {product_id}", answer)

    async def delete(self, product_id: int) -> None:
        seen = self.record.expected[product_id]
        answer = await self.api.call(
            self.rng, "delete", "DELETE", f"/products/{product_id}", key=self.key
        )
        seen.deleted = True
        if answer is None:
            seen.certain = False
        elif answer[0] == 204 or (answer[0] == 404 and (answer[2] > 1 or not seen.certain)):
            seen.certain = True  # gone, whatever came before: nothing brings it back
        else:
            self._unexpected(f"DELETE product {product_id}", answer)

    async def reprocess(self, product_id: int) -> None:
        seen = self.record.expected[product_id]
        answer = await self.api.call(
            self.rng, "reprocess", "POST", f"/products/{product_id}/reprocess", key=self.key
        )
        if answer is not None and answer[0] != 202 and not (answer[0] == 404 and not seen.certain):
            self._unexpected(f"reprocess product {product_id}", answer)

    async def get(self, product_id: int) -> None:
        seen = self.record.expected[product_id]
        answer = await self.api.call(
            self.rng, "get", "GET", f"/products/{product_id}", key=self.key
        )
        if answer is None or not seen.certain:
            return
        if answer[0] != 200:
            self._unexpected(f"GET product {product_id}", answer)
            return
        product = orjson.loads(answer[1])
        if (product["product_name"], product["product_images"]) != (seen.name, seen.images):
            # Read your writes: an answered change is what every later read shows.
            self.record.stale_reads.append(
                f"client {self.number} GET {product_id} at {self.record.now():.1f} s: "
                f"{product['product_name']!r} {product['product_images']} after "
                f"{seen.name!r} {seen.images}"
            )


async def run_clients(
    clients: Sequence[Client], *, rate_per_s: float, duration_s: float, stop: asyncio.Event
) -> None:
    """Each client runs its operations one at a time, paced so that all together start about
    `rate_per_s` a second, until `duration_s` has passed (or `stop` is set)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + duration_s
    interval = len(clients) / rate_per_s

    async def drive(client: Client) -> None:
        next_start = loop.time() + client.rng.uniform(0, interval)
        while not stop.is_set():
            now = loop.time()
            if next_start > now:
                # Pacing: the next operation's slot, or the end of the run if that comes first.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(next_start, end) - now)
                continue
            if now >= end:
                return
            await client.step()
            next_start = max(next_start + interval, loop.time() - interval)

    await asyncio.gather(*(drive(client) for client in clients))
