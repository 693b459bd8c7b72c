"""Rates written `N/s`, `N/min` or `N/h`, as the rate-limit settings take them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PERIODS_S = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"\s*([0-9]{1,9})\s*/\s*([a-z]+)\s*")


@dataclass(frozen=True, slots=True)
class Rate:
    """`limit` requests per `period_s`; a client may spend a whole period's worth at once."""

    limit: int
    period_s: float

    @property
    def interval_s(self) -> float:
        """The time one request's worth takes to come back."""
        return self.period_s / self.limit

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h"}[self.period_s]
        return f"{self.limit}/{unit}"


def parse_rate(text: str) -> Rate:
    """`200/s` → Rate(200, 1.0); ValueError naming what is wrong otherwise."""
    match = _RATE.fullmatch(text.lower())
    if not match or match[2] not in _PERIODS_S:
        raise ValueError(f"{text!r} is not a rate like 200/s, 20/min or 100/h")
    limit = int(match[1])
    if limit < 1:
        raise ValueError(f"{text!r}: a rate's count must be at least 1")
    return Rate(limit, _PERIODS_S[match[2]])
