"""Servers that tests and benchmarks run as subprocesses: waiting until one answers, stopping it."""

from __future__ import annotations

import contextlib
import http.client
import subprocess
import time
from urllib.parse import urlsplit


def wait_until_answering(
    url: str,
    process: subprocess.Popen[bytes],
    *,
    path: str = "/healthz",
    timeout_s: float = 30.0,
    what: str = "the server",
) -> None:
    """Polls GET `path` until it answers 200; RuntimeError when the process exits first or the
    deadline passes. Between polls it waits on the process itself (a refused connection returns
    at once), so a server that dies is noticed at once too."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    last_error: object = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            if response.status == 200:
                return
            last_error = f"status {response.status}: {response.read()[:200]!r}"
        except OSError as exc:
            last_error = exc
        finally:
            conn.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.05)
    raise RuntimeError(f"{what} not answering {path} within {timeout_s} s: {last_error}")


def stop(process: subprocess.Popen[bytes], *, timeout_s: float = 15.0) -> None:
    """SIGTERM (a graceful drain), then SIGKILL if it does not end in `timeout_s`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
