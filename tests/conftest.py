"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import pytest

from config import Settings, load_settings

# Ports nothing listens on: a unit test's app can start, and any use of a service fails fast.
UNREACHABLE = {
    "POSTGRES_URL": "postgresql://nobody@127.0.0.1:1/none",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "LOG_LEVEL": "warning",
}


@pytest.fixture
def offline_settings(tmp_path) -> Settings:
    """Settings whose services are unreachable: for tests that must not need them. The open
    contract (AUTH_MODE=off): these tests are about input, not access."""
    env = {**UNREACHABLE, "IMAGE_STORAGE_URL": str(tmp_path / "images"), "AUTH_MODE": "off"}
    return load_settings(env, None)
