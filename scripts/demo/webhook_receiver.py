"""The demo's webhook endpoint: a loopback receiver `make run` registers, so the console shows
deliveries from the first minute.

``POST /webhook`` checks the Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 of ``"{id}.{timestamp}.{body}"`` under the
endpoint's secret) within a five-minute tolerance, answers 204 when it holds and 401 when it does
not, and prints one line per delivery. ``GET /`` lists what it received (JSON). It listens on
127.0.0.1 only; the secret arrives after start-up (it is shown once, by ``POST /webhooks``), and
until then every delivery is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from scripts.demo.loopback import HOST, listen

TOLERANCE_S = 300  # the specification's suggestion: older or newer timestamps are replays
SECRET_PREFIX = "whsec_"
KEPT = 50  # deliveries listed by GET /


def signature_holds(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """Whether ``headers`` sign ``body`` under ``secret`` (Standard Webhooks, version 1)."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (msg_id and stamp.isdigit() and signatures and secret.startswith(SECRET_PREFIX)):
        return False
    if abs(now - int(stamp)) > TOLERANCE_S:
        return False
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        return False
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    # Several signatures may be sent (a secret being rotated): any one that holds is enough.
    return any(
        version == "v1" and hmac.compare_digest(expected, candidate.encode())
        for version, _, candidate in (s.partition(",") for s in signatures.split())
    )


@dataclass
class WebhookReceiver:
    """Receives the demo endpoint's deliveries on ``HOST``; ``port=0`` picks a free port."""

    port: int = 0
    secret: str | None = None  # set once the endpoint is registered
    received: deque[dict[str, object]] = field(default_factory=lambda: deque(maxlen=KEPT))
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/webhook"

    async def _deliver(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if self.secret is None or not signature_holds(self.secret, headers, body, time.time()):
            print("run: demo webhook: a delivery with a bad signature, refused", file=sys.stderr)
            return web.json_response({"error": "signature does not verify"}, status=401)
        try:
            event = orjson.loads(body)
            kind = str(event["type"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return web.json_response({"error": "not a webhook event"}, status=400)
        data = event.get("data") if isinstance(event, dict) else None
        product_id = data.get("product_id") if isinstance(data, dict) else None
        self.received.appendleft(
            {"webhook_id": headers["webhook-id"], "type": kind, "product_id": product_id}
        )
        print(
            f"run: demo webhook: {kind} for product {product_id} (signature verified)",
            file=sys.stderr,
            flush=True,
        )
        return web.Response(status=204)

    async def _index(self, request: web.Request) -> web.Response:
        return web.json_response({"received": list(self.received)})

    async def start(self) -> None:
        """Listens; raises OSError (errno EADDRINUSE) when the port is taken."""
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_post("/webhook", self._deliver)
        runner = self._runner = await listen(app, self.port)
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
