"""HTTP load generator for the product-catalogue API; point it at any deployment.

The command is bench/load.py (this module is its implementation, kept in testkit/ so the unit
tests can import it: tests and benchmarks share only testkit/):

    python bench/load.py --url http://host:8080 --scenario get-hit --concurrency 64 --duration 30s
    python -m bench.load --url http://127.0.0.1:8080 --scenario mixed --requests 10000 --json out.json

Scenarios (the script seeds its own user and products through the API first):

  healthz   GET /healthz: the baseline the other scenarios are compared to.
  get-hit   seed K products (--seed-products, default 100), GET each once to warm the cache,
            then GET random ones among them.
  get-miss  seed K products (default: --requests if given, capped at 100 000, else 5 000) and GET
            them in sequence without warming. Each id is requested once until the set is used
            up; after that ids are reused (most likely cache hits) and the summary says how many.
            Only a cold *response cache* is guaranteed: if the server caches on create, or the
            database has the rows in memory, "miss" is not a cold read; the X-Cache counts show
            what the server actually did.
  list      GET /products?user_id=…&price_range=…&product_name=…&limit=… with varying filters.
  create    POST /products with random names and prices and no images (so no image jobs),
            unless --with-images URL is given.
  mixed     80 % get-hit, 15 % list, 5 % create.

Access (the API's AUTH_MODE=api_key, its default): POST /users answers the new user's API key
(`api_key`), and every later request of the run sends it as `Authorization: Bearer <key>`; an
API with the open contract (AUTH_MODE=off) answers none, and requests then carry no key. A user's
key is limited like any client's (RATE_LIMIT_READS, RATE_LIMIT_WRITES): seeding waits out its
429s (as Retry-After says), and in the measured phase they are counted as status 429 and the
summary warns that the run measured the limiter. --api-key KEY (or the
LOAD_API_KEY variable, which keeps it out of the process list) sends that key instead, from the
sign-up on: meant for an admin key (ADMIN_API_KEYS), which may sign up where USER_SIGNUP=admin,
acts for the run's user and is exempt from the limits, so the run measures the server itself.

Without --rate the workers run closed loop (each sends its next request as soon as the previous
one answered); --rate R paces request starts across all workers to at most R per second. Latency
is measured from the moment a request is sent, so under overload it is service time and does not
include the time a request waited for its pacing slot (no coordinated-omission correction).
Latency percentiles cover requests that got an HTTP response (including 4xx/5xx); requests that
failed with an exception (refused, reset, timeout) are only counted, by exception type.

The run ends at --duration (default 30s) or after --requests, whichever comes first; in-flight
requests are then allowed to finish (bounded by --timeout). Ctrl-C stops at once and still
prints the summary (exit status 130). Exit status 1 means seeding failed or --json could not be
written; 2 means bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import secrets
import signal
import sys
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit

import aiohttp

SCENARIOS = ("get-hit", "get-miss", "list", "create", "mixed", "healthz")
DEFAULT_DURATION_S = 30.0
DEFAULT_CONCURRENCY = 64
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_SEED_PRODUCTS = 100
DEFAULT_GET_MISS_SEED = 5_000
# Seeding goes through the API one product per request; beyond this it takes longer than most
# runs it prepares, so larger get-miss runs reuse ids (and say so).
MAX_GET_MISS_SEED = 100_000
CLIENT_BOUND_CPU_FRACTION = 0.90
PROGRESS_INTERVAL_S = 1.0

# Cumulative thresholds over random.random(): 80 % get-hit, 15 % list, 5 % create.
MIXED_GET_HIT_BELOW = 0.80
MIXED_LIST_BELOW = 0.95

# Seeded prices are drawn from 10-50 and names contain "prod", so the list filters match rows.
SEED_PRICE_RANGE = (10.0, 50.0)
LIST_PRICE_RANGES = ("10-50", "10-30", "20-50", "0-100")
LIST_NAME_FILTERS = ("prod", "prod load", "load")
LIST_LIMITS = (10, 20, 50)
CREATE_WORDS = ("red", "blue", "small", "large", "steel", "wooden", "classic", "new")

PERCENTILES = (50.0, 90.0, 99.0)

API_KEY_VARIABLE = "LOAD_API_KEY"  # --api-key's default
TOO_MANY_REQUESTS = 429
# Seeding waits out a rate limit's refusals (Retry-After, at most this long each) instead of
# failing: a user's key writes 20 products a second by default.
MAX_SEED_RETRY_AFTER_S = 60.0


class SeedError(RuntimeError):
    """Preparing the run's data through the API failed; the message says which call and why."""


class Interrupted(RuntimeError):
    """Ctrl-C arrived before the measured phase started."""


# -- parsing --------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from `30s`, `2m`, `500ms`, `1h` or plain seconds (`1.5`); must be positive.

    The regex admits only plain decimals, which keeps out `inf`, `nan`, exponents and signs.
    """
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 2m, 500ms or plain seconds")
    seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return seconds


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of ascending data: a value that was actually observed.

    Nearest rank (not interpolation) so p99 of a small run is a real request's latency, the way
    wrk and HdrHistogram report it. Returns None for no data.
    """
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile must be within 0-100, got {pct}")
    count = len(sorted_values)
    if count == 0:
        return None
    # The epsilon absorbs float noise such as 99.9 * 1000 / 100 == 999.0000000000001.
    rank = max(1, math.ceil(pct * count / 100.0 - 1e-9))
    return sorted_values[rank - 1]


def seed_count(scenario: str, seed_products: int | None, requests: int | None) -> int:
    """How many products to create before the measured phase."""
    if scenario in ("healthz", "create"):
        return 0
    if seed_products is not None:
        return seed_products
    if scenario == "get-miss":
        return min(requests, MAX_GET_MISS_SEED) if requests else DEFAULT_GET_MISS_SEED
    return DEFAULT_SEED_PRODUCTS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < math.inf:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _url_arg(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"need an http(s) URL with a host, got {text!r}")
    if parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"the base URL must not have a query: {text!r}")
    # A path prefix (API behind a reverse proxy) is kept; requests append /products etc.
    return text.rstrip("/")


@dataclass(frozen=True)
class Config:
    url: str
    scenario: str
    concurrency: int = DEFAULT_CONCURRENCY
    duration: float = DEFAULT_DURATION_S
    requests: int | None = None
    rate: float | None = None
    json_path: str | None = None
    seed_products: int | None = None
    quiet: bool = False
    timeout: float = DEFAULT_TIMEOUT_S
    with_images: str | None = None
    random_seed: int | None = None
    api_key: str | None = None  # sent instead of the run's user's own key (an admin key)


def bearer(api_key: str | None) -> dict[str, str]:
    """The header that sends an API key; none without a key."""
    return {} if api_key is None else {"Authorization": f"Bearer {api_key}"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/load.py",
        description="Load-test a product-catalogue API deployment.",
        epilog="Durations accept 30s, 2m, 500ms, 1h or plain seconds.",
    )
    parser.add_argument("--url", required=True, type=_url_arg, help="base URL of the API")
    parser.add_argument("--scenario", required=True, choices=SCENARIOS)
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        help=f"workers and connection-pool size (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--duration",
        type=_duration_arg,
        default=DEFAULT_DURATION_S,
        help="measured-phase length; the run also ends after --requests (default 30s)",
    )
    parser.add_argument("--requests", type=_positive_int, help="stop after this many requests")
    parser.add_argument(
        "--rate", type=_positive_float, help="cap on total requests per second (default: none)"
    )
    parser.add_argument("--json", dest="json_path", metavar="FILE", help="also write summary")
    parser.add_argument(
        "--seed-products",
        type=_positive_int,
        metavar="N",
        help="products to seed (default 100; get-miss: --requests, else 5000)",
    )
    parser.add_argument(
        "--timeout",
        type=_duration_arg,
        default=DEFAULT_TIMEOUT_S,
        help="per-request timeout (default 10s)",
    )
    parser.add_argument(
        "--with-images",
        metavar="URL",
        help="image URL put in created products (create/mixed), which starts image jobs",
    )
    parser.add_argument(
        "--random-seed",
        type=int,
        metavar="N",
        help="seed of the request mix, prices and filters, to repeat a run exactly",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get(API_KEY_VARIABLE) or None,
        help="bearer key for every request, the sign-up included, instead of the run's user's "
        "own key: an admin key (ADMIN_API_KEYS) is not rate-limited and may sign up where "
        f"USER_SIGNUP=admin (default: ${API_KEY_VARIABLE})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress or info on stderr")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Config:
    ns = build_parser().parse_args(argv)
    return Config(
        url=ns.url,
        scenario=ns.scenario,
        concurrency=ns.concurrency,
        duration=ns.duration,
        requests=ns.requests,
        rate=ns.rate,
        json_path=ns.json_path,
        seed_products=ns.seed_products,
        quiet=ns.quiet,
        timeout=ns.timeout,
        with_images=ns.with_images,
        random_seed=ns.random_seed,
        api_key=ns.api_key,
    )


# -- request builders -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    kind: str  # the scenario it belongs to, so `mixed` can report its actual split
    method: str
    path: str  # path and query, appended to the base URL
    body: dict[str, Any] | None = None


@dataclass
class Context:
    """What the seeding phase produced, shared read-only by the request builders."""

    tag: str  # unique per run, so names and emails never collide with earlier runs
    user_id: str | None = None
    product_ids: list[str] = field(default_factory=list)
    product_paths: list[str] = field(default_factory=list)
    image_url: str | None = None
    # Sent with every request: the bearer of the run's user's key, --api-key's, or none.
    headers: dict[str, str] = field(default_factory=dict)


def product_body(
    user_id: str, name: str, price: float, images: list[str], description: str
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "product_name": name,
        "product_description": description,
        "product_images": images,
        "product_price": price,
    }


def get_hit_request(ctx: Context, rng: random.Random, n: int) -> Request:
    return Request("get-hit", "GET", rng.choice(ctx.product_paths))


def get_miss_request(ctx: Context, rng: random.Random, n: int) -> Request:
    # In sequence, so request n is the first for its id until n wraps past the seeded set.
    return Request("get-miss", "GET", ctx.product_paths[n % len(ctx.product_paths)])


def list_request(ctx: Context, rng: random.Random, n: int) -> Request:
    query = urlencode(
        {
            "user_id": ctx.user_id,
            "price_range": rng.choice(LIST_PRICE_RANGES),
            "product_name": rng.choice(LIST_NAME_FILTERS),
            "limit": rng.choice(LIST_LIMITS),
        }
    )
    return Request("list", "GET", f"/products?{query}")


def create_request(ctx: Context, rng: random.Random, n: int) -> Request:
    assert ctx.user_id is not None
    body = product_body(
        ctx.user_id,
        name=f"{rng.choice(CREATE_WORDS)} prod load {ctx.tag}-{n}",
        price=round(rng.uniform(1.0, 100.0), 2),
        images=[ctx.image_url] if ctx.image_url else [],
        description="created by bench/load.py",
    )
    return Request("create", "POST", "/products", body)


def healthz_request(ctx: Context, rng: random.Random, n: int) -> Request:
    return Request("healthz", "GET", "/healthz")


def mixed_request(ctx: Context, rng: random.Random, n: int) -> Request:
    draw = rng.random()
    if draw < MIXED_GET_HIT_BELOW:
        return get_hit_request(ctx, rng, n)
    if draw < MIXED_LIST_BELOW:
        return list_request(ctx, rng, n)
    return create_request(ctx, rng, n)


Builder = Callable[[Context, random.Random, int], Request]

BUILDERS: dict[str, Builder] = {
    "get-hit": get_hit_request,
    "get-miss": get_miss_request,
    "list": list_request,
    "create": create_request,
    "healthz": healthz_request,
    "mixed": mixed_request,
}


# -- statistics -----------------------------------------------------------------------------------


class Stats:
    """Per-request records kept cheap: one float append and a few counter bumps.

    Percentiles are computed once at the end, so the hot path never sorts or allocates lists.
    """

    __slots__ = ("exceptions", "kinds", "latencies", "statuses", "x_cache")

    def __init__(self) -> None:
        self.latencies = array("d")  # seconds, one per HTTP response
        self.statuses: Counter[int] = Counter()
        self.exceptions: Counter[str] = Counter()
        self.x_cache: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()

    def record_response(self, kind: str, status: int, latency: float, x_cache: str | None) -> None:
        self.latencies.append(latency)
        self.statuses[status] += 1
        self.kinds[kind] += 1
        if x_cache is not None:
            self.x_cache[x_cache] += 1

    def record_exception(self, kind: str, exc_name: str) -> None:
        self.exceptions[exc_name] += 1
        self.kinds[kind] += 1

    @property
    def done(self) -> int:
        return len(self.latencies) + self.exceptions.total()

    @property
    def errors(self) -> int:
        failed = sum(count for status, count in self.statuses.items() if status >= 400)
        return failed + self.exceptions.total()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def build_summary(
    stats: Stats,
    *,
    scenario: str,
    url: str,
    concurrency: int,
    rate_limit: float | None,
    elapsed_s: float,
    stop_reason: str,
    cpu_s: float,
    seeded_products: int = 0,
    ids_reused: int = 0,
) -> dict[str, Any]:
    """The run's result as plain JSON-able data; the table and --json both render this."""
    ordered = sorted(stats.latencies)
    latency_ms: dict[str, float | None] = {
        f"p{pct:g}": _ms(percentile(ordered, pct)) for pct in PERCENTILES
    }
    latency_ms["max"] = _ms(ordered[-1]) if ordered else None
    latency_ms["mean"] = _ms(math.fsum(ordered) / len(ordered)) if ordered else None

    cpu_fraction = cpu_s / elapsed_s if elapsed_s > 0 else 0.0
    client_bound = cpu_fraction >= CLIENT_BOUND_CPU_FRACTION
    warnings: list[str] = []
    if client_bound:
        wrk_path = "/healthz" if scenario == "healthz" else "/products/<id>"
        warnings.append(
            f"the load generator used {cpu_fraction:.0%} of one CPU core: results are "
            "client-bound (the server may be faster than this shows); run several instances "
            f"or use wrk, e.g. wrk -t4 -c{concurrency} -d30s {url}{wrk_path}"
        )
    if ids_reused:
        warnings.append(
            f"{ids_reused} get-miss requests reused an id already requested (probably cache "
            "hits); seed more with --seed-products"
        )
    refused = stats.statuses.get(TOO_MANY_REQUESTS, 0)
    if refused:
        warnings.append(
            f"{refused} requests ({refused / max(stats.done, 1):.0%}) were refused by the "
            "server's rate limit (429): the run measured the limiter, not the server; raise "
            "RATE_LIMIT_READS / RATE_LIMIT_WRITES there, or send an admin key (--api-key)"
        )

    requests = stats.done
    return {
        "scenario": scenario,
        "url": url,
        "concurrency": concurrency,
        "rate_limit": rate_limit,
        "stop_reason": stop_reason,
        "elapsed_s": round(elapsed_s, 3),
        "requests": requests,
        "ok": sum(count for status, count in stats.statuses.items() if status < 400),
        "errors": stats.errors,
        "errors_by_status": {
            str(status): count for status, count in sorted(stats.statuses.items()) if status >= 400
        },
        "errors_by_exception": dict(sorted(stats.exceptions.items())),
        "status_counts": {str(status): count for status, count in sorted(stats.statuses.items())},
        "rate_rps": round(requests / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "latency_ms": latency_ms,
        "x_cache": dict(sorted(stats.x_cache.items())),
        "by_kind": dict(sorted(stats.kinds.items())),
        "seeded_products": seeded_products,
        "ids_reused": ids_reused,
        "client_cpu_fraction": round(cpu_fraction, 3),
        "client_bound": client_bound,
        "warnings": warnings,
    }


def _counts(mapping: dict[str, int]) -> str:
    return "  ".join(f"{key} {value}" for key, value in mapping.items()) or "-"


def render_summary(summary: dict[str, Any]) -> str:
    """A two-column text table of `build_summary` output."""
    lat = summary["latency_ms"]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    pacing = "closed loop" if summary["rate_limit"] is None else f"<= {summary['rate_limit']:g}/s"
    error_parts = [f"status {k}: {v}" for k, v in summary["errors_by_status"].items()]
    error_parts += [f"{k}: {v}" for k, v in summary["errors_by_exception"].items()]
    errors = str(summary["errors"])
    if error_parts:
        errors += "  (" + "; ".join(error_parts) + ")"
    rows = [
        ("scenario", f"{summary['scenario']}  ({summary['url']})"),
        ("load", f"concurrency {summary['concurrency']}, {pacing}"),
        (
            "requests",
            f"{summary['requests']} in {summary['elapsed_s']:.2f} s"
            f"  (stopped: {summary['stop_reason']})",
        ),
        ("rate", f"{summary['rate_rps']:.1f} req/s"),
        ("errors", errors),
        (
            "latency ms",
            "  ".join(f"{key} {fmt(lat[key])}" for key in ("p50", "p90", "p99", "max")),
        ),
        ("x-cache", _counts(summary["x_cache"])),
    ]
    if len(summary["by_kind"]) > 1:
        rows.append(("mix", _counts(summary["by_kind"])))
    if summary["seeded_products"]:
        rows.append(("seeded", f"{summary['seeded_products']} products"))
    rows.append(("client cpu", f"{summary['client_cpu_fraction']:.0%} of one core"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# -- seeding --------------------------------------------------------------------------------------


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    stop: asyncio.Event | None = None,
    on_limited: Callable[[], None] | None = None,
) -> tuple[int, bytes]:
    """One seeding request. With ``stop``, a 429 is waited out (its Retry-After, bounded) and
    the request sent again, until it passes or ``stop`` is set (Interrupted)."""
    while True:
        try:
            async with session.request(method, url, json=body, headers=headers) as resp:
                status, payload = resp.status, await resp.read()
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SeedError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        if status != TOO_MANY_REQUESTS or stop is None:
            return status, payload
        if on_limited is not None:
            on_limited()
        try:
            delay = min(MAX_SEED_RETRY_AFTER_S, max(0.0, float(retry_after or 1)))
        except ValueError:
            delay = 1.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            raise Interrupted("interrupted while seeding")


def _json_field(method: str, url: str, status: int, payload: bytes, key: str) -> str:
    if not 200 <= status < 300:
        snippet = payload[:300].decode("utf-8", "replace")
        raise SeedError(f"{method} {url} -> HTTP {status}: {snippet}")
    try:
        value = json.loads(payload)[key]
    except (ValueError, KeyError, TypeError):
        snippet = payload[:300].decode("utf-8", "replace")
        raise SeedError(f"{method} {url} -> no {key!r} in response: {snippet}") from None
    # The API sends ids as strings of digits; str() also copes with a server sending numbers.
    return str(value)


def _user_key(payload: bytes) -> str | None:
    """The API key a 2xx POST /users answered, or None (an API without the access layer)."""
    try:
        value = json.loads(payload).get("api_key")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


async def _pool(
    count: int, concurrency: int, job: Callable[[int], Awaitable[None]], stop: asyncio.Event
) -> None:
    """Run job(0..count-1) on a fixed set of workers, so 100 000 seeds are not 100 000 tasks."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            if stop.is_set():
                raise Interrupted("interrupted while seeding")
            index = next_index
            next_index += 1
            await job(index)

    # TaskGroup cancels the other workers as soon as one fails.
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, count)):
                group.create_task(worker())
    except* (SeedError, Interrupted) as failures:
        raise failures.exceptions[0] from None


async def prepare(
    session: aiohttp.ClientSession,
    cfg: Config,
    stop: asyncio.Event,
    info: Callable[[str], None],
) -> Context:
    """Create the user and products the scenario needs, and warm the cache for get-hit/mixed."""
    ctx = Context(tag=secrets.token_hex(4), image_url=cfg.with_images, headers=bearer(cfg.api_key))
    if cfg.scenario == "healthz":
        return ctx

    url = f"{cfg.url}/users"
    username = f"load_{ctx.tag}"
    status, payload = await _call(
        session,
        "POST",
        url,
        {"username": username, "email": f"{username}@example.com"},
        ctx.headers,
    )
    ctx.user_id = _json_field("POST", url, status, payload, "user_id")
    if cfg.api_key is None:
        ctx.headers = bearer(_user_key(payload))

    count = seed_count(cfg.scenario, cfg.seed_products, cfg.requests)
    if count == 0:
        return ctx
    info(f"seeding {count} products as user {ctx.user_id} ...")
    ids: list[str | None] = [None] * count
    rng = random.Random(cfg.random_seed)
    products_url = f"{cfg.url}/products"
    told = False

    def limited() -> None:
        nonlocal told
        if not told:
            told = True
            info(
                "seeding is rate-limited (429): waiting as the server asks; an admin key "
                "(--api-key) is not limited"
            )

    async def create(index: int) -> None:
        body = product_body(
            ctx.user_id or "",
            name=f"prod load {ctx.tag} {index}",
            price=round(rng.uniform(*SEED_PRICE_RANGE), 2),
            images=[],  # seeding must not start image jobs that compete with the measurement
            description="seeded by bench/load.py",
        )
        status, payload = await _call(
            session, "POST", products_url, body, ctx.headers, stop=stop, on_limited=limited
        )
        ids[index] = _json_field("POST", products_url, status, payload, "product_id")

    await _pool(count, cfg.concurrency, create, stop)
    ctx.product_ids = [pid for pid in ids if pid is not None]
    ctx.product_paths = [f"/products/{pid}" for pid in ctx.product_ids]

    if cfg.scenario in ("get-hit", "mixed"):
        info(f"warming {count} products ...")
        failed: Counter[int] = Counter()

        async def warm(index: int) -> None:
            status, _ = await _call(
                session,
                "GET",
                cfg.url + ctx.product_paths[index],
                headers=ctx.headers,
                stop=stop,
                on_limited=limited,
            )
            if status != 200:
                failed[status] += 1

        await _pool(count, cfg.concurrency, warm, stop)
        if failed:
            # Not fatal: the measured phase will show the same errors, and the user asked for load.
            info(f"warning: warming GETs failed: {dict(failed)}")
    return ctx


# -- the measured phase ---------------------------------------------------------------------------


class Pacer:
    """Hands out evenly spaced start times for --rate across all workers.

    A slot is never earlier than now, so a stalled server does not cause a catch-up burst; the
    achieved rate then falls below --rate and the summary shows it.
    """

    __slots__ = ("interval", "next_slot")

    def __init__(self, rate: float, start: float) -> None:
        self.interval = 1.0 / rate
        self.next_slot = start

    def reserve(self, now: float) -> float:
        slot = max(self.next_slot, now)
        self.next_slot = slot + self.interval
        return slot


async def _progress(stats: Stats, start: float, stream: TextIO) -> None:
    last_done = 0
    last_time = start
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        now = time.perf_counter()
        done = stats.done
        rate = (done - last_done) / (now - last_time) if now > last_time else 0.0
        last_done, last_time = done, now
        stream.write(
            f"\r\x1b[2K{now - start:7.1f}s  {done:>10} requests  {rate:>9.0f} req/s"
            f"  {stats.errors} errors"
        )
        stream.flush()


async def measure(
    session: aiohttp.ClientSession,
    cfg: Config,
    ctx: Context,
    stop: asyncio.Event,
    progress: TextIO | None,
) -> dict[str, Any]:
    stats = Stats()
    build = BUILDERS[cfg.scenario]
    rng = random.Random(cfg.random_seed)
    perf = time.perf_counter
    base = cfg.url
    headers = ctx.headers
    limit = cfg.requests
    claimed = 0
    reason = "duration"

    cpu_start = time.process_time()
    start = perf()
    deadline = start + cfg.duration
    pacer = Pacer(cfg.rate, start) if cfg.rate else None

    async def worker() -> None:
        nonlocal claimed, reason
        while True:
            if pacer is not None:
                slot = pacer.reserve(perf())
                if slot >= deadline:
                    return
                delay = slot - perf()
                if delay > 0:
                    await asyncio.sleep(delay)
            if perf() >= deadline:
                return
            if limit is not None and claimed >= limit:
                reason = "requests"
                return
            index = claimed
            claimed += 1
            request = build(ctx, rng, index)
            sent = perf()
            try:
                async with session.request(
                    request.method, base + request.path, json=request.body, headers=headers
                ) as resp:
                    await resp.read()
                stats.record_response(
                    request.kind, resp.status, perf() - sent, resp.headers.get("X-Cache")
                )
            except Exception as exc:
                # Anything a request can raise is a result to count, not a reason to stop the run.
                stats.record_exception(request.kind, type(exc).__name__)

    tasks = [asyncio.create_task(worker()) for _ in range(cfg.concurrency)]
    all_done = asyncio.create_task(asyncio.wait(tasks))
    stop_wait = asyncio.create_task(stop.wait())
    ticker = asyncio.create_task(_progress(stats, start, progress)) if progress else None
    try:
        # Workers stop claiming at the deadline; in-flight requests finish within --timeout. The
        # extra bound only matters if something hangs despite the client timeout.
        hard_limit = cfg.duration + cfg.timeout + 5.0
        await asyncio.wait(
            {all_done, stop_wait}, timeout=hard_limit, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        await all_done
        stop_wait.cancel()
        helpers = [stop_wait] if ticker is None else [stop_wait, ticker]
        if ticker is not None:
            ticker.cancel()
        await asyncio.wait(helpers)
        if progress is not None:
            progress.write("\n")
            progress.flush()
    elapsed = perf() - start
    cpu = time.process_time() - cpu_start

    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise RuntimeError("load worker crashed") from task.exception()

    if stop.is_set():
        reason = "interrupted"
    elif any(task.cancelled() for task in tasks):
        reason = "hard-timeout"
    reused = max(0, claimed - len(ctx.product_ids)) if cfg.scenario == "get-miss" else 0
    return build_summary(
        stats,
        scenario=cfg.scenario,
        url=cfg.url,
        concurrency=cfg.concurrency,
        rate_limit=cfg.rate,
        elapsed_s=elapsed,
        stop_reason=reason,
        cpu_s=cpu,
        seeded_products=len(ctx.product_ids),
        ids_reused=reused,
    )


async def run_load(cfg: Config, stop: asyncio.Event | None = None) -> dict[str, Any]:
    """Seed, then measure; returns the summary. Setting `stop` ends the run early (Ctrl-C)."""
    stop = stop or asyncio.Event()

    def info(message: str) -> None:
        if not cfg.quiet:
            print(message, file=sys.stderr, flush=True)

    show_progress = not cfg.quiet and sys.stderr.isatty()
    # One pool sized to the workers: more connections than workers would never be used, fewer
    # would make workers queue inside the client and inflate latency.
    connector = aiohttp.TCPConnector(limit=cfg.concurrency, limit_per_host=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=cfg.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        ctx = await prepare(session, cfg, stop, info)
        limits = [f"{cfg.duration:g}s"] + ([f"{cfg.requests} requests"] if cfg.requests else [])
        info(
            f"running {cfg.scenario} against {cfg.url}: concurrency {cfg.concurrency}, "
            f"until {' or '.join(limits)}"
        )
        return await measure(session, cfg, ctx, stop, sys.stderr if show_progress else None)


def _install_stop_signals(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event
) -> list[tuple[int, Any]]:
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or a platform without loop signal support
        installed.append((sig, previous))
    return installed


def _remove_stop_signals(loop: asyncio.AbstractEventLoop, installed: list[tuple[int, Any]]) -> None:
    for sig, previous in installed:
        loop.remove_signal_handler(sig)
        # remove_signal_handler resets to the default; put back whatever was there (asyncio.run
        # has its own SIGINT handler, pytest may have one).
        if previous is not None:
            signal.signal(sig, previous)


def write_json(path: str, summary: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(summary, out, indent=2)
        out.write("\n")


async def amain(cfg: Config) -> int:
    """Run, print the table (stdout) and warnings (stderr), write --json; returns exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = _install_stop_signals(loop, stop)
    try:
        summary = await run_load(cfg, stop)
    except SeedError as exc:
        print(f"load: seeding failed: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 130
    finally:
        _remove_stop_signals(loop, installed)

    print(render_summary(summary), flush=True)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if cfg.json_path:
        try:
            await asyncio.to_thread(write_json, cfg.json_path, summary)
        except OSError as exc:
            print(f"load: cannot write {cfg.json_path}: {exc}", file=sys.stderr)
            return 1
    return 130 if summary["stop_reason"] == "interrupted" else 0


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)  # before the loop exists, so argparse errors exit plainly
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(amain(cfg))
