"""A short soak (`scripts/soak`, testkit/soak/) passes on the stack: the whole system under load
and faults keeps every invariant, and its report says so with the figures it promises.

75 s of load by default (SOAK_TEST_DURATION), with seed 28 (SOAK_TEST_SEED), whose schedule
kills a worker, freezes Redis, kills an API process and restarts PostgreSQL in that time; the
run takes about 90 s with start-up and the checks. CI also runs the 2-minute soak after
`make test` (.ci/run).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from testkit.soak.schedule import plan_faults

from .conftest import ROOT

pytestmark = pytest.mark.integration

DURATION = os.environ.get("SOAK_TEST_DURATION", "75s")
SEED = int(os.environ.get("SOAK_TEST_SEED", "28"))


@pytest.mark.timeout(900)
def test_a_short_soak_keeps_every_invariant_and_reports_its_figures(stack_env, tmp_path):
    report_path = tmp_path / "soak.json"
    run = subprocess.run(
        [
            str(ROOT / "scripts" / "soak"),
            "--duration",
            DURATION,
            "--seed",
            str(SEED),
            "--report",
            str(report_path),
            "--folder",
            str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=840,
    )
    print(run.stdout)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-4000:]
    report = json.loads(report_path.read_text())

    assert report["passed"]
    assert report["violations"] == []
    assert report["seed"] == SEED
    assert (report["duplicates"], report["lost"], report["leaks"]) == (0, 0, 0)
    # The same seed plays the same schedule.
    planned = plan_faults(SEED, report["duration_s"])
    played = [(f["kind"], f["target"], f["index"]) for f in report["faults"]]
    assert played == [(str(f.kind), f.target, f.index) for f in planned]
    assert sum(report["faults_by_kind"].values()) == len(planned) >= 3
    for operation in ("create", "patch", "delete", "get", "list"):
        assert report["latency"][operation]["n"] > 0
        assert report["latency"][operation]["p50_ms"] <= report["latency"][operation]["p99_ms"]
    assert report["images_processed"] > 0
    assert report["requests"] == sum(
        n for outcomes in report["requests_by_outcome"].values() for n in outcomes.values()
    )
