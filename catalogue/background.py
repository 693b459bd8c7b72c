"""A loop an object runs beside its owner's work while an `async with` block lasts."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self


class BackgroundLoop:
    """Base of objects used as `async with obj:` that run `obj.run()` as a task until the block
    ends, then cancel it and wait for it to finish (so nothing it does outlives its owner)."""

    task_name = "background-loop"
    _task: asyncio.Task[None] | None = None

    def enabled(self) -> bool:
        """Whether entering the block starts the loop (a loop configured off does not)."""
        return True

    async def run(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self.enabled():
            self._task = asyncio.create_task(self.run(), name=self.task_name)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
