"""The dead-letters page's work: reading the DLQ topic and replaying from it, through
catalogue/dead_letters.py (what `python -m compressor.dlq` does). Kept out of the page module so
the request handlers' import of aiokafka is this one, named place."""

from __future__ import annotations

from catalogue.dead_letters import DeadLetter, Replayed, read_all, replay
from config import Settings

# A page, not an archive: the oldest letters first, at most this many.
LETTERS_SHOWN = 200


async def letters(settings: Settings) -> list[DeadLetter]:
    return await read_all(
        settings.kafka_bootstrap_servers, settings.kafka_dlq_topic, limit=LETTERS_SHOWN
    )


async def replay_letters(settings: Settings, product_id: str | None) -> Replayed:
    """Every letter (None) or one product's back on the jobs topic."""
    return await replay(
        settings.kafka_bootstrap_servers,
        settings.kafka_dlq_topic,
        settings.kafka_jobs_topic,
        product_id=product_id,
        postgres_url=settings.postgres_url,
        redis_url=settings.redis_url,
        cache_ttl_s=settings.cache_ttl_seconds,
    )
