"""The soak's schedules: a seed replays the same faults and source outages, a short run still
sees every kind of fault, and faults never overlap nor start in the quiet end."""

from __future__ import annotations

import itertools

from testkit.soak.schedule import (
    FaultKind,
    SourceMode,
    Timing,
    mode_at,
    plan_faults,
    plan_sources,
)


def test_the_same_seed_gives_the_same_fault_schedule_and_another_seed_another():
    assert plan_faults(7, 600) == plan_faults(7, 600)
    assert plan_faults(7, 600) != plan_faults(8, 600)


def test_a_two_minute_run_sees_several_kinds_and_a_ten_minute_one_sees_every_kind():
    for seed in range(20):
        assert len({f.kind for f in plan_faults(seed, 120)}) >= 4
        assert {f.kind for f in plan_faults(seed, 600)} == set(FaultKind)


def test_faults_follow_each_other_and_leave_the_start_and_the_end_quiet():
    timing = Timing()
    for seed in range(20):
        faults = plan_faults(seed, 600, timing=timing)
        assert faults[0].at_s == timing.first_s
        assert faults[-1].at_s < 600 - timing.quiet_end_s
        for before, after in itertools.pairwise(faults):
            assert after.at_s >= before.at_s + before.hold_s + timing.busy_s + timing.gap_s[0]


def test_kills_and_rolling_restarts_hold_nothing_and_freezes_and_outages_do():
    for fault in plan_faults(3, 600):
        if fault.kind in (FaultKind.KILL_API, FaultKind.KILL_WORKER):
            assert fault.hold_s == 0
            assert fault.index in (0, 1)
        elif fault.kind is FaultKind.RESTART_POSTGRES:
            assert fault.target == "postgres"
            assert fault.hold_s > 0
        elif fault.kind is FaultKind.FREEZE:
            assert fault.target in ("postgres", "redis", "kafka", "api", "worker")
            assert 2 <= fault.hold_s <= 8


def test_sources_alternate_between_healthy_and_unhealthy_phases_over_the_whole_run():
    phases = plan_sources(5, 600)
    assert phases == plan_sources(5, 600)
    assert phases[0].mode is SourceMode.OK
    assert phases[0].at_s == 0
    for before, after in itertools.pairwise(phases):
        assert abs(after.at_s - (before.at_s + before.lasts_s)) < 0.02  # rounded to 10 ms
        assert (before.mode is SourceMode.OK) != (after.mode is SourceMode.OK)
    assert phases[-1].at_s + phases[-1].lasts_s >= 600
    assert {p.mode for p in phases} > {SourceMode.OK}


def test_the_sources_mode_at_a_moment_is_its_phases_and_healthy_outside_them():
    phases = plan_sources(5, 120)
    second = phases[1]
    assert mode_at(phases, second.at_s + second.lasts_s / 2) is second.mode
    assert mode_at(phases, 10_000) is SourceMode.OK
