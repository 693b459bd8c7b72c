"""The compression process pool, rebuilt when one of its children dies.

A child killed by the OOM killer breaks a ProcessPoolExecutor for good: every pending and future
submission raises BrokenProcessPool. The pool here swaps in a fresh executor on the first such
failure; the affected images are retried by the pipeline like any transient failure.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import select
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from compressor.compress import CompressedImage, CompressOptions, compress, init_worker

log = logging.getLogger(__name__)


class CompressionPool:
    def __init__(self, processes: int, max_pixels: int) -> None:
        self.processes = processes
        self.max_pixels = max_pixels
        self.rebuilds = 0
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        # forkserver: children start from a clean process, not a fork of a running event loop.
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_init_child,
            initargs=(self.max_pixels, os.getpid()),
        )

    def warm_up(self) -> None:
        """Starts every child now, so the first jobs do not pay for process start-up."""
        futures = [self._executor.submit(abs, 0) for _ in range(self.processes)]
        for future in futures:
            future.result()

    async def compress(self, data: bytes, options: CompressOptions) -> CompressedImage:
        executor = self._executor
        try:
            return await asyncio.get_running_loop().run_in_executor(
                executor, compress, data, options
            )
        except BrokenProcessPool:
            self._replace(executor)
            raise

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is not broken:
            return  # another failed call already replaced it
        self._executor = self._new_executor()
        self.rebuilds += 1
        log.error("pool.rebuilt", extra={"rebuilds": self.rebuilds})
        broken.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        return [p.pid for p in (self._executor._processes or {}).values() if p.pid]

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


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
        return True
    return True
