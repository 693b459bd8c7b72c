"""schemathesis against the real app: every phase (examples, coverage, fuzzing, and the stateful
phase that follows the document's links) and every check, ignored_auth included, find nothing.

The app listens on a loopback port with generous rate limits (429 stays documented, but a
budget running out would only make the run test less), and schemathesis runs in a thread while
the app serves on the test's loop. The run is bounded and reproducible: few examples per
operation, no deadline, a fixed seed, one worker, no example database.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp.test_utils import TestServer
from schemathesis.engine import events

from config import Settings
from config.rates import Rate
from server.app import create_app
from server.idempotency import HEADER as IDEMPOTENCY_KEY
from server.openapi import IDEMPOTENCY_KEY_PATTERN

pytestmark = pytest.mark.integration

GENEROUS = Rate(1_000_000, 1.0)
MAX_EXAMPLES = 25
SEED = 20261202
# schemathesis's default for positive_data_acceptance
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
STATE_ANSWERS = {
    "POST /products": ["422"],
    "PATCH /products/{product_id}": ["412"],
    "DELETE /products/{product_id}": ["412"],
}


@dataclass
class Run:
    operations: set[str] = field(default_factory=set)
    requests: Counter[str] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sign_ups: int = 0


def sign_up(base_url: str) -> str:
    """A new user's API key, from POST /users."""
    email = f"{uuid.uuid4().hex}@example.com"
    response = requests.post(
        f"{base_url}/users", json={"username": "schemathesis", "email": email}, timeout=10
    )
    response.raise_for_status()
    key: str = response.json()["api_key"]
    return key


def schemathesis_run(base_url: str, *, keys: bool) -> Run:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "database": "none",
                "deterministic": True,
            },
            "checks": {"enabled": True},
            "phases": {"stateful": {"max-steps": 20}},
            "suppress-health-check": ["all"],
            "operations": [
                # Answers about state that no schema can rule out for valid data: an
                # Idempotency-Key that schemathesis draws again with another body (422), a
                # user_id that names nobody (422), an If-Match of another version (412).
                {
                    "include-name": name,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [*ACCEPTED, *extra],
                        }
                    },
                }
                for name, extra in STATE_ANSWERS.items()
            ],
        }
    )
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    if keys:
        # A user of its own, signed up again whenever its key stops working: schemathesis
        # revokes keys and deletes users it learns the ids of (its own included), and
        # re-authenticates on a 401.
        @schema.auth()
        class SignedUp:
            def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
                run.sign_ups += 1
                return sign_up(base_url)

            def set(
                self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext
            ) -> None:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    # schemathesis draws the same Idempotency-Key again (the shortest, "0", above all), and the
    # API then answers what it recorded for the first request: another body's 422, or the
    # 201 of a product deleted since. A client makes a key per operation; so does this run, to
    # each valid key it draws (invalid ones stay as drawn). Unique across runs too: the test
    # database keeps idempotency records while user ids start at 1 again.
    run_id = uuid.uuid4().hex[:8]
    drawn = itertools.count()

    @schemathesis.hook
    def before_call(
        ctx: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]
    ) -> None:
        key = (case.headers or {}).get(IDEMPOTENCY_KEY)
        if isinstance(key, str) and re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
            case.headers = {
                **(case.headers or {}),
                IDEMPOTENCY_KEY: f"{key[:200]} {run_id}-{next(drawn)}",
            }

    run = Run()
    try:
        run_engine(schema, run)
    finally:
        schemathesis.hooks.unregister(before_call)  # global: only for this run
    return run


def run_engine(schema: Any, run: Run) -> None:
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            recorder = event.recorder
            run.phases[str(getattr(event, "phase", "fuzz"))] += len(recorder.interactions)
            for case_id, node in recorder.cases.items():
                run.operations.add(node.value.operation.label)
                interaction = recorder.interactions.get(case_id)
                if interaction is not None and interaction.response is not None:
                    run.requests[node.value.operation.label] += 1
                    run.statuses[interaction.response.status_code] += 1
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        info = check.failure_info
                        interaction = recorder.interactions.get(case_id)
                        answer = ""
                        if interaction is not None and interaction.response is not None:
                            answer = (
                                f"-> {interaction.response.status_code} "
                                f"{interaction.response.content[:300]!r}"
                            )
                        run.failures.append(
                            f"{check.name}: {info.failure.title}\n{info.failure.message}\n"
                            f"{info.code_sample[:1500]}\n{answer}"
                        )
        elif isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            run.errors.append(repr(event.exception))


@pytest.fixture
async def served(settings) -> AsyncIterator[tuple[TestServer, Settings]]:
    keyed = settings.replace(
        auth_mode="api_key",
        rate_limit_reads=GENEROUS,
        rate_limit_writes=GENEROUS,
        image_quota_per_hour=100_000_000,
    )
    server = TestServer(create_app(keyed), host="127.0.0.1")
    await server.start_server()
    yield server, keyed
    await server.close()


# Hypothesis warns when a generated case is too large to show; that is no failure of the API.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
async def test_schemathesis_finds_nothing_with_api_keys(served):
    server, _ = served
    base_url = str(server.make_url("")).rstrip("/")
    run = await asyncio.to_thread(schemathesis_run, base_url, keys=True)
    summary = (
        f"{len(run.operations)} operations, {sum(run.requests.values())} requests, "
        f"statuses {dict(sorted(run.statuses.items()))}, {run.sign_ups} sign-ups"
    )
    print(summary, sorted(run.operations), run.phases)
    print("\n\n".join(run.failures[:30]))
    print("\n".join(run.errors[:20]))
    assert not run.errors, run.errors
    assert not run.failures, f"{len(run.failures)} failures"
