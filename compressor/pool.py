"""The compression process pool, rebuilt when one of its children dies.

A child that dies (a decoder crash, the OOM killer) breaks a ProcessPoolExecutor for good: every
pending and future submission raises BrokenProcessPool. The pool swaps in a fresh executor at
once. Which image killed the process is unknown, so every image that was in flight runs again
alone, one at a time, in a quarantine process: the one that kills that process too is rejected
(`crashes_decoder`), and the others succeed without spending any of their retry attempts.

A compression running past its timeout is handled the same way: a running child cannot be told
to stop, so the pool's processes are killed, and the image that overruns again alone is
rejected (`too_slow`).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import select
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Generic, TypeVar

from compressor.compress import init_worker
from compressor.rejected import ImageRejected
from compressor.renditions import RenderedImage, RenditionOptions, render

Opts = TypeVar("Opts")  # what the work takes beside the bytes (its options)
Out = TypeVar("Out")  # what it returns

log = logging.getLogger(__name__)


class CompressionPool(Generic[Opts, Out]):
    """`async with CompressionPool(...) as pool`: started and warmed up, then closed.

    The work is a module-level function of (bytes, options), compressor.renditions.render by
    default: its children import it by name."""

    def __init__(
        self,
        processes: int,
        max_pixels: int,
        *,
        timeout_s: float = 30.0,
        work: Callable[[bytes, Opts], Out] = render,  # type: ignore[assignment]
        on_rebuild: Callable[[], object] | None = None,
    ) -> None:
        self.processes = processes
        self.max_pixels = max_pixels
        self.timeout_s = timeout_s
        self.work = work  # a module-level function: the children import it by name
        self.rebuilds = 0
        self.on_rebuild = on_rebuild  # e.g. a metric's inc
        self._executor = self._new_executor(processes)
        self._quarantine: ProcessPoolExecutor | None = None
        self._quarantine_turn = asyncio.Lock()

    def _new_executor(self, processes: int) -> ProcessPoolExecutor:
        # forkserver: children start from a clean process, not a fork of a running event loop.
        return ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_init_child,
            initargs=(self.max_pixels, os.getpid()),
        )

    async def __aenter__(self) -> CompressionPool[Opts, Out]:
        await asyncio.to_thread(self.warm_up)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def warm_up(self) -> None:
        """Starts every child now, so the first jobs do not pay for process start-up."""
        futures = [self._executor.submit(abs, 0) for _ in range(self.processes)]
        for future in futures:
            future.result()

    async def compress(self, data: bytes, options: Opts) -> Out:
        executor = self._executor
        try:
            return await self._run(executor, data, options)
        except BrokenProcessPool:
            self._replace(executor)
        except TimeoutError:
            log.error("pool.compress_timeout", extra={"bytes": len(data), "s": self.timeout_s})
            _kill_processes(executor)  # breaks it: every image in flight goes the same way
            self._replace(executor)
        return await self._alone(data, options)

    async def _run(self, executor: ProcessPoolExecutor, data: bytes, options: Opts) -> Out:
        return await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(executor, self.work, data, options),
            self.timeout_s,
        )

    async def _alone(self, data: bytes, options: Opts) -> Out:
        """Runs an image that was in flight when a process died, with nothing else beside it."""
        async with self._quarantine_turn:
            if self._quarantine is None:
                self._quarantine = self._new_executor(1)
            executor = self._quarantine
            try:
                return await self._run(executor, data, options)
            except BrokenProcessPool:
                self._drop_quarantine(executor)
                log.error("pool.image_killed_its_process", extra={"bytes": len(data)})
                raise ImageRejected(
                    "crashes_decoder", "a compression process died with it, then again alone"
                ) from None
            except TimeoutError:
                _kill_processes(executor)
                self._drop_quarantine(executor)
                log.error("pool.image_too_slow", extra={"bytes": len(data), "s": self.timeout_s})
                raise ImageRejected(
                    "too_slow", f"over {self.timeout_s} s to compress, twice, the second alone"
                ) from None

    def _drop_quarantine(self, executor: ProcessPoolExecutor) -> None:
        self._quarantine = None
        executor.shutdown(wait=False, cancel_futures=True)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is not broken:
            return  # another failed call already replaced it
        self._executor = self._new_executor(self.processes)
        self.rebuilds += 1
        if self.on_rebuild is not None:
            self.on_rebuild()
        log.error("pool.rebuilt", extra={"rebuilds": self.rebuilds})
        broken.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        return [p.pid for p in (self._executor._processes or {}).values() if p.pid]

    async def close(self) -> None:
        """Ends the pool's processes, waiting for the compressions they run (off the loop)."""
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._quarantine is not None:
            self._quarantine.shutdown(wait=True, cancel_futures=True)


def _kill_processes(executor: ProcessPoolExecutor) -> None:
    for process in list((executor._processes or {}).values()):
        process.kill()


def _init_child(max_pixels: int, supervisor_pid: int) -> None:
    init_worker(max_pixels)
    _exit_with(supervisor_pid)


def _exit_with(supervisor_pid: int) -> None:
    """Ends this pool process when the supervisor ends, however it ends.

    Its parent is the forkserver, not the supervisor, and it waits on a call queue whose write
    end it holds itself: after a SIGKILL (the OOM killer's choice, say) of the supervisor it
    would wait for ever, keeping the forkserver and the resource tracker alive with it."""
    try:
        # A pidfd turns readable when the process exits: no polling, no pid-reuse race.
        supervisor = os.pidfd_open(supervisor_pid)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd (not Linux 5.3+): poll instead
        supervisor = None

    def watch() -> None:
        if supervisor is not None:
            select.select([supervisor], [], [])
        else:
            while _alive(supervisor_pid):
                threading.Event().wait(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, under another user
    return True


RenderPool = CompressionPool[RenditionOptions, RenderedImage]
"""The worker's pool: one task per source renders its whole set (compressor.renditions)."""
