"""`run_api.py --workers N`: N processes share one port (SO_REUSEPORT) and stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import aiohttp
import pytest

from config.settings import settings_to_env
from tests.integration.conftest import ROOT, wait_for

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_children(parent_pid: int) -> list[int]:
    result = subprocess.run(
        ["pgrep", "-P", str(parent_pid)], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in result.stdout.split()]


async def test_two_server_processes_share_one_port_and_stop_cleanly(settings):
    port = free_port()
    env = {**os.environ, **settings_to_env(settings), "LOG_LEVEL": "warning"}
    # Popen only starts the process; every wait below is async.
    process = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, str(ROOT / "run_api.py"), "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def healthy():
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(healthy, timeout_s=60)

        async def two_children():
            return len(api_children(process.pid)) == 2

        await wait_for(two_children, timeout_s=30)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
