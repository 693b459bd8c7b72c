"""catalogue.retry as the worker uses it: every failure seen, the permanent one at once, the
last one wrapped, and the context of the default log line."""

from __future__ import annotations

import pytest

from catalogue.retry import RetriesExhausted, RetryPolicy, retry

NO_WAIT = RetryPolicy(base_s=0.0, cap_s=0.0, max_attempts=3)


class Flaky:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_a_zero_base_retries_at_once_and_a_negative_one_is_refused():
    assert RetryPolicy(base_s=0.0, cap_s=60.0).delay_s(5) == 0
    with pytest.raises(ValueError, match="0 <= base_s <= cap_s"):
        RetryPolicy(base_s=-1.0)


async def test_every_failure_is_seen_and_the_last_one_is_wrapped():
    seen: list[tuple[str, int]] = []
    operation = Flaky(OSError("a"), OSError("b"), OSError("c"))
    with pytest.raises(RetriesExhausted) as caught:
        await retry(
            operation, NO_WAIT, what="step", on_failure=lambda e, n: seen.append((str(e), n))
        )
    assert seen == [("a", 1), ("b", 2), ("c", 3)]
    assert (caught.value.attempts, str(caught.value.last)) == (3, "c")


async def test_a_permanent_failure_propagates_as_itself_at_once():
    seen: list[int] = []
    operation = Flaky(ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        await retry(
            operation,
            NO_WAIT,
            what="step",
            is_transient=lambda e: not isinstance(e, ValueError),
            on_failure=lambda e, n: seen.append(n),
        )
    assert operation.calls == 1
    assert seen == [1]


async def test_the_default_retry_log_names_the_step_and_carries_its_context(caplog):
    assert await retry(Flaky(OSError("down")), NO_WAIT, what="job.load", log_extra={"id": 5})
    (record,) = caplog.records
    assert record.getMessage() == "job.load.retry"
    assert (record.id, record.attempt, record.error) == (5, 1, "OSError('down')")
