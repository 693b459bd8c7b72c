"""Prometheus metrics of the worker (served by compressor.endpoints)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter(
            "worker_jobs_total", "Jobs by outcome", ["outcome"], registry=self.registry
        )
        self.images = Counter(
            "worker_images_total", "Images by outcome", ["outcome"], registry=self.registry
        )
        self.stage_seconds = Histogram(
            "worker_stage_seconds",
            "Time in each stage per image",
            ["stage"],
            buckets=STAGE_BUCKETS_S,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "worker_queue_depth", "Images waiting for a stage", ["stage"], registry=self.registry
        )
        self.inflight_jobs = Gauge(
            "worker_inflight_jobs", "Jobs taken from Kafka and not finished", registry=self.registry
        )
        self.stage_busy = Gauge(
            "worker_stage_busy", "Slots of each stage in use", ["stage"], registry=self.registry
        )
        # A count that only grows: exposed as worker_pool_rebuilds_total.
        self.pool_rebuilds = Counter(
            "worker_pool_rebuilds",
            "Compression pools rebuilt after a child died or a compression overran",
            registry=self.registry,
        )
        # Stored objects deleted, by why: delete_objects (a clean-up job), superseded or unused
        # (a job's uploads nothing took), job_failed, gc.
        self.objects_deleted = Counter(
            "worker_objects_deleted",
            "Stored objects deleted because nothing references them",
            ["reason"],
            registry=self.registry,
        )
        self.storage_gc_runs = Counter(
            "worker_storage_gc_runs",
            "Periodic storage garbage collections by outcome (ran, busy, failed)",
            ["outcome"],
            registry=self.registry,
        )
