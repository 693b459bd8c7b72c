"""Runs a worker: `python run_workers.py [--role images|webhooks] [options]`.

--role images (the default): the image worker supervisor. One asyncio process per host consumes
image jobs from Kafka and drives the pipeline download → compress (process pool) → upload →
database update. Several supervisors share the work through one consumer group.

--role webhooks: the webhook dispatcher. Delivers product events to the registered endpoints,
signed (Standard Webhooks) and retried over hours; needs WEBHOOK_SIGNING_KEY. Apart from the
image workers, so a slow endpoint never delays an image; several share the work.

Every option defaults to its environment variable; the image options apply to --role images.
"""

from __future__ import annotations

import argparse
import os
import sys

import uvloop

from compressor.renditions import available_formats, missing_encoders
from compressor.supervisor import Supervisor, WorkerOptions
from config import Settings, load_settings_or_exit
from config.logging import setup_logging
from config.settings import settings_fields

ROLES = ("images", "webhooks")

# Each option and the setting it defaults to (so its environment variable); help without the
# variable's name, which is added from the setting.
_OPTIONS: tuple[tuple[str, str, type, str], ...] = (
    ("--processes", "worker_processes", int, "compression processes in the pool (0 there: CPUs)"),
    ("--download-concurrency", "worker_download_concurrency", int, "downloads running at once"),
    ("--upload-concurrency", "worker_upload_concurrency", int, "uploads running at once"),
    (
        "--max-inflight-jobs",
        "worker_max_inflight_jobs",
        int,
        "jobs taken from Kafka but not finished; at this number the consumer pauses its "
        "partitions instead of buffering more",
    ),
    ("--group-id", "worker_group_id", str, "Kafka consumer group shared by all supervisors"),
    ("--metrics-host", "worker_metrics_host", str, "address of the /metrics and /healthz server"),
    ("--metrics-port", "worker_metrics_port", int, "port of /metrics and /healthz; 0 picks one"),
    (
        "--shutdown-timeout",
        "worker_shutdown_timeout_seconds",
        float,
        "seconds to let in-flight jobs finish after SIGTERM/SIGINT",
    ),
)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--role",
        choices=ROLES,
        default="images",
        help="images: the image worker supervisor; webhooks: the webhook dispatcher",
    )
    env_of = {f.name: f.metadata["env"] for f in settings_fields()}
    for flag, setting, kind, help_text in _OPTIONS:
        default = getattr(settings, setting)
        if flag == "--processes":
            default = default or os.cpu_count() or 1
        parser.add_argument(
            flag, type=kind, default=default, help=f"{help_text} ({env_of[setting]})"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = load_settings_or_exit()
    args = build_parser(settings).parse_args(argv)
    if args.role == "webhooks":
        return run_webhooks(settings)
    for name in ("processes", "download_concurrency", "upload_concurrency", "max_inflight_jobs"):
        if getattr(args, name) < 1:
            print(
                f"configuration error: --{name.replace('_', '-')} must be at least 1",
                file=sys.stderr,
            )
            return 2
    if unmakeable := missing_encoders(settings.image_output_formats, available_formats()):
        print(f"configuration error: {unmakeable}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    options = WorkerOptions(
        processes=args.processes,
        download_concurrency=args.download_concurrency,
        upload_concurrency=args.upload_concurrency,
        max_inflight_jobs=args.max_inflight_jobs,
        group_id=args.group_id,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        shutdown_timeout_s=args.shutdown_timeout,
    )
    return uvloop.run(Supervisor(settings, options).run())


def run_webhooks(settings: Settings) -> int:
    if not settings.webhooks_enabled:
        print(
            "configuration error: WEBHOOK_SIGNING_KEY is not set: the webhook dispatcher signs "
            "every delivery with secrets derived from it (the API's, too)",
            file=sys.stderr,
        )
        return 2
    # Imported here: the image role never loads the dispatcher.
    from webhooks.service import WebhookService

    setup_logging(settings.log_level, settings.log_format)
    return uvloop.run(WebhookService(settings).run())


if __name__ == "__main__":
    sys.exit(main())
