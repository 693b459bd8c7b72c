"""The soak's fault schedule and the image sources' outages, as pure functions of a seed.

The same seed and duration give the same schedule, so a failing run can be replayed (its
interleaving with the load still varies: the processes' timing is not seeded). Faults follow
each other with a gap rather than overlap, so the report can tell what each kind did to latency;
the sources' outages run on their own clock and do overlap the faults.
"""

from __future__ import annotations

import enum
import random
from dataclasses import asdict, dataclass
from typing import Any


class FaultKind(enum.StrEnum):
    KILL_WORKER = "kill_worker"  # SIGKILL a worker supervisor, then start it again
    KILL_API = "kill_api"  # SIGKILL an API process, then start it again
    RESTART_KAFKA = "restart_kafka"  # scripts/stack down kafka, hold, up
    RESTART_REDIS = "restart_redis"
    RESTART_POSTGRES = "restart_postgres"
    FREEZE = "freeze"  # SIGSTOP one process or service for seconds, then SIGCONT
    ROLLING_RESTART_WORKERS = "rolling_restart_workers"  # SIGTERM and restart each in turn


# What a freeze may stop: a service of the stack or one of the soak's own processes.
FREEZE_TARGETS = ("postgres", "redis", "kafka", "api", "worker")
SERVICE_OF = {
    FaultKind.RESTART_KAFKA: "kafka",
    FaultKind.RESTART_REDIS: "redis",
    FaultKind.RESTART_POSTGRES: "postgres",
}


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float  # since the load started
    kind: FaultKind
    target: str  # "worker", "api", or a service name
    index: int  # which worker or API process (0 for services)
    hold_s: float  # how long the thing stays down or frozen (0 for a kill: restarted at once)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": str(self.kind)}


@dataclass(frozen=True, slots=True)
class Timing:
    first_s: float = 8.0  # the load runs undisturbed this long first
    gap_s: tuple[float, float] = (4.0, 12.0)  # between the end of one fault and the next
    hold_s: tuple[float, float] = (2.0, 8.0)  # a service down or a process frozen
    quiet_end_s: float = 10.0  # no fault starts this close to the end of the load
    # The expected length of a fault's own work beyond its hold (a restart, a rolling restart),
    # so the next one is not planned on top of it.
    busy_s: float = 10.0


def plan_faults(
    seed: int, duration_s: float, *, processes: int = 2, timing: Timing | None = None
) -> list[Fault]:
    """Faults from `timing.first_s` to `duration_s - timing.quiet_end_s`. Kinds are drawn from
    a bag holding each kind once, refilled when empty, so a short run still sees every kind
    before any repeats."""
    timing = timing or Timing()
    rng = random.Random(seed)
    kinds = list(FaultKind)
    bag: list[FaultKind] = []
    faults: list[Fault] = []
    at = timing.first_s
    while at < duration_s - timing.quiet_end_s:
        if not bag:
            bag = kinds[:]
            rng.shuffle(bag)
        kind = bag.pop()
        hold = round(rng.uniform(*timing.hold_s), 2)
        if kind is FaultKind.FREEZE:
            target = rng.choice(FREEZE_TARGETS)
        elif kind in SERVICE_OF:
            target = SERVICE_OF[kind]
        elif kind is FaultKind.KILL_API:
            target = "api"
        else:
            target = "worker"
        index = rng.randrange(processes) if target in ("api", "worker") else 0
        if kind in (FaultKind.KILL_WORKER, FaultKind.KILL_API, FaultKind.ROLLING_RESTART_WORKERS):
            hold = 0.0
        faults.append(Fault(round(at, 2), kind, target, index, hold))
        at += hold + timing.busy_s + rng.uniform(*timing.gap_s)
    return faults


class SourceMode(enum.StrEnum):
    OK = "ok"
    SLOW = "slow"  # every answer delayed by seconds
    ERRORS = "errors"  # every answer a 503
    GONE = "gone"  # the server stops listening: connections refused


@dataclass(frozen=True, slots=True)
class SourcePhase:
    at_s: float
    mode: SourceMode
    lasts_s: float


def plan_sources(seed: int, duration_s: float) -> list[SourcePhase]:
    """Alternating healthy and unhealthy phases of the image sources. Unhealthy ones are short
    enough that most jobs ride them out on their retries, and long enough that some exhaust
    them (and go to the dead-letter topic)."""
    rng = random.Random(f"sources-{seed}")
    phases: list[SourcePhase] = []
    at = 0.0
    bad = [SourceMode.SLOW, SourceMode.ERRORS, SourceMode.GONE]
    while at < duration_s:
        ok = round(rng.uniform(10.0, 25.0), 2)
        phases.append(SourcePhase(round(at, 2), SourceMode.OK, ok))
        at += ok
        if at >= duration_s:
            break
        lasts = round(rng.uniform(3.0, 12.0), 2)
        phases.append(SourcePhase(round(at, 2), rng.choice(bad), lasts))
        at += lasts
    return phases


def mode_at(phases: list[SourcePhase], at_s: float) -> SourceMode:
    """The sources' mode at `at_s` (OK outside the planned span)."""
    for phase in phases:
        if phase.at_s <= at_s < phase.at_s + phase.lasts_s:
            return phase.mode
    return SourceMode.OK
