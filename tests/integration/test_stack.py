"""scripts/stack: the private PostgreSQL + Redis + Kafka stack the integration tests run against.

These tests drive the real script and the real services. They leave the stack UP at the end,
because the other integration tests need it.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts" / "stack"
SERVICES = ("postgres", "redis", "kafka")

# On a fresh machine the first `up` installs Debian packages and resolves Kafka from Maven
# Central; afterwards it takes seconds.
FIRST_UP_TIMEOUT = 1100
COMMAND_TIMEOUT = 200  # `down` may wait 60 s for SIGTERM and 60 s more after SIGKILL

pytestmark = pytest.mark.timeout(FIRST_UP_TIMEOUT + 300)

PG_PORT = os.environ.get("STACK_PG_PORT", "5432")
REDIS_PORT = os.environ.get("STACK_REDIS_PORT", "6379")
KAFKA_PORT = os.environ.get("STACK_KAFKA_PORT", "9092")
KAFKA_BOOTSTRAP = f"127.0.0.1:{KAFKA_PORT}"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


async def stack(
    *args: str, limit_s: float = COMMAND_TIMEOUT, env: dict[str, str] | None = None
) -> Result:
    """Run scripts/stack. Also proves that it does not hang on the daemons it starts: they must
    not keep its stdout/stderr pipes open, or communicate() would never see EOF."""
    proc = await asyncio.create_subprocess_exec(
        str(STACK),
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"scripts/stack {' '.join(args)} did not finish within {limit_s}s")
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def service_states(status_stdout: str) -> dict[str, str]:
    """`postgres: running (pid 1, ...)` -> {"postgres": "running"}"""
    states = {}
    for line in status_stdout.splitlines():
        name, _, rest = line.partition(": ")
        states[name] = rest.split(" ", 1)[0]
    return states


async def up_all() -> None:
    result = await stack("up", limit_s=FIRST_UP_TIMEOUT)
    assert result.returncode == 0, result


async def topic_names() -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def create_topic(name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass  # left over by an interrupted earlier run
    finally:
        await admin.close()


async def delete_topic(name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


@pytest.mark.integration
async def test_up_twice_the_second_is_a_fast_no_op() -> None:
    await up_all()

    started = time.monotonic()
    again = await stack("up")
    elapsed = time.monotonic() - started

    assert again.returncode == 0, again
    for service in SERVICES:
        assert f"stack: {service}: already running" in again.stderr, again
    assert "starting" not in again.stderr, again
    assert elapsed < 15, f"a no-op `up` took {elapsed:.1f}s"


@pytest.mark.integration
async def test_status_reports_every_service_running() -> None:
    await up_all()

    status = await stack("status")

    assert status.returncode == 0, status
    assert service_states(status.stdout) == dict.fromkeys(SERVICES, "running"), status
    assert f"127.0.0.1:{PG_PORT}" in status.stdout
    assert f"127.0.0.1:{REDIS_PORT}" in status.stdout
    assert f"127.0.0.1:{KAFKA_PORT}" in status.stdout


@pytest.mark.integration
async def test_kafka_stops_and_starts_alone_and_keeps_its_topics() -> None:
    await up_all()
    topic = "stack-test-survives-restart"
    await create_topic(topic)
    try:
        down = await stack("down", "kafka")
        assert down.returncode == 0, down
        assert "stack: kafka: stopped" in down.stderr, down
        # `down` returns only once the broker process is really gone.
        stopped = await stack("status")
        assert stopped.returncode == 3, stopped
        assert service_states(stopped.stdout) == {
            "postgres": "running",
            "redis": "running",
            "kafka": "stopped",
        }, stopped

        up = await stack("up", "kafka")
        assert up.returncode == 0, up
        assert "stack: kafka: running" in up.stderr, up
        # Only kafka was touched: the other two were neither restarted nor reported on.
        assert "postgres" not in up.stderr, up
        assert "redis" not in up.stderr, up

        running = await stack("status")
        assert running.returncode == 0, running
        assert service_states(running.stdout) == dict.fromkeys(SERVICES, "running"), running
        # A real client gets metadata, and the topic created before the restart is still there.
        assert topic in await topic_names()
    finally:
        # Whatever failed above, leave the stack up for the other integration tests.
        await up_all()
        await delete_topic(topic)


@pytest.mark.integration
async def test_env_prints_one_export_line_with_the_configured_ports() -> None:
    result = await stack(
        "env",
        env={
            "STACK_PG_PORT": "15432",
            "STACK_REDIS_PORT": "16379",
            "STACK_KAFKA_PORT": "19092",
        },
    )

    assert result.returncode == 0, result
    assert result.stdout == (
        "export POSTGRES_URL=postgresql://catalogue@127.0.0.1:15432/catalogue"
        " REDIS_URL=redis://127.0.0.1:16379/0"
        " KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092\n"
    )


@pytest.mark.integration
async def test_env_defaults_match_the_running_stack() -> None:
    result = await stack("env")

    assert result.returncode == 0, result
    match = re.fullmatch(
        r"export POSTGRES_URL=postgresql://catalogue@127\.0\.0\.1:(\d+)/catalogue"
        r" REDIS_URL=redis://127\.0\.0\.1:(\d+)/0"
        r" KAFKA_BOOTSTRAP_SERVERS=127\.0\.0\.1:(\d+)\n",
        result.stdout,
    )
    assert match, result
    assert match.groups() == (PG_PORT, REDIS_PORT, KAFKA_PORT)


@pytest.mark.integration
async def test_unknown_service_is_rejected() -> None:
    result = await stack("down", "mysql")

    assert result.returncode != 0, result
    assert "unknown service 'mysql'" in result.stderr, result
