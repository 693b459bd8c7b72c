"""The outbox relay's LISTEN connection is optional: its failures must never stop the relay."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import pytest

from config import load_settings
from server import relay as relay_module
from server.metrics import ApiMetrics
from server.relay import OutboxRelay


class ClosingConnection:
    """Connects, then fails to LISTEN, as a connection closed by the server does."""

    terminated = False

    async def add_listener(self, channel: str, callback: Callable[..., object]) -> None:
        raise asyncpg.InterfaceError("connection is closed")

    def terminate(self) -> None:
        self.terminated = True


@pytest.mark.parametrize("error_at", ["connect", "listen"])
async def test_a_listen_failure_of_any_kind_leaves_polling_on_and_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch, error_at: str
) -> None:
    connection = ClosingConnection()

    async def connect(*args: object, **kwargs: object) -> ClosingConnection:
        if error_at == "connect":
            raise asyncpg.InterfaceError("cannot connect")
        return connection

    monkeypatch.setattr(relay_module.asyncpg, "connect", connect)
    relay = OutboxRelay(
        None,  # type: ignore[arg-type]  # a pool is not needed to LISTEN, and there is no database
        load_settings({}, dotenv=None),
        ApiMetrics().outbox_published,
    )

    await relay._ensure_listener()

    assert relay._listener is None
    assert connection.terminated == (error_at == "listen")
