"""The server of the Redis-client benchmark (bench/test_bench_redis_clients.py): bare aiohttp on
uvloop, as bench/floor_server.py, whose one route does one Redis GET with one candidate client.

    python -m bench.redis_client_server --candidate NAME --port P --redis-url URL
        [--host 127.0.0.1] [--key-prefix PREFIX] [--body-bytes N]

It runs under bench/.venv-redis (REQUIREMENTS), so that no candidate becomes a dependency of the
project; the test imports this module from the project's interpreter for CANDIDATES and
value_of() only, which is why the clients are imported inside the functions that build them.

Routes:

- ``GET /products/{id}``: the value of PREFIX + id, one GET (or the product's coalescing into one
  MGET, catalogue/coalesced_get.py imported from the repository), answered as it is; 404 when the
  key is missing (wrk counts it as an error, so a run of only 200s is a run of only Redis hits).
  For ``floor``: value_of(N) with no Redis call at all, the same code otherwise.
- ``GET /about``: JSON of what really runs (client versions, pool, parser class, coalescing);
  the test checks it, because a missing hiredis would silently give redis-py's Python parser.
- ``GET /stats``: JSON ``{"commands": C, "keys": K}`` of the coalesced candidates' Redis commands
  so far (K / C is the mean batch); zeros for the others, which send one GET per request.

Readiness: /about answers 200 (for a client, after a first GET went through). Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bench.reference_server import serve

# bench/.venv-redis's packages: aiohttp, uvloop and orjson as requirements.txt pins them (the
# framework under the clients must be the product's), then the candidates.
REQUIREMENTS = (
    "aiohttp==3.14.5",
    "uvloop==0.23.0",
    "orjson==3.13.0",
    "redis==8.1.0",
    "hiredis==3.5.0",
    "coredis==6.9.0",
    "valkey-glide==2.5.3",
)
DEFAULT_BODY_BYTES = 300
DEFAULT_KEY_PREFIX = "bench:redis_clients:"
TIMEOUT_S = 0.5  # the product's (catalogue.cache.connect)
JSON = "application/json"


@dataclass(frozen=True)
class Candidate:
    name: str
    label: str
    client: str  # "none", "redis-py", "coredis", "valkey-glide"
    pool: str = ""  # redis-py: "plain" (ConnectionPool) or "blocking" (BlockingConnectionPool)
    hiredis: bool = False  # redis-py: hiredis's parser instead of redis-py's Python one
    coalesced: bool = False  # the product's CoalescedGet over the client


# Coalescing is measured over the product's client as it is (blocking pool, Python parser), the
# same with hiredis (the dependency in question), the plain pool with hiredis, and glide: the
# product's configuration, the one change it could make cheaply, and the other library.
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("floor", "floor: same server, no Redis call", "none"),
    Candidate("rp_plain_py", "redis-py ConnectionPool, Python parser", "redis-py", "plain"),
    Candidate("rp_plain_hi", "redis-py ConnectionPool, hiredis", "redis-py", "plain", True),
    Candidate(
        "rp_block_py", "redis-py BlockingConnectionPool, Python parser", "redis-py", "blocking"
    ),
    Candidate(
        "rp_block_hi", "redis-py BlockingConnectionPool, hiredis", "redis-py", "blocking", True
    ),
    Candidate("coredis", "coredis", "coredis"),
    Candidate("glide", "valkey-glide", "valkey-glide"),
    Candidate(
        "co_rp_block_py",
        "coalesced MGET, redis-py BlockingConnectionPool, Python parser (the product today)",
        "redis-py",
        "blocking",
        coalesced=True,
    ),
    Candidate(
        "co_rp_block_hi",
        "coalesced MGET, redis-py BlockingConnectionPool, hiredis",
        "redis-py",
        "blocking",
        True,
        True,
    ),
    Candidate(
        "co_rp_plain_hi",
        "coalesced MGET, redis-py ConnectionPool, hiredis",
        "redis-py",
        "plain",
        True,
        True,
    ),
    Candidate("co_glide", "coalesced MGET, valkey-glide", "valkey-glide", coalesced=True),
)
BY_NAME = {candidate.name: candidate for candidate in CANDIDATES}


def value_of(size: int) -> bytes:
    """The cached value: a JSON object of exactly `size` bytes (at least 10), as a product is."""
    frame = b'{"pad":"%s"}'
    if size < len(frame) - 2:
        raise ValueError(f"a JSON body of {size} bytes is too small (at least 10)")
    return frame % (b"x" * (size - (len(frame) - 2)))


class Counted:
    """A client whose GETs and MGETs are counted (commands, keys), for the mean batch of the
    coalesced candidates. Plain methods returning the client's awaitable: no coroutine frame of
    its own, a few hundred nanoseconds per batch."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.commands = 0
        self.keys = 0

    def get(self, key: str) -> Awaitable[Any]:
        self.commands += 1
        self.keys += 1
        return self.client.get(key)

    def mget(self, keys: list[str]) -> Awaitable[Any]:
        self.commands += 1
        self.keys += len(keys)
        return self.client.mget(keys)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _redis_py(url: str, candidate: Candidate) -> tuple[Any, dict[str, Any]]:
    """redis-py's asyncio client. The blocking pool is the product's own (catalogue.cache.connect);
    the plain one takes that pool's connection settings and size, so only the class differs."""
    if not candidate.hiredis:
        # As if hiredis were not installed: redis-py then picks its Python parser itself.
        sys.modules["hiredis"] = None  # type: ignore[assignment]
    import redis.asyncio as redis
    from redis.asyncio.connection import DefaultParser
    from redis.utils import HIREDIS_AVAILABLE

    from catalogue.cache import connect

    client = connect(url, timeout_s=TIMEOUT_S)
    if candidate.pool == "plain":
        product_pool = client.connection_pool
        pool = redis.ConnectionPool(
            max_connections=product_pool.max_connections, **product_pool.connection_kwargs
        )
        client = redis.Redis.from_pool(pool)
    about = {
        "client": f"redis-py {_version('redis')}",
        "pool": type(client.connection_pool).__name__,
        "parser": client.connection_pool.connection_kwargs.get(
            "parser_class", DefaultParser
        ).__name__,
        "hiredis_available": HIREDIS_AVAILABLE,
        "hiredis": _version("hiredis") if HIREDIS_AVAILABLE else "not used",
    }
    return client, about


def _coredis(url: str) -> tuple[Any, dict[str, Any]]:
    import coredis

    client = coredis.Redis.from_url(
        url, stream_timeout=TIMEOUT_S, connect_timeout=TIMEOUT_S, pool_timeout=TIMEOUT_S
    )
    about = {
        "client": f"coredis {_version('coredis')}",
        "pool": type(client.connection_pool).__name__,
        "parser": "coredis's own",
    }
    return client, about


async def _glide(url: str) -> tuple[Any, dict[str, Any]]:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress

    parts = urlsplit(url)
    config = GlideClientConfiguration(
        [NodeAddress(parts.hostname or "127.0.0.1", parts.port or 6379)],
        database_id=int(parts.path.strip("/") or 0),
        request_timeout=int(TIMEOUT_S * 1000),
    )
    client = await GlideClient.create(config)
    about = {
        "client": f"valkey-glide {_version('valkey-glide')}",
        "pool": "one multiplexed connection (Rust core)",
        "parser": "glide's Rust core",
    }
    return client, about


async def _close(client: Any) -> None:
    close = getattr(client, "aclose", None) or client.close
    await close()


def make_app(candidate: Candidate, url: str, key_prefix: str, body_bytes: int) -> web.Application:
    app = web.Application()
    headers = {"Content-Type": JSON}
    about: dict[str, Any] = {
        "candidate": candidate.name,
        "coalesced": candidate.coalesced,
        "python": sys.version.split()[0],
        "aiohttp": _version("aiohttp"),
        "uvloop": _version("uvloop"),
    }
    counted: Counted | None = None
    get: Callable[[str], Awaitable[Any]] | None = None

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        nonlocal counted, get
        if candidate.client == "redis-py":
            client, details = _redis_py(url, candidate)
        elif candidate.client == "coredis":
            client, details = _coredis(url)
            await client.__aenter__()  # coredis 6 must be entered before any command
        else:
            client, details = await _glide(url)
        about.update(details)
        if candidate.coalesced:
            from catalogue.coalesced_get import CoalescedGet

            counted = Counted(client)
            get = CoalescedGet(counted).get  # type: ignore[arg-type]  # get and mget suffice
        else:
            get = client.get
        await get(key_prefix + "1")  # connected and answering before /about says ready
        yield
        if candidate.client == "coredis":
            await client.__aexit__(None, None, None)
        else:
            await _close(client)

    if candidate.client != "none":
        app.cleanup_ctx.append(client_ctx)

    body = value_of(body_bytes)

    async def floor(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    async def product(request: web.Request) -> web.Response:
        value = await get(key_prefix + request.match_info["id"])  # type: ignore[misc]
        if value is None:
            return web.Response(status=404)
        return web.Response(body=value, headers=headers)

    async def about_route(request: web.Request) -> web.Response:
        return web.json_response(about)

    async def stats(request: web.Request) -> web.Response:
        found = counted or Counted(None)
        return web.json_response({"commands": found.commands, "keys": found.keys})

    app.router.add_get("/products/{id}", floor if candidate.client == "none" else product)
    app.router.add_get("/about", about_route)
    app.router.add_get("/stats", stats)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--candidate", required=True, choices=sorted(BY_NAME))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--key-prefix", default=DEFAULT_KEY_PREFIX)
    parser.add_argument("--body-bytes", type=int, default=DEFAULT_BODY_BYTES)
    args = parser.parse_args(argv)
    app = make_app(BY_NAME[args.candidate], args.redis_url, args.key_prefix, args.body_bytes)
    serve(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
