"""A plain-text progress bar on stderr, for the bulk commands (no dependency).

On a terminal the bar is redrawn in place (at most every REDRAW_S); elsewhere (a log file, CI)
a line is printed at every tenth of the way, so the output stays short.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

REDRAW_S = 0.1
WIDTH = 30


def bar(done: int, total: int, note: str = "", *, width: int = WIDTH) -> str:
    """`[#########---------------------] 30/100  30%  note`."""
    total = max(total, done, 1)
    filled = done * width // total
    percent = done * 100 // total
    line = f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total} {percent:3d}%"
    return f"{line}  {note}" if note else line


class Progress:
    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.interactive = self.stream.isatty()
        self._drawn_at = -float("inf")
        self._tenth = -1
        self._printed: int | None = None

    def update(self, done: int, note: str = "") -> None:
        if self.interactive:
            if self.clock() - self._drawn_at >= REDRAW_S or done >= self.total:
                self.stream.write("\r" + bar(done, self.total, note))
                self.stream.flush()
                self._drawn_at = self.clock()
            return
        tenth = done * 10 // max(self.total, 1)
        if tenth > self._tenth:
            self._tenth = tenth
            self._line(done, note)

    def finish(self, done: int, note: str = "") -> None:
        if self.interactive:
            self.stream.write("\r" + bar(done, self.total, note) + "\n")
            self.stream.flush()
        elif self._printed != done:
            self._line(done, note)

    def _line(self, done: int, note: str) -> None:
        self.stream.write(bar(done, self.total, note) + "\n")
        self.stream.flush()
        self._printed = done
