"""The downloader against a tiny image server on 127.0.0.1 (in this process, no services)."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from compressor.download import Downloader, create_session
from compressor.errors import ImageFailure
from config import load_settings
from testkit import imagegen


@pytest.fixture
async def server(aiohttp_server):
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=imagegen.tiny_png(), content_type="image/png")

    async def bad_redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://[::1"})

    app = web.Application()
    app.router.add_get("/image.png", image)
    app.router.add_get("/bad-redirect", bad_redirect)
    return await aiohttp_server(app, host="127.0.0.1")


@pytest.fixture
async def downloader():
    settings = load_settings({"IMAGE_ALLOW_LOOPBACK_SOURCES": "true"}, dotenv=None)
    session = create_session(settings, connections=4)
    yield Downloader(session, settings)
    await session.close()


async def test_an_image_is_downloaded(server, downloader):
    downloaded = await downloader.fetch(str(server.make_url("/image.png")))
    assert downloaded.data == imagegen.tiny_png()


async def test_an_unparsable_redirect_fails_the_image_for_good(server, downloader):
    with pytest.raises(ImageFailure) as caught:
        await downloader.fetch(str(server.make_url("/bad-redirect")))
    assert (caught.value.reason, caught.value.transient) == ("bad_redirect", False)


@pytest.mark.parametrize(
    ("environ", "level", "origins"),
    [
        pytest.param({}, logging.INFO, [], id="closed"),
        pytest.param(
            {"IMAGE_ALLOWED_SOURCE_ORIGINS": "http://127.0.0.1:8090"},
            logging.WARNING,
            ["http://127.0.0.1:8090"],
            id="one-origin",
        ),
        pytest.param({"IMAGE_ALLOW_PRIVATE_SOURCES": "true"}, logging.WARNING, [], id="private"),
    ],
)
async def test_the_session_logs_which_sources_it_opens(environ, level, origins, caplog):
    settings = load_settings(environ, dotenv=None)
    with caplog.at_level(logging.INFO, logger="compressor"):
        session = create_session(settings, connections=1)
    await session.close()
    [record] = [r for r in caplog.records if r.getMessage() == "ssrf.sources_opened"]
    assert record.levelno == level
    assert record.allowed_source_origins == origins
    assert record.allow_private_sources == settings.image_allow_private_sources
