"""Plays a fault schedule (schedule.plan_faults) against the soak's processes and the stack's
services, and records when each fault began and ended (for the latency it cost, and for the
503s allowed while PostgreSQL was down). Every fault undoes itself before the next begins: a
service stopped is started again, a process frozen is thawed, one killed is started again and
waited for."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

from testkit.soak.processes import (
    ApiProcess,
    ManagedProcess,
    WorkerProcess,
    service_pids,
    signal_service,
    stack,
)
from testkit.soak.schedule import Fault, FaultKind

log = logging.getLogger("soak")


@dataclass(frozen=True, slots=True)
class Window:
    fault: Fault
    start_s: float
    end_s: float
    error: str | None = None


@dataclass
class Injector:
    apis: Sequence[ApiProcess]
    workers: Sequence[WorkerProcess]
    clock: object  # a callable: seconds since the load started
    worker_drain_s: float
    windows: list[Window] = field(default_factory=list)
    _frozen: list[tuple[str, list[int]]] = field(default_factory=list)

    def now(self) -> float:
        assert callable(self.clock)
        return float(self.clock())

    async def play(self, faults: Sequence[Fault], stop: asyncio.Event) -> None:
        for fault in faults:
            delay = fault.at_s - self.now()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)  # the schedule's next slot
            if stop.is_set():
                return
            start = self.now()
            error = None
            log.info("soak.fault %s", fault.as_dict())
            try:
                await self.inject(fault)
            except Exception as exc:  # reported as a violation; the soak goes on
                error = f"{type(exc).__name__}: {exc}"
                log.error("soak.fault_failed %s %s", fault.kind, error)
            self.windows.append(Window(fault, start, self.now(), error))

    async def inject(self, fault: Fault) -> None:
        kind = fault.kind
        if kind is FaultKind.KILL_WORKER:
            await self._restart(self.workers[fault.index], kill=True)
        elif kind is FaultKind.KILL_API:
            await self._restart(self.apis[fault.index], kill=True)
        elif kind is FaultKind.ROLLING_RESTART_WORKERS:
            for worker in self.workers:
                await self._restart(worker, kill=False)
        elif kind is FaultKind.FREEZE:
            await self._freeze(fault)
        else:
            service = fault.target
            await stack("down", service)
            try:
                await asyncio.sleep(fault.hold_s)  # the outage itself
            finally:
                await stack("up", service)

    async def _restart(self, process: ManagedProcess, *, kill: bool) -> None:
        if kill:
            await process.kill()
        else:
            await process.terminate(self.worker_drain_s + 15.0)
        await process.start()
        assert isinstance(process, ApiProcess | WorkerProcess)
        await process.wait_ready()

    async def _freeze(self, fault: Fault) -> None:
        target = fault.target
        if target in ("api", "worker"):
            process = (self.apis if target == "api" else self.workers)[fault.index]
            process.freeze()
            try:
                await asyncio.sleep(fault.hold_s)
            finally:
                process.thaw()
            return
        pids = signal_service(target, signal.SIGSTOP, service_pids(target))
        self._frozen.append((target, pids))
        try:
            await asyncio.sleep(fault.hold_s)
        finally:
            signal_service(target, signal.SIGCONT, pids)
            self._frozen.remove((target, pids))

    def thaw_all(self) -> None:
        """Whatever an interrupted freeze left stopped (Ctrl-C during a fault)."""
        for target, pids in self._frozen:
            signal_service(target, signal.SIGCONT, pids)
        self._frozen.clear()
        for process in (*self.apis, *self.workers):
            process.thaw()

    def postgres_down(self) -> list[tuple[float, float]]:
        return [
            (w.start_s, w.end_s)
            for w in self.windows
            if w.fault.kind is FaultKind.RESTART_POSTGRES
            or (w.fault.kind is FaultKind.FREEZE and w.fault.target == "postgres")
        ]
