"""Migrations on a brand-new database: idempotent, and safe from two processes at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import asyncpg
import pytest

from db.migrate import discover, migrate
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_database(stack_env):
    admin_url = stack_env["POSTGRES_URL"]
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield admin_url.rsplit("/", 1)[0] + "/" + name
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


async def test_migrations_apply_once_even_when_run_concurrently(fresh_database):
    first, second = await asyncio.gather(migrate(fresh_database), migrate(fresh_database))
    versions = [m.version for m in discover()]
    assert sorted(first + second) == versions  # each applied exactly once, by one of the two
    assert await migrate(fresh_database) == []


def test_migrate_command_runs_twice_with_info_logging(fresh_database):
    env = {**os.environ, "POSTGRES_URL": fresh_database, "LOG_LEVEL": "info"}
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "db", "migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
