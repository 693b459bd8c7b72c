"""A process's CPU time from /proc: server CPU per request is steadier than requests/s on a small,
shared machine (a round that loses the core to something else loses requests, not CPU per
request)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` (all its threads) has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # After "pid (comm)" (comm may hold spaces), utime and stime are stat(5)'s fields 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S
