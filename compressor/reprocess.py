"""`python -m compressor.reprocess (--all | [--user ID] [--status S]... [--outdated])
[--rate N/s] [--dry-run] [--json]`: queues products' images for processing again, in bulk.

Selects products with images (every one with `--all`; otherwise those matching every filter
given: one user's, those in a processing status, those showing an output produced under other
image settings than the current ones, `--outdated`, which is how a deployment rolls out a new
size, format or quality: run it with the new settings once the workers run them). Each product
is reprocessed in a transaction of its own (catalogue/reprocessing.py): its entries go pending
at its next revision, keeping their outputs shown, and the job of that revision goes into the
outbox, which the API's relay publishes. Products still pending, or that no longer match once
locked, are skipped. `--rate` paces the products looked at (jobs of new products share the
partitions with these, so a flood would queue them behind the whole backlog); a progress bar
goes to stderr and a summary to stdout. `--dry-run` writes nothing and says what it would queue.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import orjson

from catalogue import cache as product_cache
from catalogue import reprocessing
from catalogue.fingerprint import settings_fingerprint
from catalogue.ids import id_from_text
from compressor.pacing import TokenBucket
from compressor.progress import Progress
from config import Settings, load_settings_or_exit
from config.logging import setup_logging
from config.rates import parse_rate
from db import products

STATUSES = ("failed", "partial", "done")
DEFAULT_RATE = "20/s"


@dataclass(slots=True)
class Summary:
    dry_run: bool
    selected: int = 0
    queued: int = 0  # or, in a dry run, would be
    skipped: Counter[str] = field(default_factory=Counter)

    def count(self, skipped: str | None) -> None:
        if skipped is None:
            self.queued += 1
        else:
            self.skipped[skipped] += 1

    def note(self) -> str:
        return f"{'would queue' if self.dry_run else 'queued'} {self.queued}"

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "selected": self.selected,
            "queued": self.queued,
            "skipped": dict(sorted(self.skipped.items())),
        }

    def text(self) -> str:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items()))
        skipped = sum(self.skipped.values())
        return (
            f"reprocess{' (dry run)' if self.dry_run else ''}: selected {self.selected}, "
            f"{'would queue' if self.dry_run else 'queued'} {self.queued}, skipped {skipped}"
            + (f" ({reasons})" if reasons else "")
        )


def skip_rule(filters: products.ReprocessFilter) -> reprocessing.Skip:
    """What is checked again under each product's lock: it may have changed since it was
    selected."""
    rules: list[reprocessing.Skip] = [reprocessing.skip_pending]
    if filters.statuses:
        rules.append(reprocessing.skip_unless_status(filters.statuses))
    if filters.outdated_fingerprint is not None:
        rules.append(reprocessing.skip_unless_outdated(filters.outdated_fingerprint))
    return reprocessing.all_of(*rules)


async def reprocess_all(
    settings: Settings,
    filters: products.ReprocessFilter,
    *,
    rate_per_s: float | None,
    dry_run: bool,
    progress: Progress | None = None,
) -> Summary:
    summary = Summary(dry_run)
    skip = skip_rule(filters)
    bucket = TokenBucket(rate_per_s) if rate_per_s else None
    conn = await asyncpg.connect(settings.postgres_url, timeout=30)
    cache = product_cache.ProductCache(
        product_cache.connect(settings.redis_url),
        ttl_s=settings.cache_ttl_seconds,
        negative_ttl_s=settings.cache_negative_ttl_seconds,
    )
    try:
        total = await products.count_reprocess_candidates(conn, filters)
        progress = progress or Progress(total)
        progress.total = total
        after = 0
        while ids := await products.reprocess_candidates(conn, filters, after_id=after):
            for product_id in ids:
                summary.selected += 1
                if dry_run:
                    entries = await products.image_entries(conn, product_id)
                    summary.count(reprocessing.why_not(entries, skip))
                else:
                    if bucket is not None:
                        await bucket.take()
                    done = await reprocessing.reprocess_product(
                        conn, settings, cache, product_id, skip=skip
                    )
                    summary.count(done.skipped)
                progress.update(summary.selected, summary.note())
            after = ids[-1]
        progress.finish(summary.selected, summary.note())
    finally:
        await conn.close()
        await cache.client.aclose()
    return summary


def rate_per_s(text: str) -> float | None:
    """`20/s`, `100/min`… as products per second; `0` for no pacing."""
    if text.strip() == "0":
        return None
    rate = parse_rate(text)
    return rate.limit / rate.period_s


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m compressor.reprocess",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--all", action="store_true", help="every product with images")
    parser.add_argument("--user", metavar="ID", help="only this user's products")
    parser.add_argument(
        "--status",
        action="append",
        choices=STATUSES,
        default=[],
        help="only products in this processing status (repeatable: --status failed "
        "--status partial retries every product with a failed image)",
    )
    parser.add_argument(
        "--outdated",
        action="store_true",
        help="only products showing an output produced under other image settings",
    )
    parser.add_argument(
        "--rate",
        type=rate_per_s,
        default=rate_per_s(DEFAULT_RATE),
        metavar="N/s",
        help=f"products per second (N/s, N/min, N/h; 0: unpaced; default {DEFAULT_RATE})",
    )
    parser.add_argument("--dry-run", action="store_true", help="write nothing, count only")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    filtered = args.user is not None or args.status or args.outdated
    if args.all == bool(filtered):
        parser.error("give --all, or at least one of --user, --status and --outdated")
    if args.user is not None and id_from_text(args.user) is None:
        parser.error(f"--user {args.user!r} is not a user id")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings_or_exit()
    setup_logging("warning", "console")  # stderr carries the progress bar
    filters = products.ReprocessFilter(
        user_id=None if args.user is None else id_from_text(args.user),
        statuses=tuple(dict.fromkeys(args.status)),
        outdated_fingerprint=settings_fingerprint(settings) if args.outdated else None,
    )
    summary = asyncio.run(
        reprocess_all(settings, filters, rate_per_s=args.rate, dry_run=args.dry_run)
    )
    print(orjson.dumps(summary.as_dict()).decode() if args.json else summary.text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
