"""Runs the API: `python run_api.py [--host H] [--port P] [--workers N]`.

With N > 1, N processes bind the same port with SO_REUSEPORT and the kernel spreads connections
over them, so one host uses all its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import signal
import sys

import uvloop
from aiohttp import web

from config import Settings, load_settings_or_exit
from config.logging import setup_logging
from server.app import create_app

log = logging.getLogger("run_api")


def serve(settings: Settings, host: str, port: int, reuse_port: bool) -> None:
    setup_logging(settings.log_level, settings.log_format)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    log.info("api.starting", extra={"host": host, "port": port})
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        reuse_port=reuse_port,
        access_log=None,  # our middleware writes one JSON line per request
        print=None,
        loop=loop,
        shutdown_timeout=10,
    )
    log.info("api.stopped")


def main(argv: list[str] | None = None) -> int:
    settings = load_settings_or_exit()
    parser = argparse.ArgumentParser(description="Runs the product catalogue API.")
    parser.add_argument("--host", default=settings.api_host, help="listen address (API_HOST)")
    parser.add_argument("--port", type=int, default=settings.api_port, help="port (API_PORT)")
    parser.add_argument(
        "--workers",
        type=int,
        default=settings.api_workers,
        help="server processes sharing the port with SO_REUSEPORT (API_WORKERS)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers == 1:
        serve(settings, args.host, args.port, reuse_port=False)
        return 0

    children = [
        multiprocessing.Process(
            target=serve, args=(settings, args.host, args.port, True), name=f"api-{i}"
        )
        for i in range(args.workers)
    ]
    for child in children:
        child.start()

    def forward(_signum: int, _frame: object) -> None:
        # Each child drains its own connections on SIGTERM (aiohttp's graceful exit).
        for child in children:
            if child.is_alive():
                child.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    return max((c.exitcode or 0) for c in children)


if __name__ == "__main__":
    sys.exit(main())
