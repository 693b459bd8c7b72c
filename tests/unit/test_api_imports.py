"""What importing a request handler loads: not the Kafka client (the outbox relay's alone, started
by the app) and never the worker. Each import runs in a fresh interpreter, so modules another
test imported cannot hide one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = [
    "server.handlers.products",
    "server.handlers.users",
    "server.handlers.health",
    "server.handlers.images",
    "server.handlers.events",
]
UNWANTED = ("aiokafka", "compressor")


def loaded_by(module: str) -> list[str]:
    """The top-level packages of UNWANTED that importing `module` loads."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps(sorted({{m.partition('.')[0] for m in sys.modules}} & {set(UNWANTED)!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize("handler", HANDLERS)
def test_importing_a_request_handler_loads_neither_aiokafka_nor_the_worker(handler: str) -> None:
    assert loaded_by(handler) == []


def test_the_check_sees_aiokafka_when_it_is_loaded() -> None:
    assert loaded_by("server.relay") == ["aiokafka"]
