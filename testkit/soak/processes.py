"""The soak's own processes (API processes, worker supervisors) and the stack's services, as
the fault injector acts on them: start, SIGKILL, SIGTERM, SIGSTOP/SIGCONT, and whether one died
without being told to.

Every process runs in its own session, so a Ctrl-C at the terminal reaches the soak only, which
then stops them itself. Each appends to its own log file in the run's folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts" / "stack"
log = logging.getLogger("soak")


class ManagedProcess:
    """One child process, restartable; `died` collects the exits nobody asked for."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path):
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.died: list[str] = []
        self.starts = 0
        self._expected_exit = False
        self._needs_restart = False
        self._watcher: asyncio.Task[None] | None = None
        self._log_offset = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        self._expected_exit = self._needs_restart = False
        self._watcher = asyncio.create_task(self._watch(self.process))

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if not self._expected_exit and process is self.process:
            line = f"{self.name} (pid {process.pid}) exited with {code}"
            self.died.append(line)
            self._needs_restart = True
            log.warning("soak.process_died %s", line)

    def log_since_start(self) -> str:
        with self.log_path.open("rb") as log_file:
            log_file.seek(self._log_offset)
            return log_file.read().decode("utf-8", "replace")

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        if not self.alive:
            return
        self._expected_exit = True
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)  # a frozen process dies as well
            self.process.kill()
        await self.process.wait()

    async def terminate(self, timeout_s: float) -> int | None:
        """SIGTERM (a graceful drain), SIGKILL after `timeout_s`; the exit status."""
        if not self.alive:
            return None if self.process is None else self.process.returncode
        self._expected_exit = True
        assert self.process is not None
        self.process.terminate()
        try:
            return await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    def freeze(self) -> None:
        if self.alive:
            os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.alive:
            os.kill(self.pid, signal.SIGCONT)

    async def restart_if_dead(self) -> bool:
        """Starts it again if it died on its own (the soak goes on; the death is reported). One
        the injector stopped is the injector's to start."""
        if self._needs_restart:
            await self.start()
            return True
        return False


async def wait_until(
    condition_name: str, check: object, *, timeout_s: float, interval_s: float = 0.2
) -> None:
    """Polls the coroutine function `check` until it returns true; TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout_s
    assert callable(check)
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{condition_name}: not within {timeout_s:g} s")
        await asyncio.sleep(interval_s)


class ApiProcess(ManagedProcess):
    def __init__(self, index: int, port: int, env: Mapping[str, str], folder: Path):
        argv = [sys.executable, str(ROOT / "run_api.py"), "--port", str(port), "--workers", "1"]
        super().__init__(f"api-{index}", argv, env, folder / f"api-{index}.log")
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def answering(self) -> bool:
        if not self.alive:
            return False
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(self.url + "/healthz") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        await wait_until(f"{self.name} answering /healthz", self.answering, timeout_s=timeout_s)


class WorkerProcess(ManagedProcess):
    def __init__(self, index: int, env: Mapping[str, str], folder: Path, *args: str):
        argv = [
            sys.executable,
            str(ROOT / "run_workers.py"),
            "--metrics-port",
            "0",
            *args,
        ]
        super().__init__(f"worker-{index}", argv, env, folder / f"worker-{index}.log")

    async def joined(self) -> bool:
        return self.alive and '"worker.assigned"' in self.log_since_start()

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        await wait_until(f"{self.name} in its group", self.joined, timeout_s=timeout_s)


# -- the stack's services -----------------------------------------------------------------------


async def stack(*args: str, timeout_s: float = 180.0) -> None:
    """`scripts/stack <args>` with the caller's STACK_* ports; RuntimeError if it fails."""
    process = await asyncio.create_subprocess_exec(
        str(STACK),
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"scripts/stack {' '.join(args)}: not done in {timeout_s:g} s") from None
    if process.returncode != 0:
        raise RuntimeError(
            f"scripts/stack {' '.join(args)} failed: {output.decode(errors='replace')[-2000:]}"
        )


def _pid_file(service: str) -> Path:
    folder = ROOT / ".stack"
    return {
        "postgres": folder / "postgres" / "data" / "postmaster.pid",
        "redis": folder / "redis" / "redis.pid",
        "kafka": folder / "kafka" / "kafka.pid",
    }[service]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command may hold spaces and parentheses: the fields after the last ")" are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def service_pids(service: str) -> list[int]:
    """The service's processes: PostgreSQL's postmaster and its backends (freezing the
    postmaster alone would leave open connections served), Redis's, or Kafka's JVM."""
    try:
        pid = int(_pid_file(service).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [pid, *(_children(pid) if service == "postgres" else [])]


def signal_service(
    service: str, signum: signal.Signals, pids: list[int] | None = None
) -> list[int]:
    """Sends `signum` to the service's processes (or to `pids`); the pids it reached."""
    reached = []
    for pid in pids if pids is not None else service_pids(service):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
            reached.append(pid)
    return reached
