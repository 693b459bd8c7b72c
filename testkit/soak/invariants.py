"""The soak's end-state checks, as pure functions: what the clients saw and what the system
holds go in, violations (one line each, naming the product) and counts come out.

Each client owns its user's products and runs one operation at a time, so for every product it
knows the last state it was answered (`Expected`) and whether an operation whose answer it never
got came after it (`certain` False: the product may be in either state, or gone).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from catalogue import image_state

DEAD_LETTERED = "dead_lettered"  # the reason the worker's dead letters mark entries with


@dataclass(frozen=True, slots=True)
class Creation:
    """One create as a client saw it: its Idempotency-Key (also the product's description, so
    the database tells how many products it made) and the id answered, None if no answer came."""

    key: str
    product_id: int | None


@dataclass(slots=True)
class Expected:
    """A product as its client last saw it answered."""

    product_id: int
    name: str
    price: float
    images: list[str]
    deleted: bool = False  # a DELETE answered 204 (or 404 to a retry of one)
    certain: bool = True  # no operation after it went unanswered


@dataclass(slots=True)
class Verdict:
    violations: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def extend(self, other: Verdict) -> Verdict:
        self.violations += other.violations
        self.counts.update(other.counts)
        return self


Row = Mapping[str, Any]  # a product row: id, product_name, product_description, ... images


def entries_of(row: Row) -> list[image_state.Entry]:
    images = row["images"]
    return list(images) if not isinstance(images, str) else _loads(images)


def _loads(text: str) -> list[image_state.Entry]:
    import orjson

    loaded = orjson.loads(text)
    assert isinstance(loaded, list)
    return loaded


def check_creations(
    creations: Iterable[Creation], expected: Mapping[int, Expected], rows: Sequence[Row]
) -> Verdict:
    """Each create made at most one product (duplicates), every product a client was answered
    for exists unless it may have been deleted since (lost), and none a client saw deleted does
    (resurrected)."""
    verdict = Verdict()
    by_key: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_key[row["product_description"]].append(int(row["id"]))
    present = {int(row["id"]) for row in rows}
    for creation in creations:
        made = by_key.get(creation.key, [])
        if len(made) > 1:
            verdict.counts["duplicates"] += len(made) - 1
            verdict.violations.append(
                f"create {creation.key} made {len(made)} products: {sorted(made)}"
            )
        if creation.product_id is not None and made and creation.product_id not in made:
            verdict.violations.append(
                f"create {creation.key} answered product {creation.product_id}, "
                f"but the database holds {sorted(made)} for it"
            )
    for product_id, seen in expected.items():
        if seen.deleted and seen.certain and product_id in present:
            verdict.counts["resurrected"] += 1
            verdict.violations.append(f"product {product_id} was deleted, and exists")
        elif not seen.deleted and seen.certain and product_id not in present:
            verdict.counts["lost"] += 1
            verdict.violations.append(f"product {product_id} was created, and is gone")
    return verdict


def check_states(expected: Mapping[int, Expected], rows: Sequence[Row]) -> Verdict:
    """Every product its client is certain of holds the name, price and images last answered:
    no acknowledged change lost, none applied twice or out of order."""
    verdict = Verdict()
    for row in rows:
        seen = expected.get(int(row["id"]))
        if seen is None or not seen.certain or seen.deleted:
            continue
        sources = [e["source"] for e in entries_of(row)]
        held = (row["product_name"], round(float(row["product_price"]), 2), sources)
        wanted = (seen.name, round(seen.price, 2), seen.images)
        if held != wanted:
            verdict.counts["lost_updates"] += 1
            verdict.violations.append(
                f"product {row['id']} holds {held}, its client was last answered {wanted}"
            )
    return verdict


def check_terminal(rows: Sequence[Row]) -> Verdict:
    """Every product is done, partial or failed, as its entries say; its status and
    product_images columns match its entries (compressed_product_images is no longer written:
    migration 0004); every ready entry has an output and every failed one a reason."""
    verdict = Verdict()
    for row in rows:
        entries = entries_of(row)
        status = image_state.processing_status(entries)
        verdict.counts[f"status_{status}"] += 1
        where = f"product {row['id']}"
        if status == "pending":
            verdict.counts["pending"] += 1
            pending = [e["source"] for e in entries if e["status"] == image_state.PENDING]
            verdict.violations.append(f"{where} is still pending: {pending}")
            continue
        if row["processing_status"] != status:
            verdict.violations.append(
                f"{where} is marked {row['processing_status']}, its entries say {status}"
            )
        if list(row["product_images"]) != [e["source"] for e in entries]:
            verdict.violations.append(f"{where}: product_images differ from its entries")
        for entry in entries:
            if entry["status"] == image_state.READY and not (entry["url"] and entry["key"]):
                verdict.violations.append(f"{where}: ready entry without output: {entry}")
            if entry["status"] == image_state.FAILED and not entry["error"]:
                verdict.violations.append(f"{where}: failed entry without reason: {entry}")
    return verdict


def check_storage(stored: set[str], referenced: set[str]) -> Verdict:
    """Storage holds exactly what the database references (after the gc, with zero grace)."""
    verdict = Verdict()
    leaked, missing = stored - referenced, referenced - stored
    verdict.counts["leaks"] = len(leaked)
    verdict.counts["missing_objects"] = len(missing)
    for key in sorted(leaked)[:20]:
        verdict.violations.append(f"stored but referenced by nothing: {key}")
    for key in sorted(missing)[:20]:
        verdict.violations.append(f"referenced but not in storage: {key}")
    return verdict


@dataclass(frozen=True, slots=True)
class Served:
    """What one reader (Redis, or an API process) serves for each product id: the body, or None
    for a 404 (for Redis: a tombstone, a cached 404, or nothing cached)."""

    name: str
    bodies: Mapping[int, bytes | None]


def check_served(
    database: Mapping[int, bytes], gone: Iterable[int], readers: Sequence[Served]
) -> Verdict:
    """Every reader serves each product exactly as the database renders it, and deleted ones
    not at all. Redis may hold nothing for a product (the next read fills it): a reader that
    answers nothing for a live product is told as missing only when it is an API process."""
    verdict = Verdict()
    gone = set(gone)
    for reader in readers:
        is_cache = reader.name == "redis"
        for product_id, body in database.items():
            served = reader.bodies.get(product_id)
            if served is None and is_cache:
                continue
            if served != body:
                verdict.counts["stale_reads"] += 1
                verdict.violations.append(
                    f"{reader.name} serves product {product_id} "
                    + ("as missing" if served is None else "unlike the database")
                    + f": {_clip(served)} vs {_clip(body)}"
                )
        for product_id in gone:
            served = reader.bodies.get(product_id)
            if served is not None:
                verdict.counts["stale_reads"] += 1
                verdict.violations.append(
                    f"{reader.name} serves deleted product {product_id}: {_clip(served)}"
                )
    return verdict


def _clip(body: bytes | None, size: int = 160) -> str:
    return "None" if body is None else body[:size].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Letter:
    """An image job that went to the dead-letter topic."""

    product_id: int
    revision: int
    sources: tuple[str, ...]
    error_class: str


def _job_entries(row: Row, letter: Letter) -> list[image_state.Entry]:
    return [
        e
        for e in entries_of(row)
        if e["source"] in letter.sources and e["revision"] == letter.revision
    ]


def check_dead_letters(letters: Sequence[Letter], rows: Mapping[int, Row]) -> Verdict:
    """Every dead-lettered job is accounted for: its product gone, changed since (no entry at
    its revision left), its entries failed naming the dead letter, or done by a redelivery.
    None stays pending."""
    verdict = Verdict()
    for letter in letters:
        row = rows.get(letter.product_id)
        if row is None:
            verdict.counts["letters_product_gone"] += 1
            continue
        entries = _job_entries(row, letter)
        if not entries:
            verdict.counts["letters_superseded"] += 1
            continue
        unaccounted = [
            e
            for e in entries
            if not (
                e["status"] == image_state.READY
                or (
                    e["status"] == image_state.FAILED
                    and (e["error"] or "").startswith(DEAD_LETTERED)
                )
            )
        ]
        if unaccounted:
            verdict.violations.append(
                f"dead letter of product {letter.product_id} (revision {letter.revision}, "
                f"{letter.error_class}) not accounted for: {unaccounted}"
            )
        else:
            verdict.counts["letters_marked_failed"] += 1
    return verdict


def check_replayed(letters: Sequence[Letter], rows: Mapping[int, Row]) -> Verdict:
    """After the replay, no entry of a dead-lettered job is pending or failed by the dead
    letter: each is ready, or failed for a reason of its own (a source that is really gone)."""
    verdict = Verdict()
    for letter in letters:
        row = rows.get(letter.product_id)
        if row is None:
            continue
        for entry in _job_entries(row, letter):
            status, error = entry["status"], entry["error"] or ""
            if status == image_state.PENDING or error.startswith(DEAD_LETTERED):
                verdict.violations.append(
                    f"replayed dead letter of product {letter.product_id} left {entry}"
                )
            elif status == image_state.READY:
                verdict.counts["replayed_ready"] += 1
    return verdict


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer a client got: when (seconds since the load started), to what, status."""

    at_s: float
    operation: str
    status: int


def within(at_s: float, windows: Iterable[tuple[float, float]], slack_s: float) -> bool:
    return any(start <= at_s <= end + slack_s for start, end in windows)


def check_server_errors(
    answers: Iterable[Answer], postgres_down: Sequence[tuple[float, float]], slack_s: float
) -> Verdict:
    """No 5xx but 503, and a 503 only while PostgreSQL was down or frozen (or within
    `slack_s` after: a request that waited on the pool answers when its deadline passes)."""
    verdict = Verdict()
    for answer in answers:
        if answer.status < 500:
            continue
        if answer.status == 503 and within(answer.at_s, postgres_down, slack_s):
            verdict.counts["503_while_postgres_down"] += 1
            continue
        verdict.counts["server_errors"] += 1
        if verdict.counts["server_errors"] <= 20:
            verdict.violations.append(
                f"{answer.operation} answered {answer.status} at {answer.at_s:.1f} s"
                + ("" if answer.status != 503 else " (PostgreSQL was up)")
            )
    return verdict


def check_processes(alive: Mapping[str, bool], died: Sequence[str]) -> Verdict:
    """Every API and worker process runs at the end, and none died but by the injector's hand."""
    verdict = Verdict()
    for name, up in sorted(alive.items()):
        if not up:
            verdict.violations.append(f"{name} is not running at the end")
    for line in died:
        verdict.violations.append(f"died on its own: {line}")
    verdict.counts["unexpected_exits"] = len(died)
    return verdict
