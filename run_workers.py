"""Runs the image worker supervisor: `python run_workers.py [options]`.

One asyncio process per host consumes image jobs from Kafka and drives the pipeline
download → compress (process pool) → upload → database update. Several supervisors share the
work through one consumer group. Every option defaults to its environment variable.
"""

from __future__ import annotations

import argparse
import os
import sys

import uvloop

from compressor.supervisor import Supervisor, WorkerOptions
from config import Settings, load_settings_or_exit
from config.logging import setup_logging


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add(
        "--processes",
        type=int,
        default=settings.worker_processes or os.cpu_count() or 1,
        help="compression processes in the pool (WORKER_PROCESSES; 0 there means CPU count)",
    )
    add(
        "--download-concurrency",
        type=int,
        default=settings.worker_download_concurrency,
        help="downloads running at once (WORKER_DOWNLOAD_CONCURRENCY)",
    )
    add(
        "--upload-concurrency",
        type=int,
        default=settings.worker_upload_concurrency,
        help="uploads running at once (WORKER_UPLOAD_CONCURRENCY)",
    )
    add(
        "--max-inflight-jobs",
        type=int,
        default=settings.worker_max_inflight_jobs,
        help="jobs taken from Kafka but not finished; at this number the consumer pauses its "
        "partitions instead of buffering more (WORKER_MAX_INFLIGHT_JOBS)",
    )
    add(
        "--group-id",
        default=settings.worker_group_id,
        help="Kafka consumer group shared by all supervisors (WORKER_GROUP_ID)",
    )
    add(
        "--metrics-host",
        default=settings.worker_metrics_host,
        help="address of the /metrics and /healthz server (WORKER_METRICS_HOST)",
    )
    add(
        "--metrics-port",
        type=int,
        default=settings.worker_metrics_port,
        help="port of /metrics and /healthz; 0 picks a free one (WORKER_METRICS_PORT)",
    )
    add(
        "--shutdown-timeout",
        type=float,
        default=settings.worker_shutdown_timeout_seconds,
        help="seconds to let in-flight jobs finish after SIGTERM/SIGINT "
        "(WORKER_SHUTDOWN_TIMEOUT_SECONDS)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = load_settings_or_exit()
    args = build_parser(settings).parse_args(argv)
    for name in ("processes", "download_concurrency", "upload_concurrency", "max_inflight_jobs"):
        if getattr(args, name) < 1:
            print(
                f"configuration error: --{name.replace('_', '-')} must be at least 1",
                file=sys.stderr,
            )
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


if __name__ == "__main__":
    sys.exit(main())
