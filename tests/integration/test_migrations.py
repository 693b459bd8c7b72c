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


async def _indexes(url: str) -> dict[str, bool]:
    """Index name -> valid, for the products table."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """SELECT c.relname AS name, i.indisvalid AS valid
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                WHERE i.indrelid = 'products'::regclass"""
        )
    finally:
        await conn.close()
    return {row["name"]: row["valid"] for row in rows}


async def test_the_list_index_is_valid_and_the_old_one_stays_for_a_rolling_deploy(
    fresh_database,
):
    await migrate(fresh_database)
    indexes = await _indexes(fresh_database)
    assert indexes.get("products_user_newest_idx") is True
    assert indexes.get("products_user_id_idx") is True


async def test_a_concurrent_build_that_failed_halfway_is_rebuilt_on_the_next_run(fresh_database):
    await migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        # What a failed CREATE INDEX CONCURRENTLY leaves behind: an INVALID index of that name.
        await conn.execute("DROP INDEX products_user_newest_idx")
        user = await conn.fetchval(
            "INSERT INTO users (username, email) VALUES ('u', 'u@example.com') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO products (user_id, product_name, product_price)"
            " VALUES ($1, 'a', 1), ($1, 'b', 2)",
            user,
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY products_user_newest_idx ON products (user_id)"
            )
        assert (await _indexes(fresh_database)).get("products_user_newest_idx") is False
        await conn.execute("DELETE FROM schema_migrations WHERE version = 2")
        assert await migrate(fresh_database) == [2]
        definition = await conn.fetchval(
            "SELECT pg_get_indexdef('products_user_newest_idx'::regclass)"
        )
    finally:
        await conn.close()
    assert (await _indexes(fresh_database)).get("products_user_newest_idx") is True
    assert definition.endswith("(user_id, ((- id)))"), definition
