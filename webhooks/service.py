"""The dispatcher's composition root (`run_workers.py --role webhooks`): PostgreSQL, the
guarded HTTP session and the events consumer, the fanout and the dispatcher running side by side
until SIGTERM/SIGINT, then everything closed in reverse order."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from catalogue import spans
from catalogue.retry import RetryPolicy, retry
from catalogue.topics import ensure_job_topics
from catalogue.webhooks import url_policy
from config import Settings
from config.origins import log_webhook_urls_opened
from db.pool import create_pool
from webhooks.delivery import Sender, create_session
from webhooks.dispatcher import Dispatcher
from webhooks.fanout import EventFanout

log = logging.getLogger("webhooks")
TOPICS_RETRY = RetryPolicy(base_s=0.4, cap_s=5.0)


class WebhookService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("webhooks.stopping")
            self.stopping.set()

    async def run(self) -> int:
        settings = self.settings
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        log_webhook_urls_opened(log, settings)
        await retry(
            lambda: ensure_job_topics(settings),
            TOPICS_RETRY,
            what="webhooks.ensure_topics",
            retry_on=(KafkaError, OSError),
        )
        wake = asyncio.Event()
        async with AsyncExitStack() as resources:
            resources.callback(spans.configure(settings, "catalogue-webhooks"))
            enter = resources.enter_async_context
            db = await enter(await create_pool(settings, min_size=1))
            session = await enter(create_session(settings))
            consumer = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap_servers,
                group_id=settings.webhook_group_id,
                enable_auto_commit=False,
                # An event produced before the first dispatcher ever started is delivered too.
                auto_offset_reset="earliest",
            )
            consumer.subscribe([settings.kafka_events_topic])
            await enter(consumer)
            sender = Sender(session, url_policy(settings), settings.webhook_timeout_seconds)
            dispatcher = Dispatcher(db, sender, settings, wake, self.stopping)
            fanout = EventFanout(consumer, db, wake, self.stopping)
            log.info(
                "webhooks.started",
                extra={
                    "group_id": settings.webhook_group_id,
                    "concurrency": settings.webhook_concurrency,
                },
            )
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(fanout.run(), name="webhook-fanout")
                tasks.create_task(dispatcher.run(), name="webhook-dispatcher")
        log.info("webhooks.stopped")
        return 0
