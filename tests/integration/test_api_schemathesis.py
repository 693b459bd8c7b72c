"""schemathesis against the real app and its /openapi.json: every phase (examples, coverage,
fuzzing, and the stateful phase that follows the document's links) with every check,
ignored_auth included, finds nothing. Once with API keys (the default contract), once with
AUTH_MODE=off (the open one).

The app listens on a loopback port, with rate limits too generous to reach (429 stays
documented; a budget running out would only make the run test less), while schemathesis runs
in a thread. The run is bounded and reproducible as far as the server's state allows: a few
examples per operation, no deadline, a fixed seed, derandomised generation, one worker, no
example database.

Where the run departs from what schemathesis draws, it does what a real client does, and says
why (`before_call`); where a valid request may meet state no schema can rule out, the statuses
that answer it are accepted for that operation only (STATE_ANSWERS).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import requests
import schemathesis
from aiohttp.test_utils import TestServer
from schemathesis.engine import events

from catalogue.ssrf import check_url_scheme_and_host
from config.rates import Rate
from server.app import create_app
from server.idempotency import HEADER as IDEMPOTENCY_KEY
from server.openapi import IDEMPOTENCY_KEY_PATTERN
from server.validation import PRICE_RANGE_PATTERN, WEBHOOK_URL_PATTERN

pytestmark = pytest.mark.integration

GENEROUS = Rate(1_000_000, 1.0)
MAX_EXAMPLES = 25
MAX_STATEFUL_STEPS = 20
SEED = 20261202
SIGNING_KEY = "schemathesis-signing-key-0123456789abcdefXYZ"
# schemathesis's own default for positive_data_acceptance
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
# Answers to valid requests that state decides: a user_id naming no user (422; with API keys a
# caller names only itself), an If-Match naming another version of the product (412).
STATE_ANSWERS = {
    "POST /products": ["422"],
    "POST /webhooks": ["422"],
    "PATCH /products/{product_id}": ["412"],
    "DELETE /products/{product_id}": ["412"],
}

# Answers that never end: schemathesis reads a whole body before it checks one, so an event
# stream would hold the run forever. Its bad input and answers are tested in
# tests/integration/test_product_events.py.
ENDLESS = ["GET /products/{product_id}/events"]


@dataclass
class Run:
    operations: set[str] = field(default_factory=set)
    requests: Counter[str] = field(default_factory=Counter)  # by phase
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sign_ups: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.operations)} operations, {sum(self.requests.values())} requests "
            f"({dict(self.requests)}), statuses {dict(sorted(self.statuses.items()))}, "
            f"{self.sign_ups} sign-ups, {len(self.failures)} failures, {len(self.errors)} errors"
        )


def sign_up(base_url: str) -> str:
    """A new user's API key, from POST /users."""
    email = f"{uuid.uuid4().hex}@example.com"
    response = requests.post(
        f"{base_url}/users", json={"username": "schemathesis", "email": email}, timeout=10
    )
    response.raise_for_status()
    key: str = response.json()["api_key"]
    return key


def config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "database": "none",
                "deterministic": True,
            },
            "checks": {"enabled": True},  # all of them
            "phases": {
                "stateful": {
                    "max-steps": MAX_STATEFUL_STEPS,
                    # The document's links, and those a Location header shows.
                    "inference": {"algorithms": ["location-headers"]},
                }
            },
            "suppress-health-check": ["all"],
            "operations": [
                {
                    "include-name": name,
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, *extra]}
                    },
                }
                for name, extra in STATE_ANSWERS.items()
            ]
            + [{"include-name": name, "enabled": False} for name in ENDLESS],
        }
    )


_PRICE_RANGE = re.compile(PRICE_RANGE_PATTERN)
_VALID_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_WEBHOOK_URL = re.compile(WEBHOOK_URL_PATTERN)
_URL_HOST = re.compile(r"^([A-Za-z]+://)(\[[^\]]*\]|[^/:?]+)")


def as_a_client_would(case: schemathesis.Case, run_id: str, drawn: itertools.count[int]) -> None:
    """What `before_call` changes in a valid request, as a client would send it:

    - an Idempotency-Key made for this request: schemathesis draws one key again (the shortest,
      "0", above all), and the API rightly answers what it recorded for the first request (a
      422 for another body, or a 201 for a product deleted since). Unique across runs too: the
      test database keeps idempotency records while user ids start at 1 again;
    - a price_range with its bounds in order: MIN above MAX is a 400, a rule the document can
      only state in words;
    - a webhook URL on a host the address rules accept: one whose literal IP address they
      refuse (loopback, private, reserved, …) is a 400, the other rule stated in words, so such
      a host becomes a name (names are judged only when a delivery connects)."""
    headers = case.headers or {}
    key = headers.get(IDEMPOTENCY_KEY)
    if isinstance(key, str) and _VALID_KEY.fullmatch(key):
        case.headers = {**headers, IDEMPOTENCY_KEY: f"{key[:200]} {run_id}-{next(drawn)}"}
    query = case.query or {}
    price_range = query.get("price_range")
    if isinstance(price_range, str) and _PRICE_RANGE.fullmatch(price_range):
        low, _, high = price_range.partition("-")
        if low.strip() and high.strip() and Decimal(low.strip()) > Decimal(high.strip()):
            case.query = {**query, "price_range": f"{high}-{low}"}
    body = case.body
    url = body.get("url") if isinstance(body, dict) else None
    if isinstance(url, str) and _WEBHOOK_URL.fullmatch(url) and check_url_scheme_and_host(url):
        case.body = {**body, "url": _URL_HOST.sub(r"\1hooks.example.com", url, count=1)}


def schemathesis_run(base_url: str, *, keys: bool) -> Run:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config())
    run = Run()
    if keys:
        # A user of its own, signed up again whenever its key stops working: schemathesis
        # revokes keys and deletes users whose ids it has seen (its own included), and
        # authenticates again after a 401.
        @schema.auth()
        class SignedUp:
            def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
                run.sign_ups += 1
                return sign_up(base_url)

            def set(
                self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext
            ) -> None:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    run_id, drawn = uuid.uuid4().hex[:8], itertools.count()

    @schemathesis.hook
    def before_call(
        ctx: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]
    ) -> None:
        as_a_client_would(case, run_id, drawn)

    try:
        for event in schemathesis.engine.from_schema(schema).execute():
            record(run, event)
    finally:
        schemathesis.hooks.unregister(before_call)  # a global hook: this run's only
    return run


def record(run: Run, event: events.EngineEvent) -> None:
    if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
        recorder = event.recorder
        phase = str(getattr(event, "phase", "fuzzing"))
        for case_id, node in recorder.cases.items():
            run.operations.add(node.value.operation.label)
            interaction = recorder.interactions.get(case_id)
            if interaction is not None and interaction.response is not None:
                run.requests[phase] += 1
                run.statuses[interaction.response.status_code] += 1
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.failure_info is None or gone_with_its_user(recorder, case_id, check.name):
                    continue
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
                    f"{info.code_sample[:2000]}\n{answer}"
                )
    elif isinstance(event, events.NonFatalError):
        run.errors.append(f"{event.label}: {event.info.format()}")
    elif isinstance(event, events.FatalError):
        run.errors.append(repr(event.exception))


def gone_with_its_user(recorder: Any, case_id: str, check: str) -> bool:
    """A product "not found" right after its create because the scenario deleted its user in
    between (DELETE /users/{id} deletes the user's products): schemathesis's own check knows
    only of deletes on the product's path. With keys a caller deletes only itself, so any
    user deleted is the product's owner; with AUTH_MODE=off the create named its owner."""
    if check != "ensure_resource_availability":
        return False
    answered = {}
    for cid, node in recorder.cases.items():
        interaction = recorder.interactions.get(cid)
        if interaction is not None and interaction.response is not None:
            answered[cid] = (node.value, interaction.response)
    deleted_users = {
        str(case.path_parameters["user_id"])
        for case, response in answered.values()
        if case.operation.label == "DELETE /users/{user_id}" and response.status_code == 204
    }
    if not deleted_users or case_id not in answered:
        return False
    product_id = str(answered[case_id][0].path_parameters.get("product_id"))
    for case, response in answered.values():
        if case.operation.label != "POST /products" or response.status_code != 201:
            continue
        if str(response.json().get("product_id")) != product_id:
            continue
        owner = case.body.get("user_id") if isinstance(case.body, dict) else None
        return owner is None or str(owner) in deleted_users
    return False


@pytest.fixture(params=["api_key", "off"])
async def served(request, settings) -> AsyncIterator[tuple[TestServer, bool]]:
    keys = request.param == "api_key"
    app_settings = settings.replace(
        auth_mode=request.param,
        rate_limit_reads=GENEROUS,
        rate_limit_writes=GENEROUS,
        image_quota_per_hour=100_000_000,
        webhook_signing_key=SIGNING_KEY,
    )
    db = await asyncpg.connect(settings.postgres_url)
    try:
        started = await db.fetchval("SELECT now()")
        server = TestServer(create_app(app_settings), host="127.0.0.1")
        await server.start_server()
        yield server, keys
        await server.close()
        # The endpoints the run registered (on names such as hooks.example.com, see
        # as_a_client_would) go with it: a webhook dispatcher of a later test would otherwise
        # deliver the run's events there, resolving names off this machine and holding its
        # connections, which made those tests' first attempts time out.
        await db.execute("DELETE FROM webhooks WHERE created_at >= $1", started)
    finally:
        await db.close()


# Hypothesis warns when a drawn case is too large to show: no failure of the API.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
async def test_schemathesis_finds_nothing(served):
    server, keys = served
    base_url = str(server.make_url("")).rstrip("/")
    run = await asyncio.to_thread(schemathesis_run, base_url, keys=keys)
    print(run.summary())
    report = "\n\n".join([*run.errors, *run.failures])
    assert not run.errors, f"{run.summary()}\n\n{report}"
    assert not run.failures, f"{run.summary()}\n\n{report}"
    # It did reach the API: every operation (but the document itself, which it reads), with
    # requests that passed and requests that were refused.
    assert len(run.operations) == (20 if keys else 17), sorted(run.operations)
    for status in (200, 201, 204, 400, 404):
        assert run.statuses[status], run.statuses
    assert run.requests["stateful"], run.requests
