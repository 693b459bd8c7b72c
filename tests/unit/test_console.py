"""The console's pure parts: where it exists, its HTML escaping, its search parsing."""

from __future__ import annotations

import pytest

from server.app import create_app
from server.console import pages, templates
from server.console.pipeline import images_rate, parse_metrics, summarize
from server.errors import ApiError


def console_paths(app) -> set[str]:
    return {
        route.resource.canonical
        for route in app.router.routes()
        if route.resource and route.resource.canonical.startswith("/console")
    }


def test_the_console_exists_only_with_api_keys(offline_settings):
    assert console_paths(create_app(offline_settings.replace(auth_mode="off"))) == set()
    keyed = create_app(offline_settings.replace(auth_mode="api_key", admin_api_keys="adm-x" * 8))
    assert {"/console", "/console/sign-in", "/console/products"} <= console_paths(keyed)


def test_every_shown_value_is_escaped():
    product = {
        "product_id": "1",
        "user_id": "2",
        "product_name": '<img src=x onerror="alert(1)">',
        "processing_status": "failed",
        "updated_at": "now",
        "images": [
            {
                "source": 'http://x/"><script>',
                "status": "failed",
                "error": "<b>bad</b>",
                "renditions": [],
            }
        ],
    }
    card = templates.product_card(product)
    assert "<img src=x" not in card
    assert "<script>" not in card
    assert "<b>" not in card
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in card


def test_each_rendition_shows_its_saving_against_the_source_it_was_made_from():
    rendition = {"url": "http://cdn.test/a.jpg", "width": 640, "height": 480, "format": "jpeg"}
    product = {
        "product_id": "1",
        "user_id": "2",
        "product_name": "Lamp",
        "processing_status": "done",
        "updated_at": "now",
        "images": [
            {
                "source": "http://x/a.jpg",
                "status": "ready",
                "error": None,
                "original": {"bytes": 200_000, "width": 4000, "height": 3000, "format": "png"},
                "renditions": [{**rendition, "bytes": 30_000}, {**rendition, "bytes": 250_000}],
            }
        ],
    }
    card = templates.product_card(product)
    assert "png\n4000×3000, 200000 B" in card
    assert "saves 85 %" in card
    assert "saves -25 %" in card  # an output larger than its source says so


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"user_id": "-1"}, "user_id"),
        ({"user_id": "1.5"}, "user_id"),
        ({"status": "ready"}, "status"),
        ({"name": "x" * 201}, "name"),
        ({"page": "2"}, "page"),
    ],
)
def test_bad_search_fields_are_refused_by_name(query, field):
    with pytest.raises(ApiError) as refused:
        pages.parse_search(query)
    assert refused.value.status == 400
    assert refused.value.details == {"field": field} or field in refused.value.message


def test_an_empty_search_finds_everything_newest_first():
    search = pages.parse_search({"user_id": "", "name": "", "status": ""})
    assert (search.user_id, search.name_contains, search.status) == (None, None, None)


def test_the_pipeline_summary_of_two_workers_metrics():
    text = """# TYPE worker_images_total counter
worker_images_total{outcome="done"} 5.0
worker_images_total{outcome="failed"} 1.0
worker_images_total{outcome="failed_transient"} 7.0
# TYPE worker_inflight_jobs gauge
worker_inflight_jobs 2.0
# TYPE worker_pool_rebuilds_total counter
worker_pool_rebuilds_total 1.0
# TYPE worker_stage_seconds histogram
worker_stage_seconds_bucket{stage="download",le="+Inf"} 4.0
worker_stage_seconds_sum{stage="download"} 0.2
worker_stage_seconds_count{stage="download"} 4.0
worker_stage_seconds_sum{stage="idle"} 0.0
worker_stage_seconds_count{stage="idle"} 0.0
"""
    other = """worker_images_total{outcome="done"} 4.0
worker_inflight_jobs 1.0
worker_stage_seconds_sum{stage="download"} 1.0
worker_stage_seconds_count{stage="download"} 1.0
worker_stage_seconds_sum{stage="upload"} 0.03
worker_stage_seconds_count{stage="upload"} 3.0
"""
    assert parse_metrics(text).images_total == 6.0  # the transient failures are retried
    assert summarize([parse_metrics(text), parse_metrics(other)]) == {
        "images_total": 10.0,
        "jobs_in_flight": 3.0,
        "pool_rebuilds": 1.0,
        # 1.2 s over 5 downloads, not the mean of the two workers' means
        "stage_mean_ms": {"download": 240.0, "upload": 10.0},
    }
    assert summarize([])["images_total"] == 0


def test_the_image_rate_is_given_only_between_comparable_refreshes():
    assert images_rate((10.0, {"a": 5, "b": 1}), (12.0, {"a": 9, "b": 3})) == 3.0
    assert images_rate((10.0, {"a": 5}), (12.0, {"a": 9, "b": 3})) is None  # b started answering
    assert images_rate((10.0, {"a": 5, "b": 1}), (12.0, {"a": 9})) is None  # b stopped
    assert images_rate((10.0, {"a": 5}), (12.0, {"a": 2})) is None  # a restarted
    assert images_rate((10.0, {}), (12.0, {})) is None  # nobody answered


@pytest.mark.parametrize(("scheme", "secure"), [("http", False), ("https", True)])
def test_the_session_cookie_is_secure_exactly_under_tls(scheme, secure):
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from server.console.sessions import set_cookie

    request = make_mocked_request("POST", "/console/sign-in").clone(scheme=scheme)
    response = web.Response()
    set_cookie(response, request, "token", 60)
    header = response.cookies["console_session"].output(header="")
    assert ("Secure" in header) is secure
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Path=/console" in header
