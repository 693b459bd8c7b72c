"""The demo's webhook endpoint: the loopback receiver `make run` runs (webhook_receiver.py),
registered once for the demo user and kept across runs, so the first run's product events (and
any later one's) are delivered to it, signed, and listed by GET /webhooks/{id}/deliveries.

Registered before the demo products are created, so the first run shows their
`product.created` and `product.processed` deliveries. Its id and secret are kept in
``.stack/demo-webhook.json`` (mode 0600, like the demo user's key), with a fingerprint of the
signing key that derived the secret: another WEBHOOK_SIGNING_KEY, or another receiver URL (a
changed DEMO_WEBHOOK_PORT), registers it again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from scripts.demo.client import DemoClient
from scripts.demo.webhook_receiver import WebhookReceiver

RECORD_FILE_NAME = "demo-webhook.json"  # next to the state file


class DemoWebhookError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class DemoWebhook:
    webhook_id: str
    url: str
    registered: bool  # by this run


def signing_key_fingerprint(signing_key: str) -> str:
    return hashlib.sha256(b"demo-webhook:" + signing_key.encode()).hexdigest()[:16]


def _load(path: Path) -> dict[str, str] | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    fields = ("webhook_id", "secret", "url", "signing_key")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(f), str) for f in fields):
        return None
    return {f: raw[f] for f in fields}


def _save(path: Path, record: dict[str, str]) -> None:
    """Owner-only from the first byte on: it holds the endpoint's signing secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


async def ensure_demo_webhook(
    client: DemoClient,
    receiver: WebhookReceiver,
    user_id: str,
    record_path: Path,
    *,
    signing_key: str,
    keys_on: bool,
) -> DemoWebhook:
    """The demo user's endpoint at ``receiver.url``: the recorded one if it is still there and
    enabled, else registered now (an outdated recorded one deleted); the receiver gets its
    secret. ``client`` sends the demo user's key (none with AUTH_MODE=off: user_id is named)."""
    fingerprint = signing_key_fingerprint(signing_key)
    record = _load(record_path)
    whose = "" if keys_on else f"?user_id={user_id}"
    if record is not None:
        answer = await client.get(f"/webhooks{whose}")
        if answer.status != 200:
            raise DemoWebhookError(f"GET /webhooks answered {answer.status}: {answer.body[:200]!r}")
        listed = {hook["webhook_id"]: hook for hook in answer.json()}
        hook = listed.get(record["webhook_id"])
        if hook is not None:
            current = (
                hook["enabled"]
                and hook["url"] == receiver.url
                and record["signing_key"] == fingerprint
            )
            if current:
                receiver.secret = record["secret"]
                return DemoWebhook(record["webhook_id"], receiver.url, registered=False)
            await client.request("DELETE", client.api(f"/webhooks/{record['webhook_id']}"))
    body: dict[str, object] = {"url": receiver.url}
    if not keys_on:
        body["user_id"] = user_id
    answer = await client.post("/webhooks", body)
    if answer.status != 201:
        raise DemoWebhookError(f"POST /webhooks answered {answer.status}: {answer.body[:200]!r}")
    created = answer.json()
    _save(
        record_path,
        {
            "webhook_id": created["webhook_id"],
            "secret": created["secret"],
            "url": receiver.url,
            "signing_key": fingerprint,
        },
    )
    receiver.secret = created["secret"]
    return DemoWebhook(created["webhook_id"], receiver.url, registered=True)
