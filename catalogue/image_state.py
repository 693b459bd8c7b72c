"""Each product image's state, and every change it goes through, as pure functions.

A product holds one entry per source, in source order:
`{"source", "status": "pending"|"ready"|"failed", "url", "key", "error", "revision"}`.
- `url`/`key` are the compressed output shown for the source (and its storage key): the largest
  JPEG rendition (the largest of the first format made, without JPEG). `renditions` (only on an
  entry with an output made since renditions exist) lists every output of the source,
  `{"key", "url", "width", "height", "format", "bytes"}`, by format, then ascending width; the
  output's objects are those keys. During a reprocess an entry is pending *and* keeps its
  previous output, so it stays visible until the new one is ready.
- `revision` is the image revision of the job that will process (or last processed) the entry.
  Every queued job takes the product's next revision, and a job's results land only on entries
  still pending at its revision: a result never lands on a newer state (a change, a reprocess),
  and a removed source takes nothing.
- `fingerprint` (only on an entry with an output the worker recorded it for) names the image
  settings the output was produced under (catalogue/fingerprint.py): an output whose fingerprint
  differs from the current settings' is outdated, and `python -m compressor.reprocess
  --outdated` processes it again.
- `original` (only on an entry with an output the worker recorded it for) describes the source
  that output was made from, `{"bytes", "width", "height", "format"}` (the size upright, after
  EXIF orientation): what the console measures each rendition's saving against.

The API (create, change, reprocess) and the worker (results, dead letters) both change entries,
so the rules live here, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

PENDING, READY, FAILED = "pending", "ready", "failed"

Entry = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a job made of one source: an output (url, key) or a failure."""

    source: str
    url: str | None = None
    key: str | None = None
    error: str | None = None
    # The settings the output was produced under (catalogue/fingerprint.py); None: unknown.
    fingerprint: str | None = None
    # Every output of the source, as entries hold them (see the module's docstring).
    renditions: tuple[dict[str, Any], ...] = ()
    # The source the output was made from: bytes, upright width and height, format (what the
    # saving is measured against); None: unknown.
    original: dict[str, Any] | None = None


def new_entry(source: str, revision: int) -> Entry:
    return {
        "source": source,
        "status": PENDING,
        "url": None,
        "key": None,
        "error": None,
        "revision": revision,
    }


def new_entries(sources: Sequence[str], revision: int) -> list[Entry]:
    return [new_entry(source, revision) for source in sources]


def processing_status(entries: Sequence[Entry]) -> str:
    """`pending` while any entry is; then `done` (all ready, or no images), `partial` or
    `failed` (all failed)."""
    if any(e["status"] == PENDING for e in entries):
        return "pending"
    failed = sum(1 for e in entries if e["status"] == FAILED)
    if failed == 0:
        return "done"
    return "failed" if failed == len(entries) else "partial"


def referenced_keys(entries: Iterable[Entry]) -> set[str]:
    """The storage keys of every output the entries show."""
    keys: set[str] = set()
    for entry in entries:
        if entry.get("key"):
            keys.add(entry["key"])
        keys.update(r["key"] for r in entry.get("renditions", ()))
    return keys


@dataclass(frozen=True, slots=True)
class Change:
    """A new entry list, the sources a job must process (at `revision`), and the storage keys
    no entry references any more (to delete)."""

    entries: list[Entry]
    to_process: tuple[str, ...]
    unreferenced: set[str]


def change_sources(entries: Sequence[Entry], sources: Sequence[str], revision: int) -> Change:
    """The product's images become `sources` (order matters). A source already there keeps its
    entry and output; a new one is pending at `revision`; outputs of removed sources are
    unreferenced unless a kept entry shares the object. A pure reorder processes nothing."""
    by_source: dict[str, Entry] = {}
    for entry in entries:
        by_source.setdefault(entry["source"], entry)
    kept: list[Entry] = []
    to_process: list[str] = []
    for source in sources:
        existing = by_source.get(source)
        if existing is None:
            existing = by_source[source] = new_entry(source, revision)
            to_process.append(source)
        kept.append(dict(existing))
    unreferenced = referenced_keys(entries) - referenced_keys(kept)
    return Change(kept, tuple(to_process), unreferenced)


def reprocess(entries: Sequence[Entry], revision: int) -> Change:
    """Every source processed again at `revision`; each keeps its current output meanwhile."""
    changed = [{**e, "status": PENDING, "error": None, "revision": revision} for e in entries]
    return Change(changed, tuple(dict.fromkeys(e["source"] for e in entries)), set())


def apply_outcomes(
    entries: Sequence[Entry], revision: int, outcomes: Iterable[Outcome]
) -> Change | None:
    """Lands a job's outcomes on the entries still pending at its revision (every entry of a
    source gets that source's outcome). None when no entry awaits this job any more: the caller
    must then discard what it uploaded (`Change.unreferenced` lists replaced outputs)."""
    by_source = {o.source: o for o in outcomes}
    changed: list[Entry] = []
    landed = False
    for entry in entries:
        outcome = by_source.get(entry["source"])
        if outcome is None or entry["status"] != PENDING or entry["revision"] != revision:
            changed.append(dict(entry))
            continue
        landed = True
        if outcome.error is not None:
            # A failed reprocess keeps showing the previous output, with the error.
            changed.append({**entry, "status": FAILED, "error": outcome.error})
        else:
            changed.append(_with_output(entry, outcome))
    if not landed:
        return None
    unreferenced = referenced_keys(entries) - referenced_keys(changed)
    return Change(changed, (), unreferenced)


def _with_output(entry: Entry, outcome: Outcome) -> Entry:
    ready = {**entry, "status": READY, "url": outcome.url, "key": outcome.key, "error": None}
    # The fingerprint and the renditions belong to the output: a new output without them
    # drops the old one's.
    ready.pop("fingerprint", None)
    ready.pop("renditions", None)
    ready.pop("original", None)
    if outcome.original is not None:
        ready["original"] = dict(outcome.original)
    if outcome.fingerprint is not None:
        ready["fingerprint"] = outcome.fingerprint
    if outcome.renditions:
        ready["renditions"] = [dict(r) for r in outcome.renditions]
    return ready


def awaiting(entries: Sequence[Entry], revision: int) -> tuple[str, ...]:
    """The sources (in order, once each) whose entries are pending at `revision`: what the job
    of that revision still has to process. Empty when the job has nothing left to land on (a
    redelivery, or the product changed since it was queued)."""
    return tuple(
        dict.fromkeys(
            e["source"] for e in entries if e["status"] == PENDING and e["revision"] == revision
        )
    )


def outdated(entries: Iterable[Entry], fingerprint: str) -> bool:
    """Whether any output shown was produced under other image settings than `fingerprint`
    (or under unknown ones: outputs recorded before fingerprints were)."""
    return any(e.get("key") and e.get("fingerprint") != fingerprint for e in entries)


def fail_pending(entries: Sequence[Entry], revision: int, reason: str) -> Change | None:
    """A job that could not finish (dead-lettered): its pending entries fail with `reason`."""
    outcomes = [
        Outcome(e["source"], error=reason)
        for e in entries
        if e["status"] == PENDING and e["revision"] == revision
    ]
    return apply_outcomes(entries, revision, outcomes)


def reopen_failed(entries: Sequence[Entry], revision: int) -> list[Entry] | None:
    """The entries a dead-lettered job at `revision` failed, pending again so its replay
    processes them; None when none is (the product changed since: the replay has nothing to
    land on)."""
    changed = [
        {**e, "status": PENDING, "error": None}
        if e["status"] == FAILED and e["revision"] == revision
        else dict(e)
        for e in entries
    ]
    return changed if changed != list(entries) else None


def public(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """The entries as the product's JSON shows them (storage keys and revisions are internal);
    `renditions` is empty while a source has no output (or one made before renditions were),
    and `original` null (or for an output recorded before sources were described)."""
    return [
        {
            "source": e["source"],
            "status": e["status"],
            "url": e["url"],
            "error": e["error"],
            "original": e.get("original"),
            "renditions": [
                {
                    "url": r["url"],
                    "width": r["width"],
                    "height": r["height"],
                    "format": r["format"],
                    "bytes": r["bytes"],
                }
                for r in e.get("renditions", ())
            ],
        }
        for e in entries
    ]
