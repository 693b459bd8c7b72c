"""Applies the numbered SQL files of db/migrations/ in order, each once.

Safe to run from several processes at once: an advisory lock serialises them, and the applied
versions live in `schema_migrations`.

A file runs in one transaction, unless its first line is `-- migrate: no-transaction`: then its
statements run one by one, for those PostgreSQL refuses inside a transaction block (`CREATE
INDEX CONCURRENTLY`, which builds an index on a live table without blocking its writes). Such a
file must be safe to run again after stopping halfway.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same for every process migrating this database.
_LOCK_KEY = 0x6D696772_61746531
_LOCK_POLL_S = 0.05
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
NO_TRANSACTION = "-- migrate: no-transaction"
# The end of a statement in a no-transaction file: a semicolon closing a line. Such files hold
# plain DDL; a function body (`$$ … ; $$`, as in 0001) belongs in a transactional file.
_STATEMENT_END = re.compile(r";[ \t]*(?:--[^\n]*)?$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def in_transaction(self) -> bool:
        return self.sql.split("\n", 1)[0].strip() != NO_TRANSACTION

    def statements(self) -> list[str]:
        """The file's statements, each ending at a semicolon that closes a line."""
        parts = _STATEMENT_END.split(self.sql)
        return [p.strip() for p in parts if _without_comments(p).strip()]


def _without_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} must be named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a version number")
    return migrations


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Applies pending migrations; returns the versions applied now."""
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await _lock(conn)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version     INTEGER PRIMARY KEY,
                       name        TEXT NOT NULL,
                       applied_at  TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
            applied = {
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
            }
            done_now = []
            for migration in migrations:
                if migration.version in applied:
                    continue
                if migration.in_transaction:
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await _record(conn, migration)
                else:
                    for statement in migration.statements():
                        await conn.execute(statement)
                    await _record(conn, migration)
                log.info(
                    "db.migrated", extra={"version": migration.version, "migration": migration.name}
                )
                done_now.append(migration.version)
            return done_now
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()


async def _lock(conn: asyncpg.Connection) -> None:
    """Takes the migration lock by polling, never by waiting in `pg_advisory_lock`: a session
    waiting there holds a snapshot, and `CREATE INDEX CONCURRENTLY` in the session that holds the
    lock waits for every older snapshot to end, which would be a deadlock."""
    while True:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            return
        await asyncio.sleep(_LOCK_POLL_S)  # the lock lives in PostgreSQL: there is no event


async def _record(conn: asyncpg.Connection, migration: Migration) -> None:
    await conn.execute(
        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
        migration.version,
        migration.name,
    )
