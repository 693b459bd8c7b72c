"""Dead letters: what a failed job carries to the dead-letter topic, and reading them back.

Headers follow what mature Kafka libraries record (Spring Kafka's recoverer, Karafka): the error
class and message, the attempt count, the source topic/partition/offset, the consumer group and
the time, next to the original key and payload.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

PREFIX = "dlq."


def dead_letter_headers(
    *,
    error_class: str,
    error_message: str,
    attempts: int,
    topic: str,
    partition: int,
    offset: int,
    group: str,
    product_id: int | None,
) -> list[tuple[str, bytes]]:
    fields = {
        "error_class": error_class,
        "error_message": error_message[:2000],
        "attempts": str(attempts),
        "source_topic": topic,
        "source_partition": str(partition),
        "source_offset": str(offset),
        "consumer_group": group,
        "failed_at_ms": str(int(time.time() * 1000)),
        "product_id": "" if product_id is None else str(product_id),
    }
    return [(PREFIX + k, v.encode()) for k, v in fields.items()]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def product_id(self) -> str:
        return self.headers.get("product_id") or (self.key or b"").decode(errors="replace")

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "key": (self.key or b"").decode(errors="replace"),
            "value": (self.value or b"").decode(errors="replace"),
            **self.headers,
        }


async def topic_partitions(bootstrap_servers: str, topic: str) -> list[TopicPartition]:
    # A consumer without a subscription keeps no partition metadata: ask the cluster.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description["error_code"] != 0:
        return []
    return sorted(TopicPartition(topic, p["partition"]) for p in description["partitions"])


async def read_all(
    bootstrap_servers: str, topic: str, *, limit: int | None = None
) -> list[DeadLetter]:
    """Every dead letter currently on the topic, oldest first per partition (no group, no commit)."""
    tps = await topic_partitions(bootstrap_servers, topic)
    if not tps:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        for tp in tps:
            if await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)
        while remaining and (limit is None or len(letters) < limit):
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                for m in messages:
                    headers = {
                        k.removeprefix(PREFIX): v.decode(errors="replace") for k, v in m.headers
                    }
                    letters.append(DeadLetter(m.partition, m.offset, m.key, m.value, headers))
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return letters[:limit] if limit is not None else letters
    finally:
        await consumer.stop()


async def replay(
    bootstrap_servers: str,
    dlq_topic: str,
    jobs_topic: str,
    *,
    product_id: str | None,
    postgres_url: str,
) -> int:
    """Puts dead letters (all, or one product's) back on the jobs topic with their original key
    and payload, after reopening their failed products (the worker skips products that are not
    pending). Replaying twice is harmless: the worker is idempotent."""
    import asyncpg
    from aiokafka import AIOKafkaProducer

    from catalogue.ids import id_from_text
    from db.products import reopen_failed

    letters = [
        letter
        for letter in await read_all(bootstrap_servers, dlq_topic)
        if product_id is None or letter.product_id == product_id
    ]
    ids = [i for letter in letters if (i := id_from_text(letter.product_id)) is not None]
    conn = await asyncpg.connect(postgres_url)
    try:
        await reopen_failed(conn, ids)
    finally:
        await conn.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(jobs_topic, letter.value, key=letter.key)
    finally:
        await producer.stop()
    return len(letters)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import asyncio
    import sys

    import orjson

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
    count = asyncio.run(
        replay(
            servers,
            settings.kafka_dlq_topic,
            settings.kafka_jobs_topic,
            product_id=None if args.all else args.product_id,
            postgres_url=settings.postgres_url,
        )
    )
    print(f"replayed {count} dead letter(s) onto {settings.kafka_jobs_topic}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
