"""The bench report's section on the Redis client (bench/results/redis_clients.json, written by
bench/test_bench_redis_clients.py): one row per candidate, the winner and why, from the numbers.

Every verdict here is computed from the data: the winner is the candidate of least server CPU per
request, and its lead is stated as the CPU saved against the runner-up and in how many of the
interleaved rounds it was the cheaper of the two (a lead the rounds do not agree on is noise).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

# hiredis is a new dependency (a C extension): worth it only for a clear saving, at least this
# share of the server's CPU per request, and in at least this share of the rounds.
HIREDIS_WORTH_SHARE = 0.05
AGREEING_ROUNDS = 2 / 3
REDIS_TIER_TARGET = 2.0  # issue 15: a Redis-tier hit at most 2× the floor's CPU per request
# (redis-py with the Python parser, the same with hiredis) in the product's configuration first.
HIREDIS_PAIRS = (
    ("co_rp_block_py", "co_rp_block_hi"),
    ("rp_block_py", "rp_block_hi"),
    ("rp_plain_py", "rp_plain_hi"),
)
# (blocking pool, plain pool) with the same parser and coalescing.
POOL_PAIRS = (
    ("co_rp_block_hi", "co_rp_plain_hi"),
    ("rp_block_hi", "rp_plain_hi"),
    ("rp_block_py", "rp_plain_py"),
)
PRODUCT = "co_rp_block_py"  # what catalogue/cache.py does today


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def _rounds(row: dict[str, Any]) -> list[float]:
    return row.get("round_cpu_us_per_request") or []


@dataclass(frozen=True)
class Lead:
    """What `b` saves over `a`, per request, in the same rounds."""

    saved_us: float  # median of the per-round differences (negative: b costs more)
    share: float  # of a's CPU per request
    lower: int  # rounds where b took less CPU than a
    rounds: int

    @property
    def agreed(self) -> bool:
        """The rounds agree on it: not a lead within the noise."""
        return self.rounds > 0 and self.lower >= AGREEING_ROUNDS * self.rounds

    def words(self) -> str:
        more_or_less = "less" if self.saved_us >= 0 else "more"
        return (
            f"{_num(abs(self.saved_us))} µs per request {more_or_less}"
            f" ({_num(abs(self.share) * 100)} %), cheaper in {self.lower} of {self.rounds} rounds"
        )


def _lead(a: dict[str, Any], b: dict[str, Any]) -> Lead:
    pairs = list(zip(_rounds(a), _rounds(b), strict=False))
    saved = statistics.median(x - y for x, y in pairs) if pairs else 0.0
    return Lead(
        saved_us=saved,
        share=saved / a["cpu_us_per_request"] if a.get("cpu_us_per_request") else 0.0,
        lower=sum(y < x for x, y in pairs),
        rounds=len(pairs),
    )


def _ranked(rows: dict[str, dict[str, Any]], *, coalesced: bool | None = None) -> list[str]:
    """Candidates but the floor, least CPU per request first (only coalesced or only not, if
    asked)."""
    names = [
        name
        for name, row in rows.items()
        if name != "floor"
        and row.get("cpu_us_per_request") is not None
        and (coalesced is None or bool(row.get("coalesced")) == coalesced)
    ]
    return sorted(names, key=lambda name: rows[name]["cpu_us_per_request"])


def _table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| candidate | requests/s | p99 (ms) | server CPU µs/request | µs per GET (over the floor)"
        " | × floor (CPU) | keys per Redis command | redis-server CPU µs/request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in data["candidates"].items():
        is_floor = name == "floor"
        lines.append(
            f"| {row.get('label', name)} | {_num(row.get('rps'), '{:.0f}')}"
            f" | {_num(row.get('p99_ms'), '{:.2f}')} | {_num(row.get('cpu_us_per_request'))}"
            f" | {'–' if is_floor else _num(row.get('get_us'))}"
            f" | {_num(row.get('over_floor_cpu'), '{:.2f}')}×"
            f" | {'–' if is_floor else _num(row.get('keys_per_command', 1.0), '{:.2f}')}"
            f" | {'–' if is_floor else _num(row.get('redis_cpu_us_per_request'))} |"
        )
    for name, reason in (data.get("not_measured") or {}).items():
        lines.append(f"| {name}: not measured ({reason}) | – | – | – | – | – | – | – |")
    return [*lines, ""]


def _why(rows: dict[str, dict[str, Any]], ranked: list[str], what: str) -> list[str]:
    """`what`'s winner (ranked[0]) and its lead over the runner-up, in numbers."""
    if not ranked:
        return [f"- {what}: nothing measured."]
    best = rows[ranked[0]]
    line = (
        f"- **{what}: {best['label']}**, {_num(best['cpu_us_per_request'])} µs of server CPU per"
        f" request, {_num(best.get('get_us'))} µs of it for the GET"
        f" ({_num(best.get('over_floor_cpu'), '{:.2f}')}× the floor),"
        f" {_num(best.get('rps'), '{:.0f}')} requests/s, p99 {_num(best.get('p99_ms'), '{:.2f}')} ms"
    )
    if len(ranked) > 1:
        second = rows[ranked[1]]
        lead = _lead(second, best)
        line += (
            f". It won on CPU per request: {lead.words()} than the runner-up, {second['label']}"
            f" ({_num(second['cpu_us_per_request'])} µs, {_num(second.get('get_us'))} µs for the"
            f" GET, {_num(second.get('rps'), '{:.0f}')} requests/s, p99"
            f" {_num(second.get('p99_ms'), '{:.2f}')} ms)"
            + ("" if lead.agreed else "; the rounds disagree: a lead within the noise")
        )
    if best.get("coalesced") and best.get("keys_per_command"):
        line += (
            f"; its MGETs carried {_num(best['keys_per_command'], '{:.1f}')} keys on average, so"
            " the client's per-command cost is paid once per batch, not once per request"
        )
    return [line + "."]


def _hiredis(rows: dict[str, dict[str, Any]]) -> list[str]:
    """hiredis against redis-py's Python parser, per pair measured; the verdict on the first
    pair there is (HIREDIS_PAIRS: the product's configuration first)."""
    lines = []
    verdict: str | None = None
    for python_name, hiredis_name in HIREDIS_PAIRS:
        python, hi = rows.get(python_name), rows.get(hiredis_name)
        if not python or not hi:
            continue
        lead = _lead(python, hi)
        lines.append(
            f"- hiredis in {python['label']}: {lead.words()}; requests/s"
            f" {_num(python.get('rps'), '{:.0f}')} → {_num(hi.get('rps'), '{:.0f}')}."
        )
        if verdict is None:
            worth = lead.share >= HIREDIS_WORTH_SHARE and lead.agreed
            verdict = (
                f"- **hiredis {'is' if worth else 'is not'} worth adding to the product**"
                f" (while it uses redis-py): in {python['label']} it saves"
                f" {_num(lead.share * 100)} % of the server's CPU per request, cheaper in"
                f" {lead.lower} of {lead.rounds} rounds, against a bar for a new dependency of"
                f" ≥ {HIREDIS_WORTH_SHARE * 100:.0f} % in ≥ {AGREEING_ROUNDS:.0%} of the rounds."
            )
    return [*lines, *([verdict] if verdict else [])]


def _pool(rows: dict[str, dict[str, Any]]) -> list[str]:
    """redis-py's plain pool against its blocking one, parser and coalescing alike."""
    lines = []
    for blocking_name, plain_name in POOL_PAIRS:
        blocking, plain = rows.get(blocking_name), rows.get(plain_name)
        if plain and blocking:
            lines.append(
                f"- ConnectionPool instead of BlockingConnectionPool ({plain['label']}):"
                f" {_lead(blocking, plain).words()}."
            )
    return lines


def _target(rows: dict[str, dict[str, Any]]) -> list[str]:
    reach = [
        rows[name]["label"]
        for name in _ranked(rows)
        if (rows[name].get("over_floor_cpu") or 99) <= REDIS_TIER_TARGET
    ]
    return [
        f"- within {REDIS_TIER_TARGET}× the floor's CPU (issue 15's Redis-tier goal, here for a"
        " bare handler, before any of the API's middleware): "
        + ("; ".join(reach) if reach else "none")
        + "."
    ]


def _load(data: dict[str, Any]) -> str:
    load = data.get("load_average")
    if not load:
        return ""
    return (
        f" The machine's 1-minute load average was {_num(load[0], '{:.1f}')} at the start and"
        f" {_num(load[-1], '{:.1f}')} at the end, on {data.get('cpus', '?')} CPUs: with other"
        " work running, every figure is higher than on an idle machine, the ratios less so."
    )


def section(data: dict[str, Any] | None) -> list[str]:
    lines = ["## Redis clients: one GET per request, by client, pool and parser", ""]
    if data is None or not data.get("candidates"):
        return [*lines, "No results (bench/results/redis_clients.json is missing).", ""]
    rows = data["candidates"]
    versions = ", ".join(f"{name} {version}" for name, version in data.get("versions", {}).items())
    lines += [
        "`bench/redis_client_server.py`, bare aiohttp + uvloop, one route doing one Redis GET of"
        f" a {data.get('body_bytes', '?')}-byte value (one of {data.get('keys', '?')} keys in"
        f" rotation) and answering it, one process per candidate in `{data.get('venv', '?')}`"
        f" ({versions}); the floor is the same server answering the same bytes with no Redis"
        " call; the coalesced candidates run the product's `catalogue/coalesced_get.py` (GETs of"
        " one loop iteration as one MGET) over the client, the redis-py blocking pool is the"
        " product's `catalogue.cache.connect`. All pinned to one core (wrk on another:"
        f" {'yes' if data.get('pinned') else 'no'}), `wrk -t{data.get('threads', 1)}"
        f" -c{data.get('connections', '?')}`, {data.get('rounds', '?')} interleaved rounds of"
        f" {data.get('duration_s', '?')} s (order alternating). Server CPU per request is the"
        " process's user + system time from `/proc` (every thread: glide's Rust runtime"
        " included) over its requests, medians over the rounds; µs per GET is the median of"
        " the per-round differences to the floor. redis-server's CPU is that of a Redis shared"
        " with other clients: indicative only." + _load(data),
        "",
        *_table(data),
        *_why(rows, _ranked(rows), "Winner"),
        *_why(rows, _ranked(rows, coalesced=False), "Best client alone (one GET per request)"),
        *_hiredis(rows),
        *_pool(rows),
        *_target(rows),
    ]
    product, ranked = rows.get(PRODUCT), _ranked(rows)
    if product and ranked and ranked[0] != PRODUCT:
        lines.append(
            f"- against {product['label']}, {_num(product['cpu_us_per_request'])} µs per"
            f" request, the winner takes {_lead(product, rows[ranked[0]]).words()}."
        )
    discarded = data.get("discarded_rounds") or []
    lines.append(
        f"- rounds discarded and run again: {len(discarded)}"
        + (f" ({'; '.join(discarded)})" if discarded else "")
    )
    return [*lines, ""]
