"""The floor of the hot-path benchmark (bench/test_bench_hot_path.py): bare aiohttp on uvloop, as
run_api.py runs the API (one process, no access log), with none of the API's code.

    python -m bench.floor_server --port P [--host 127.0.0.1] [--body-bytes N] [--postgres-url URL]

Routes:

- ``GET /products/{id}``: a fixed JSON body of N bytes (the size of a real cached product, which
  the benchmark measures and passes in), answered whatever the id: what a cached GET costs with
  nothing but the framework, the event loop and the kernel's loopback;
- ``GET /products/{id}/row`` (only with ``--postgres-url``, default $POSTGRES_URL): one asyncpg
  ``fetchrow`` of that product's row, with the API's own query and pool settings (no reset
  round trip on release, a custom plan each run), then the same fixed body (the row is fetched,
  not rendered; 404 when there is no such row): the bare-asyncpg baseline of the API's miss path.
  Its path lets bench/wrk_report.lua's ``get ID...`` mode rotate over ids (``get 7/row 8/row``).

Readiness: the fixed route answers 200. It stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from bench.reference_server import serve
from db.products import COLUMNS

JSON = "application/json"
# The API's read of one product (db.products.get_product).
ROW_QUERY = f"SELECT {COLUMNS} FROM products WHERE id = $1"
POOL_MAX_SIZE = 32  # the API's DB_POOL_MAX_SIZE default: at least wrk's connections
DEFAULT_BODY_BYTES = 400
_FRAME = b'{"pad":"%s"}'  # 10 bytes around the padding


def fixed_body(size: int) -> bytes:
    """A JSON object of exactly `size` bytes (at least 10)."""
    if size < len(_FRAME) - 2:
        raise ValueError(f"a JSON body of {size} bytes is too small (at least 10)")
    body = _FRAME % (b"x" * (size - (len(_FRAME) - 2)))
    assert len(body) == size
    return body


async def _no_reset(conn: asyncpg.Connection) -> None:
    """As the API's pool (db/pool.py): nothing to reset on release, so no round trip."""


def make_app(body: bytes, postgres_url: str | None) -> web.Application:
    headers = {"Content-Type": JSON}

    async def fixed(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/products/{id}", fixed)
    if postgres_url:
        pool_key = web.AppKey("pool", asyncpg.Pool)

        async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
            app[pool_key] = await asyncpg.create_pool(
                postgres_url,
                min_size=2,
                max_size=POOL_MAX_SIZE,
                reset=_no_reset,
                server_settings={"plan_cache_mode": "force_custom_plan"},
            )
            yield
            await app[pool_key].close()

        app.cleanup_ctx.append(pool_ctx)

        async def row(request: web.Request) -> web.Response:
            product_id = int(request.match_info["id"])
            async with request.app[pool_key].acquire() as conn:
                found = await conn.fetchrow(ROW_QUERY, product_id)
            if found is None:
                return web.Response(status=404)
            return web.Response(body=body, headers=headers)

        app.router.add_get("/products/{id}/row", row)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--body-bytes",
        type=int,
        default=DEFAULT_BODY_BYTES,
        help="size of the fixed JSON body (a real cached product's)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POSTGRES_URL", ""),
        help="database of the /products/{id}/row route (default $POSTGRES_URL; empty: no route)",
    )
    args = parser.parse_args(argv)
    try:
        body = fixed_body(args.body_bytes)
    except ValueError as exc:
        parser.error(str(exc))
    serve(make_app(body, args.postgres_url or None), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
