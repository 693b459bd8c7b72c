"""The dead-letter tool: `python -m compressor.dlq list [--json] [--limit N]` shows the dead
letters, `replay --all | --product-id ID` puts them back on the jobs topic. The reading and the
replaying live in catalogue/dead_letters.py (the operator console replays too)."""

from __future__ import annotations

import orjson

from catalogue.dead_letters import (
    PREFIX,
    DeadLetter,
    Replayed,
    dead_letter_headers,
    read_all,
    reopen,
    replay,
    topic_partitions,
)

__all__ = [
    "PREFIX",
    "DeadLetter",
    "Replayed",
    "dead_letter_headers",
    "read_all",
    "reopen",
    "replay",
    "topic_partitions",
]


def main(argv: list[str] | None = None) -> int:
    import argparse
    import asyncio
    import sys

    from config import load_settings_or_exit

    parser = argparse.ArgumentParser(prog="python -m compressor.dlq", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show the dead letters")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--limit", type=int, default=None, help="show at most N")
    replaying = commands.add_parser("replay", help="put dead letters back on the jobs topic")
    which = replaying.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter")
    which.add_argument("--product-id", help="the dead letters of one product")
    args = parser.parse_args(argv)
    settings = load_settings_or_exit()
    servers = settings.kafka_bootstrap_servers
    if args.command == "list":
        letters = asyncio.run(read_all(servers, settings.kafka_dlq_topic, limit=args.limit))
        for letter in letters:
            if args.json:
                print(orjson.dumps(letter.as_dict()).decode())
            else:
                h = letter.headers
                print(
                    f"{letter.partition}:{letter.offset} product={letter.product_id} "
                    f"attempts={h.get('attempts')} error={h.get('error_class')}: "
                    f"{h.get('error_message')}"
                )
        if not args.json:
            print(f"{len(letters)} dead letter(s)", file=sys.stderr)
        return 0
    result = asyncio.run(
        replay(
            servers,
            settings.kafka_dlq_topic,
            settings.kafka_jobs_topic,
            product_id=None if args.all else args.product_id,
            postgres_url=settings.postgres_url,
            redis_url=settings.redis_url,
            cache_ttl_s=settings.cache_ttl_seconds,
        )
    )
    skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.skipped.items()))
    print(
        f"replayed {result.published} dead letter(s) onto {settings.kafka_jobs_topic}"
        + (f"; skipped {sum(result.skipped.values())} ({skipped})" if skipped else ""),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
