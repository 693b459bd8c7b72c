"""The load-testing command bench/load.py and its code, testkit/loadgen.py: the pure helpers and
whole runs against a small fake API on 127.0.0.1 (in process), and the command itself as a
subprocess, both as a script and as a module."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from testkit import loadgen

REPO_ROOT = Path(__file__).resolve().parents[2]
LOAD_SCRIPT = REPO_ROOT / "bench" / "load.py"


# -- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("10", 10.0),
        ("1.5", 1.5),
        (".25s", 0.25),
        (" 5S ", 5.0),
        ("1.5m", 90.0),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert loadgen.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", " ", "abc", "s", "-1s", "0", "0s", "0ms", "10x", "1.5.2", "inf", "nan", "1e3", "5 m s"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        loadgen.parse_duration(text)


def test_parse_args_defaults_and_values() -> None:
    cfg = loadgen.parse_args(["--url", "http://127.0.0.1:8080/", "--scenario", "get-hit"])
    assert cfg.url == "http://127.0.0.1:8080"
    assert (cfg.concurrency, cfg.duration, cfg.requests, cfg.rate) == (64, 30.0, None, None)

    cfg = loadgen.parse_args(
        [
            "--url=http://127.0.0.1:1",
            "--scenario=mixed",
            "--concurrency=8",
            "--duration=2m",
            "--requests=5",
            "--rate=12.5",
            "--json=out.json",
            "--seed-products=7",
            "--timeout=500ms",
            "--quiet",
        ]
    )
    assert (cfg.concurrency, cfg.duration, cfg.requests, cfg.rate) == (8, 120.0, 5, 12.5)
    assert (cfg.json_path, cfg.seed_products, cfg.timeout, cfg.quiet) == ("out.json", 7, 0.5, True)


@pytest.mark.parametrize(
    "extra",
    [
        ["--scenario", "nope"],
        ["--scenario", "list", "--concurrency", "0"],
        ["--scenario", "list", "--duration", "soon"],
        ["--scenario", "list", "--rate", "nan"],
        ["--scenario", "list", "--requests", "-3"],
    ],
)
def test_parse_args_rejects(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        loadgen.parse_args(["--url", "http://127.0.0.1:1", *extra])
    assert exit_info.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://127.0.0.1", "http://", "http://h/?a=1"])
def test_parse_args_rejects_bad_url(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--url", url, "--scenario", "healthz"])
    assert "URL" in capsys.readouterr().err


def test_seed_count() -> None:
    assert loadgen.seed_count("healthz", 50, None) == 0
    assert loadgen.seed_count("create", 50, None) == 0
    assert loadgen.seed_count("get-hit", None, 10_000) == loadgen.DEFAULT_SEED_PRODUCTS
    assert loadgen.seed_count("get-hit", 7, None) == 7
    assert loadgen.seed_count("get-miss", None, 300) == 300
    assert loadgen.seed_count("get-miss", None, 10**9) == loadgen.MAX_GET_MISS_SEED
    assert loadgen.seed_count("get-miss", None, None) == loadgen.DEFAULT_GET_MISS_SEED
    assert loadgen.seed_count("get-miss", 12, 300) == 12


# -- percentiles and summary ----------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    data = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(data, 0) == 1.0
    assert loadgen.percentile(data, 50) == 50.0
    assert loadgen.percentile(data, 90) == 90.0
    assert loadgen.percentile(data, 99) == 99.0
    assert loadgen.percentile(data, 99.9) == 100.0
    assert loadgen.percentile(data, 100) == 100.0

    ten = [float(v) for v in range(10, 110, 10)]
    assert loadgen.percentile(ten, 50) == 50.0
    assert loadgen.percentile(ten, 51) == 60.0
    assert loadgen.percentile(ten, 99) == 100.0

    thousand = [float(v) for v in range(1, 1001)]
    assert loadgen.percentile(thousand, 99.9) == 999.0  # 99.9 * 1000 / 100 is not exact in floats

    assert loadgen.percentile([7.0], 50) == 7.0
    assert loadgen.percentile([7.0], 99) == 7.0
    assert loadgen.percentile([], 50) is None


@pytest.mark.parametrize("pct", [-1.0, 100.5])
def test_percentile_rejects_out_of_range(pct: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        loadgen.percentile([1.0], pct)


def _sample_stats() -> loadgen.Stats:
    stats = loadgen.Stats()
    for ms in range(1, 101):  # 1..100 ms
        stats.record_response("get-hit", 200, ms / 1000.0, "HIT")
    stats.record_response("list", 500, 0.2, None)
    stats.record_response("create", 404, 0.3, "BYPASS")
    stats.record_exception("get-hit", "ClientConnectorError")
    stats.record_exception("get-hit", "TimeoutError")
    stats.record_exception("get-hit", "TimeoutError")
    return stats


def test_build_summary_shape_and_json_roundtrip() -> None:
    summary = loadgen.build_summary(
        _sample_stats(),
        scenario="mixed",
        url="http://127.0.0.1:8080",
        concurrency=8,
        rate_limit=None,
        elapsed_s=2.0,
        stop_reason="requests",
        cpu_s=0.5,
        seeded_products=10,
    )
    assert set(summary) == {
        "scenario",
        "url",
        "concurrency",
        "rate_limit",
        "stop_reason",
        "elapsed_s",
        "requests",
        "ok",
        "errors",
        "errors_by_status",
        "errors_by_exception",
        "status_counts",
        "rate_rps",
        "latency_ms",
        "x_cache",
        "by_kind",
        "seeded_products",
        "ids_reused",
        "client_cpu_fraction",
        "client_bound",
        "warnings",
    }
    assert summary["requests"] == 105
    assert summary["ok"] == 100
    assert summary["errors"] == 5
    assert summary["errors_by_status"] == {"404": 1, "500": 1}
    assert summary["errors_by_exception"] == {"ClientConnectorError": 1, "TimeoutError": 2}
    assert summary["status_counts"] == {"200": 100, "404": 1, "500": 1}
    assert summary["rate_rps"] == 52.5
    # 102 latencies: 1..100 ms plus 200 and 300 ms.
    assert summary["latency_ms"]["p50"] == pytest.approx(51.0)
    assert summary["latency_ms"]["p90"] == pytest.approx(92.0)
    assert summary["latency_ms"]["p99"] == pytest.approx(200.0)
    assert summary["latency_ms"]["max"] == pytest.approx(300.0)
    assert summary["x_cache"] == {"BYPASS": 1, "HIT": 100}
    assert summary["by_kind"] == {"create": 1, "get-hit": 103, "list": 1}
    assert summary["client_cpu_fraction"] == 0.25
    assert summary["client_bound"] is False
    assert summary["warnings"] == []
    # --json writes exactly this, so it must survive a JSON round trip unchanged.
    assert json.loads(json.dumps(summary)) == summary

    table = loadgen.render_summary(summary)
    assert "mixed" in table
    assert "status 500: 1" in table
    assert "TimeoutError: 2" in table
    assert "p99 200.00" in table
    assert "HIT 100" in table


def test_build_summary_empty_run() -> None:
    summary = loadgen.build_summary(
        loadgen.Stats(),
        scenario="healthz",
        url="http://127.0.0.1:1",
        concurrency=1,
        rate_limit=5.0,
        elapsed_s=0.0,
        stop_reason="interrupted",
        cpu_s=0.0,
    )
    assert summary["requests"] == 0
    assert summary["rate_rps"] == 0.0
    assert summary["latency_ms"] == {
        "p50": None,
        "p90": None,
        "p99": None,
        "max": None,
        "mean": None,
    }
    assert "p50 -" in loadgen.render_summary(summary)
    assert json.loads(json.dumps(summary)) == summary


def test_build_summary_warns_when_client_bound_and_on_reused_ids() -> None:
    summary = loadgen.build_summary(
        _sample_stats(),
        scenario="get-miss",
        url="http://127.0.0.1:8080",
        concurrency=64,
        rate_limit=None,
        elapsed_s=10.0,
        stop_reason="duration",
        cpu_s=9.5,
        ids_reused=3,
    )
    assert summary["client_bound"] is True
    assert any("client-bound" in w and "wrk" in w for w in summary["warnings"])
    assert any("3 get-miss requests reused" in w for w in summary["warnings"])


# -- request builders -----------------------------------------------------------------------------


def _ctx(ids: int = 5, image_url: str | None = None) -> loadgen.Context:
    product_ids = [str(1000 + i) for i in range(ids)]
    return loadgen.Context(
        tag="abcd",
        user_id="42",
        product_ids=product_ids,
        product_paths=[f"/products/{pid}" for pid in product_ids],
        image_url=image_url,
    )


def test_get_builders() -> None:
    ctx, rng = _ctx(), random.Random(1)
    hit = loadgen.get_hit_request(ctx, rng, 0)
    assert (hit.kind, hit.method, hit.body) == ("get-hit", "GET", None)
    assert hit.path in ctx.product_paths
    miss_paths = [loadgen.get_miss_request(ctx, rng, n).path for n in range(7)]
    assert miss_paths == [*ctx.product_paths, *ctx.product_paths[:2]]
    assert loadgen.healthz_request(ctx, rng, 0) == loadgen.Request("healthz", "GET", "/healthz")


def test_list_builder_varies_filters() -> None:
    ctx, rng = _ctx(), random.Random(2)
    queries = []
    for n in range(50):
        request = loadgen.list_request(ctx, rng, n)
        parts = urlsplit(request.path)
        assert (request.method, parts.path) == ("GET", "/products")
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        assert query["user_id"] == "42"
        assert query["price_range"] in loadgen.LIST_PRICE_RANGES
        assert query["product_name"] in loadgen.LIST_NAME_FILTERS
        assert int(query["limit"]) in loadgen.LIST_LIMITS
        queries.append(parts.query)
    assert len(set(queries)) > 5


def test_create_builder() -> None:
    request = loadgen.create_request(_ctx(), random.Random(3), 9)
    assert (request.kind, request.method, request.path) == ("create", "POST", "/products")
    body = request.body
    assert body is not None
    assert set(body) == {
        "user_id",
        "product_name",
        "product_description",
        "product_images",
        "product_price",
    }
    assert body["user_id"] == "42"
    assert body["product_images"] == []
    assert 1.0 <= body["product_price"] <= 100.0
    assert "prod" in body["product_name"]

    with_images = loadgen.create_request(
        _ctx(image_url="http://127.0.0.1:9/x.jpg"), random.Random(3), 1
    )
    assert with_images.body is not None
    assert with_images.body["product_images"] == ["http://127.0.0.1:9/x.jpg"]


def test_mixed_builder_proportions() -> None:
    ctx, rng = _ctx(), random.Random(4)
    kinds = Counter(loadgen.mixed_request(ctx, rng, n).kind for n in range(20_000))
    assert set(kinds) == {"get-hit", "list", "create"}
    assert kinds["get-hit"] / 20_000 == pytest.approx(0.80, abs=0.02)
    assert kinds["list"] / 20_000 == pytest.approx(0.15, abs=0.02)
    assert kinds["create"] / 20_000 == pytest.approx(0.05, abs=0.01)


def test_pacer_spaces_slots_without_catch_up_burst() -> None:
    pacer = loadgen.Pacer(rate=10.0, start=100.0)
    assert [pacer.reserve(100.0) for _ in range(3)] == pytest.approx([100.0, 100.1, 100.2])
    # Far behind schedule: the next slot is "now", not a burst of the missed ones.
    assert pacer.reserve(105.0) == 105.0
    assert pacer.reserve(105.0) == pytest.approx(105.1)


# -- a fake API on 127.0.0.1 ----------------------------------------------------------------------


class FakeCatalogue:
    """Just enough of the API for the load script, strict about request shapes.

    With ``keys`` it plays the access layer: POST /users answers the new user's ``api_key``, and
    the product routes answer 401 unless they get the owner's key (or ``admin_key``) as bearer.
    """

    def __init__(
        self,
        *,
        healthz_status: int = 200,
        on_request: Any = None,
        keys: bool = False,
        admin_key: str | None = None,
        refuse_creates: int = 0,
    ) -> None:
        self.healthz_status = healthz_status
        self.on_request = on_request  # called with the route name on every request
        self.keys = keys
        self.admin_key = admin_key
        self.refuse_creates = refuse_creates  # the first N creates answer 429 (Retry-After: 0)
        self.users: dict[str, dict[str, str]] = {}
        self.emails: set[str] = set()
        self.products: dict[str, dict[str, Any]] = {}
        self.cached: set[str] = set()
        self.calls: Counter[str] = Counter()
        # (route, Authorization header or None) of every request.
        self.authorizations: Counter[tuple[str, str | None]] = Counter()

    def _refused(self, request: web.Request, user_id: str | None) -> web.Response | None:
        """401 unless the request sends the key of ``user_id`` (or the admin key)."""
        if not self.keys:
            return None
        sent = request.headers.get("Authorization")
        allowed = {f"Bearer {self.admin_key}"} if self.admin_key else set()
        if user_id is not None:
            allowed.add(f"Bearer catk_fake_{user_id}")
        if sent in allowed:
            return None
        return web.json_response({"error": "unauthorized"}, status=401)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._seen])
        app.router.add_post("/users", self.create_user)
        app.router.add_post("/products", self.create_product)
        app.router.add_get("/products", self.list_products)
        app.router.add_get("/products/{product_id}", self.get_product)
        app.router.add_get("/healthz", self.healthz)
        return app

    @web.middleware
    async def _seen(self, request: web.Request, handler: Any) -> web.StreamResponse:
        route = getattr(request.match_info.handler, "__name__", "?")
        self.authorizations[route, request.headers.get("Authorization")] += 1
        return await handler(request)

    def _called(self, route: str) -> None:
        self.calls[route] += 1
        if self.on_request is not None:
            self.on_request(route)

    async def create_user(self, request: web.Request) -> web.Response:
        self._called("create_user")
        body = await request.json()
        if set(body) != {"username", "email"} or body["email"] in self.emails:
            return web.json_response({"error": "bad user"}, status=400)
        self.emails.add(body["email"])
        user_id = str(len(self.users) + 1)
        self.users[user_id] = body
        answer = {"user_id": user_id, **body}
        if self.keys:
            answer["api_key"] = f"catk_fake_{user_id}"
        return web.json_response(answer, status=201)

    async def create_product(self, request: web.Request) -> web.Response:
        self._called("create_product")
        if self.refuse_creates > 0:
            self.refuse_creates -= 1
            return web.json_response(
                {"error": "rate limit"}, status=429, headers={"Retry-After": "0"}
            )
        body = await request.json()
        valid = (
            set(body)
            == {
                "user_id",
                "product_name",
                "product_description",
                "product_images",
                "product_price",
            }
            and body["user_id"] in self.users
            and isinstance(body["product_images"], list)
            and isinstance(body["product_price"], float | int)
        )
        if not valid:
            return web.json_response({"error": "bad product"}, status=400)
        if (refused := self._refused(request, body["user_id"])) is not None:
            return refused
        product_id = str(len(self.products) + 1)
        self.products[product_id] = body
        return web.json_response(
            {
                "status": "success",
                "message": "Product created successfully",
                "product_id": product_id,
            },
            status=201,
        )

    async def get_product(self, request: web.Request) -> web.Response:
        self._called("get_product")
        product_id = request.match_info["product_id"]
        if product_id not in self.products:
            return web.json_response({"error": "not found"}, status=404)
        if (refused := self._refused(request, self.products[product_id]["user_id"])) is not None:
            return refused
        x_cache = "HIT" if product_id in self.cached else "MISS"
        self.cached.add(product_id)
        return web.json_response(self.products[product_id], headers={"X-Cache": x_cache})

    async def list_products(self, request: web.Request) -> web.Response:
        self._called("list_products")
        query = request.query
        try:
            low, high = (float(v) for v in query["price_range"].split("-"))
            limit = int(query["limit"])
            user_id = query["user_id"]
            name = query["product_name"]
        except (KeyError, ValueError):
            return web.json_response({"error": "bad query"}, status=400)
        if user_id not in self.users:
            return web.json_response({"error": "no such user"}, status=400)
        if (refused := self._refused(request, user_id)) is not None:
            return refused
        rows = [
            p
            for p in self.products.values()
            if p["user_id"] == user_id
            and low <= p["product_price"] <= high
            and name in p["product_name"]
        ]
        return web.json_response({"products": rows[:limit]}, headers={"X-Cache": "BYPASS"})

    async def healthz(self, request: web.Request) -> web.Response:
        self._called("healthz")
        return web.json_response({"status": "ok"}, status=self.healthz_status)


@contextlib.asynccontextmanager
async def serve(fake: FakeCatalogue) -> AsyncIterator[str]:
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _cfg(url: str, scenario: str, *extra: str) -> loadgen.Config:
    return loadgen.parse_args(["--url", url, "--scenario", scenario, "--quiet", *extra])


async def test_get_hit_run_counts_cache_hits() -> None:
    fake = FakeCatalogue()
    async with serve(fake) as url:
        summary = await loadgen.run_load(
            _cfg(url, "get-hit", "--requests", "200", "--concurrency", "8", "--seed-products", "20")
        )
    assert summary["stop_reason"] == "requests"
    assert summary["requests"] == 200
    assert summary["ok"] == 200
    assert summary["errors"] == 0
    assert summary["errors_by_status"] == {}
    assert summary["errors_by_exception"] == {}
    assert summary["x_cache"] == {"HIT": 200}  # every product was warmed first
    assert summary["seeded_products"] == 20
    assert summary["by_kind"] == {"get-hit": 200}
    assert fake.calls == Counter(create_user=1, create_product=20, get_product=220)
    assert summary["latency_ms"]["p50"] is not None
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert summary["latency_ms"]["p99"] <= summary["latency_ms"]["max"]


async def test_mixed_run() -> None:
    fake = FakeCatalogue()
    async with serve(fake) as url:
        summary = await loadgen.run_load(
            _cfg(
                url,
                "mixed",
                *("--requests", "200", "--concurrency", "8", "--seed-products", "10"),
                *("--random-seed", "5"),  # the split is random: this one is 80/15/5 ± noise
            )
        )
    assert summary["requests"] == 200
    assert summary["errors"] == 0, summary
    kinds = summary["by_kind"]
    assert sum(kinds.values()) == 200
    assert kinds["get-hit"] > kinds.get("list", 0) > kinds.get("create", 0)
    assert fake.calls["create_product"] == 10 + kinds.get("create", 0)
    assert fake.calls["list_products"] == kinds.get("list", 0)
    assert fake.calls["get_product"] == 10 + kinds["get-hit"]
    assert summary["x_cache"]["HIT"] == kinds["get-hit"]
    assert summary["x_cache"].get("BYPASS", 0) == kinds.get("list", 0)


async def test_get_miss_run_reports_reused_ids() -> None:
    fake = FakeCatalogue()
    async with serve(fake) as url:
        summary = await loadgen.run_load(
            _cfg(url, "get-miss", "--requests", "80", "--concurrency", "4", "--seed-products", "50")
        )
    assert summary["errors"] == 0
    assert summary["x_cache"] == {"HIT": 30, "MISS": 50}
    assert summary["ids_reused"] == 30
    assert any("reused" in w for w in summary["warnings"])

    fake = FakeCatalogue()
    async with serve(fake) as url:
        summary = await loadgen.run_load(
            _cfg(url, "get-miss", "--requests", "40", "--concurrency", "4")
        )
    # Without --seed-products it seeds one product per request, so nothing is reused.
    assert summary["seeded_products"] == 40
    assert summary["x_cache"] == {"MISS": 40}
    assert summary["ids_reused"] == 0
    # (The client-bound warning may appear: the fake server shares this process's CPU.)
    assert not any("reused" in w for w in summary["warnings"])


async def test_list_and_create_runs() -> None:
    fake = FakeCatalogue()
    async with serve(fake) as url:
        listed = await loadgen.run_load(
            _cfg(url, "list", "--requests", "30", "--concurrency", "4", "--seed-products", "5")
        )
        created = await loadgen.run_load(
            _cfg(url, "create", "--requests", "30", "--concurrency", "4")
        )
    assert (listed["requests"], listed["errors"]) == (30, 0)
    assert listed["status_counts"] == {"200": 30}
    assert (created["requests"], created["errors"]) == (30, 0)
    assert created["status_counts"] == {"201": 30}
    assert created["seeded_products"] == 0
    assert fake.calls["create_user"] == 2  # a fresh, uniquely named user per run
    assert fake.calls["create_product"] == 5 + 30
    assert all(p["product_images"] == [] for p in fake.products.values())


async def test_the_users_api_key_is_sent_as_bearer_on_its_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(loadgen.API_KEY_VARIABLE, raising=False)
    fake = FakeCatalogue(keys=True)
    async with serve(fake) as url:
        summary = await loadgen.run_load(
            _cfg(
                url,
                "mixed",
                *("--requests", "200", "--concurrency", "8", "--seed-products", "10"),
                *("--random-seed", "5"),
            )
        )
    assert summary["errors"] == 0, summary
    assert summary["status_counts"].get("401") is None
    kinds = summary["by_kind"]
    assert set(kinds) == {"get-hit", "list", "create"}
    # The sign-up went without a key; everything after it with the key it answered.
    assert fake.authorizations == Counter(
        {
            ("create_user", None): 1,
            ("create_product", "Bearer catk_fake_1"): 10 + kinds["create"],
            ("get_product", "Bearer catk_fake_1"): 10 + kinds["get-hit"],
            ("list_products", "Bearer catk_fake_1"): kinds["list"],
        }
    )


async def test_without_keys_the_requests_carry_no_authorization(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(loadgen.API_KEY_VARIABLE, raising=False)
    fake = FakeCatalogue()  # the open contract: POST /users answers no api_key
    async with serve(fake) as url:
        summary = await loadgen.run_load(
            _cfg(url, "get-hit", "--requests", "20", "--concurrency", "2", "--seed-products", "3")
        )
    assert summary["errors"] == 0
    assert {authorization for _route, authorization in fake.authorizations} == {None}


async def test_api_key_is_sent_instead_from_the_sign_up_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = "an-admin-key-of-the-fake-0123456789abcdef"
    fake = FakeCatalogue(keys=True, admin_key=admin)
    async with serve(fake) as url:
        listed = await loadgen.run_load(
            _cfg(
                url,
                "list",
                *("--requests", "20", "--concurrency", "2", "--seed-products", "3"),
                "--api-key",
                admin,
            )
        )
        # The same from LOAD_API_KEY, which keeps the key out of the process list.
        monkeypatch.setenv(loadgen.API_KEY_VARIABLE, admin)
        from_env = _cfg(url, "healthz", "--requests", "5", "--concurrency", "1")
        assert from_env.api_key == admin
        healthz = await loadgen.run_load(from_env)
    assert listed["errors"] == 0, listed
    assert healthz["errors"] == 0
    assert {authorization for _route, authorization in fake.authorizations} == {f"Bearer {admin}"}
    assert fake.authorizations["create_user", f"Bearer {admin}"] == 1
    assert fake.authorizations["healthz", f"Bearer {admin}"] == 5


async def test_seeding_waits_out_rate_limit_refusals(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(loadgen.API_KEY_VARIABLE, raising=False)
    fake = FakeCatalogue(keys=True, refuse_creates=5)
    async with serve(fake) as url:
        summary = await loadgen.run_load(
            loadgen.parse_args(
                [
                    *("--url", url, "--scenario", "get-hit", "--requests", "20"),
                    *("--concurrency", "2", "--seed-products", "8"),
                ]
            )
        )
    assert summary["seeded_products"] == 8
    assert summary["errors"] == 0, summary
    assert fake.calls["create_product"] == 8 + 5  # each refusal sent again
    assert capsys.readouterr().err.count("seeding is rate-limited") == 1


def test_rate_limit_refusals_are_warned_about() -> None:
    stats = loadgen.Stats()
    for _ in range(3):
        stats.record_response("get-hit", 200, 0.001, "HIT")
    stats.record_response("get-hit", 429, 0.001, None)
    summary = loadgen.build_summary(
        stats,
        scenario="get-hit",
        url="http://127.0.0.1:8080",
        concurrency=4,
        rate_limit=None,
        elapsed_s=1.0,
        stop_reason="requests",
        cpu_s=0.1,
    )
    assert summary["errors_by_status"] == {"429": 1}
    [warning] = summary["warnings"]
    assert "1 requests (25%)" in warning
    assert "rate limit (429)" in warning
    assert "--api-key" in warning


async def test_server_errors_show_up_by_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCatalogue(healthz_status=500)
    out = tmp_path / "out.json"
    async with serve(fake) as url:
        cfg = _cfg(url, "healthz", "--requests", "50", "--concurrency", "8", "--json", str(out))
        status = await loadgen.amain(cfg)
    assert status == 0
    summary = json.loads(out.read_text())
    assert summary["requests"] == 50
    assert summary["ok"] == 0
    assert summary["errors"] == 50
    assert summary["errors_by_status"] == {"500": 50}
    assert summary["errors_by_exception"] == {}
    printed = capsys.readouterr().out
    assert "status 500: 50" in printed
    assert "healthz" in printed


async def test_connection_errors_show_up_by_exception_type() -> None:
    # A bound but not listening loopback socket refuses connections, and nobody else can take
    # the port while we hold it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        summary = await loadgen.run_load(
            _cfg(url, "healthz", "--requests", "20", "--concurrency", "4")
        )
    assert summary["requests"] == 20
    assert summary["errors"] == 20
    assert summary["errors_by_exception"] == {"ClientConnectorError": 20}
    assert summary["latency_ms"]["p50"] is None


async def test_seeding_failure_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        status = await loadgen.amain(_cfg(url, "get-hit", "--requests", "5"))
    assert status == 1
    assert "seeding failed" in capsys.readouterr().err


async def test_duration_ends_the_run() -> None:
    async with serve(FakeCatalogue()) as url:
        summary = await loadgen.run_load(
            _cfg(url, "healthz", "--duration", "200ms", "--concurrency", "4")
        )
    assert summary["stop_reason"] == "duration"
    assert summary["requests"] > 0
    assert summary["errors"] == 0
    assert 0.2 <= summary["elapsed_s"] < 5.0


async def test_rate_caps_request_starts() -> None:
    async with serve(FakeCatalogue()) as url:
        summary = await loadgen.run_load(
            _cfg(url, "healthz", "--requests", "10", "--rate", "100", "--concurrency", "4")
        )
    assert summary["requests"] == 10
    assert summary["rate_limit"] == 100.0
    # Ten starts spaced 10 ms apart cannot finish in less than 90 ms.
    assert summary["elapsed_s"] >= 0.089


async def test_stop_event_ends_run_early_with_summary() -> None:
    stop = asyncio.Event()

    def on_request(route: str) -> None:
        if fake.calls["healthz"] >= 30:
            stop.set()

    fake = FakeCatalogue(on_request=on_request)
    async with serve(fake) as url:
        summary = await loadgen.run_load(
            _cfg(url, "healthz", "--duration", "60s", "--concurrency", "4"), stop
        )
    assert summary["stop_reason"] == "interrupted"
    # In-flight requests are dropped rather than waited for; 60 s of load would be far more.
    assert 26 <= summary["requests"] <= 100
    assert summary["errors"] == 0
    assert summary["elapsed_s"] < 30


# -- as a command ---------------------------------------------------------------------------------


async def _run_command(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    "command",
    [[sys.executable, str(LOAD_SCRIPT)], [sys.executable, "-m", "bench.load"]],
    ids=["script", "module"],
)
async def test_runs_as_script_and_module(command: list[str], tmp_path: Path) -> None:
    code, out, err = await _run_command(*command, "--help")
    assert code == 0, err
    assert "--scenario" in out

    out_file = tmp_path / "out.json"
    async with serve(FakeCatalogue()) as url:
        code, out, err = await _run_command(
            *command,
            "--url",
            url,
            "--scenario",
            "get-hit",
            "--requests",
            "20",
            "--concurrency",
            "2",
            "--seed-products",
            "3",
            "--json",
            str(out_file),
        )
    assert code == 0, err
    assert "seeding 3 products" in err
    summary = json.loads(out_file.read_text())
    assert (summary["requests"], summary["errors"]) == (20, 0)
    assert "x-cache" in out


async def test_ctrl_c_stops_and_still_prints_summary(tmp_path: Path) -> None:
    out_file = tmp_path / "out.json"
    async with serve(FakeCatalogue()) as url:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(LOAD_SCRIPT),
            "--url",
            url,
            "--scenario",
            "healthz",
            "--duration",
            "60s",
            "--concurrency",
            "2",
            "--json",
            str(out_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        # The "running" line is printed once signal handlers are in place and load has started.
        line = await asyncio.wait_for(proc.stderr.readline(), timeout=30)
        assert line.startswith(b"running healthz"), line
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 130
    assert b"stopped: interrupted" in out
    summary = json.loads(out_file.read_text())
    assert summary["stop_reason"] == "interrupted"
    assert summary["elapsed_s"] < 30
