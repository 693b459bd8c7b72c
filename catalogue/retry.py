"""The one retry policy: exponential backoff with full jitter, bounded or not.

Two shapes of retrying share it:
- `retry(operation, policy, ...)`: run one operation until it succeeds, fails for good (the
  `is_transient` hook says no) or runs out of attempts: the worker's image attempts, its
  database and cache steps, its dead-letter publish and its start-up topic creation.
- `Backoff(policy)`: the delays of a long-running loop that reconnects for ever (the outbox
  relay, the invalidation listener): `await backoff.wait()` after a failure, `reset()` after a
  success.

Full jitter (a delay drawn uniformly from 0 to the exponential bound) spreads the retries of many
clients that failed together, so they do not come back in lockstep (AWS Architecture Blog,
"Exponential Backoff And Jitter").
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`base_s · 2^(attempt-1)`, capped at `cap_s`, jittered; at most `max_attempts` tries in
    all (None: no bound, for loops that run until they are stopped). A `base_s` of 0 retries at
    once (IMAGE_RETRY_BASE_SECONDS=0 is a valid setting)."""

    base_s: float
    cap_s: float = 60.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < self.base_s:
            raise ValueError("a retry policy needs 0 <= base_s <= cap_s")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay_s(self, attempt: int) -> float:
        """How long to wait after `attempt` failed tries (1-based)."""
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))

    def exhausted(self, attempt: int) -> bool:
        return self.max_attempts is not None and attempt >= self.max_attempts


class RetriesExhausted(Exception):
    """The operation failed with a transient error on every one of its attempts."""

    def __init__(self, what: str, attempts: int, last: BaseException) -> None:
        super().__init__(f"{what} failed {attempts} times; last error: {last!r}")
        self.what = what
        self.attempts = attempts
        self.last = last


def _always(_: BaseException) -> bool:
    return True


async def retry(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    is_transient: Callable[[BaseException], bool] = _always,
    on_failure: Callable[[BaseException, int], None] | None = None,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    log_extra: Mapping[str, object] | None = None,
) -> T:
    """Runs `operation` until it returns. An exception outside `retry_on`, or one that
    `is_transient` calls permanent, propagates at once; after the policy's last attempt the
    transient one propagates wrapped in RetriesExhausted.

    Hooks, neither of which may keep the error (it holds the failed attempt's frames):
    `on_failure(error, attempt)` sees every error `retry_on` catches, the permanent and the last
    one included; `on_retry(error, attempt, delay_s)` runs before each wait, and without it a
    warning `<what>.retry` is logged, with `log_extra`'s fields added."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await operation()
        except retry_on as exc:
            if on_failure is not None:
                on_failure(exc, attempt)
            if not is_transient(exc):
                raise
            if policy.exhausted(attempt):
                raise RetriesExhausted(what, attempt, exc) from exc
            delay = policy.delay_s(attempt)
            if on_retry is None:
                log.warning(
                    f"{what}.retry",
                    extra={
                        **(log_extra or {}),
                        "error": repr(exc),
                        "attempt": attempt,
                        "retry_in_s": round(delay, 3),
                    },
                )
            else:
                on_retry(exc, attempt, delay)
            # Not awaited under `except`: the sleeping frame would keep the error, its traceback
            # and every frame's locals (a source image, say) alive for the whole wait.
        await asyncio.sleep(delay)


class Backoff:
    """The growing delays of a loop that retries for ever: a failure waits longer each time, a
    success starts over."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def next_delay_s(self) -> float:
        self.failures += 1
        return self.policy.delay_s(self.failures)

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay_s())

    def reset(self) -> None:
        self.failures = 0
