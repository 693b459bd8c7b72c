"""Live event streams held open against an API while it is measured: `GET /products/{id}/events`
(Server-Sent Events), each read by a thread of its own until the block ends."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator, Sequence

OPEN_TIMEOUT_S = 10.0


@contextlib.contextmanager
def open_event_streams(port: int, product_ids: Sequence[int]) -> Iterator[int]:
    """One stream per id, each answered 200 with its first event before the block starts;
    yields how many are open."""
    conns: list[http.client.HTTPConnection] = []
    opened = threading.Semaphore(0)
    failures: list[str] = []

    def hold(conn: http.client.HTTPConnection, product_id: int) -> None:
        try:
            conn.request("GET", f"/products/{product_id}/events")
            response = conn.getresponse()
            if response.status != 200:
                failures.append(f"{product_id}: {response.status}")
                return
            response.fp.readline()  # the first line of the product's current state
        except OSError as error:
            failures.append(f"{product_id}: {error!r}")
            return
        finally:
            opened.release()
        with contextlib.suppress(OSError, ValueError):  # closed by the block's end
            while response.fp.readline():
                pass

    threads = []
    for product_id in product_ids:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=None)
        conns.append(conn)
        thread = threading.Thread(target=hold, args=(conn, product_id), daemon=True)
        thread.start()
        threads.append(thread)
    try:
        for _ in product_ids:
            assert opened.acquire(timeout=OPEN_TIMEOUT_S), "an event stream did not open"
        assert not failures, failures
        yield len(product_ids)
    finally:
        for conn in conns:
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in threads:
            thread.join(timeout=5)
