"""One frozen dataclass of settings, loaded once from the environment and an optional `.env`.

Every field names its environment variable, its parser and a line of help in its metadata, so the
loader, the README table, `.env.example` and the docker-compose check all read one source of truth.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config import parsers as parse
from config.origins import SourceOrigin, parse_source_origins, source_origins_setting
from config.rates import Rate

MIB = 1024 * 1024


class SettingsError(ValueError):
    """A variable has a bad value; the message names it and says what is wrong."""


def _env_field(
    name: str, default: Any, parse: Callable[[str], Any], help: str, *, secret: bool = False
) -> Any:
    # A secret's value is never echoed, not even in the error naming its variable.
    return field(
        default=default,
        repr=not secret,  # nor in a repr of the settings (a traceback, a debug log)
        metadata={"env": name, "parse": parse, "help": help, "secret": secret},
    )


# -- the settings ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    postgres_url: str = _env_field(
        "POSTGRES_URL",
        "postgresql://catalogue@127.0.0.1:5432/catalogue",
        parse.url("postgresql", "postgres"),
        "PostgreSQL connection URL.",
    )
    redis_url: str = _env_field(
        "REDIS_URL", "redis://127.0.0.1:6379/0", parse.url("redis", "rediss", "unix"), "Redis URL."
    )
    kafka_bootstrap_servers: str = _env_field(
        "KAFKA_BOOTSTRAP_SERVERS",
        "127.0.0.1:9092",
        parse.bootstrap_servers,
        "Kafka bootstrap servers, comma-separated host:port.",
    )
    kafka_jobs_topic: str = _env_field(
        "KAFKA_JOBS_TOPIC", "product-images", parse.topic, "Topic of image jobs."
    )
    kafka_dlq_topic: str = _env_field(
        "KAFKA_DLQ_TOPIC", "product-images.dlq", parse.topic, "Dead-letter topic of failed jobs."
    )
    kafka_events_topic: str = _env_field(
        "KAFKA_EVENTS_TOPIC",
        "product-events",
        parse.topic,
        "Topic of product events (created, updated, processed, deleted), which webhooks deliver.",
    )
    kafka_topic_partitions: int = _env_field(
        "KAFKA_TOPIC_PARTITIONS",
        12,
        parse.int_between(1, 1000),
        "Partitions of the topics created on start-up: the most workers that can share the work.",
    )
    kafka_replication_factor: int = _env_field(
        "KAFKA_REPLICATION_FACTOR",
        1,
        parse.int_between(1, 100),
        "Replication factor of the topics created on start-up (3 in production clusters).",
    )
    image_storage_url: str = _env_field(
        "IMAGE_STORAGE_URL",
        "./data/images",
        parse.storage_url,
        "Where compressed images go: a relative path or file:///abs/path (local), "
        "or s3://bucket/prefix.",
    )
    image_public_base_url: str = _env_field(
        "IMAGE_PUBLIC_BASE_URL",
        "http://127.0.0.1:8080/images",
        parse.url("http", "https"),
        "Base URL under which stored images are public (the API's /images for local storage).",
    )
    s3_endpoint_url: str = _env_field(
        "S3_ENDPOINT_URL",
        "",
        parse.optional_url,
        "Endpoint of an S3-compatible store (MinIO, moto); empty for Amazon S3.",
    )
    cache_ttl_seconds: int = _env_field(
        "CACHE_TTL_SECONDS", 3600, parse.int_between(1, 30 * 86400), "Lifetime of cached products."
    )
    cache_negative_ttl_seconds: int = _env_field(
        "CACHE_NEGATIVE_TTL_SECONDS",
        5,
        parse.int_between(1, 3600),
        "Lifetime of cached 'not found' answers, so a flood of 404s does not reach PostgreSQL.",
    )
    local_cache_ttl_seconds: float = _env_field(
        "LOCAL_CACHE_TTL_SECONDS",
        30.0,
        parse.float_between(0, 3600),
        "Lifetime of products kept in each API process (kept coherent by Redis pub/sub and "
        "PostgreSQL notifications).",
    )
    local_cache_max_items: int = _env_field(
        "LOCAL_CACHE_MAX_ITEMS",
        10_000,
        parse.int_between(0, 10_000_000),
        "Products kept in each API process; 0 turns the in-process cache off.",
    )
    api_host: str = _env_field(
        "API_HOST", "127.0.0.1", parse.nonempty, "Address the API listens on."
    )
    api_port: int = _env_field("API_PORT", 8080, parse.int_between(1, 65535), "Port of the API.")
    api_workers: int = _env_field(
        "API_WORKERS",
        1,
        parse.int_between(1, 256),
        "API processes sharing the port (SO_REUSEPORT).",
    )
    # -- access ----------------------------------------------------------------------------------
    auth_mode: str = _env_field(
        "AUTH_MODE",
        "api_key",
        parse.choice("api_key", "off"),
        "api_key: every request but health, metrics, docs and images needs a key; off: no "
        "checks and no limits, only behind a gateway that authenticates (logged as a warning).",
    )
    user_signup: str = _env_field(
        "USER_SIGNUP",
        "open",
        parse.choice("open", "admin"),
        "open: anyone may POST /users and get a key; admin: only with an admin key.",
    )
    admin_api_keys: str = _env_field(
        "ADMIN_API_KEYS",
        "",
        parse.admin_keys,
        "Admin keys, comma-separated (each at least 32 random characters): act on every user "
        "and product, exempt from limits.",
        secret=True,
    )
    product_reads: str = _env_field(
        "PRODUCT_READS",
        "private",
        parse.choice("private", "public"),
        "private: a key reads its user's products only; public: anyone reads products and "
        "lists without a key (a storefront), writes still need one (logged as a warning).",
    )
    rate_limit_reads: Rate = _env_field(
        "RATE_LIMIT_READS",
        Rate(200, 1.0),
        parse.rate,
        "Reads per key (or per address without one), N/s, N/min or N/h, shared by all API "
        "processes; a period's worth may come at once.",
    )
    rate_limit_writes: Rate = _env_field(
        "RATE_LIMIT_WRITES", Rate(20, 1.0), parse.rate, "Writes per key (or per address), as above."
    )
    image_quota_per_hour: int = _env_field(
        "IMAGE_QUOTA_PER_HOUR",
        1000,
        parse.int_between(1, 100_000_000),
        "Images per key and hour accepted in product creates and changes.",
    )
    idempotency_ttl_hours: int = _env_field(
        "IDEMPOTENCY_TTL_HOURS",
        24,
        parse.int_between(1, 24 * 30),
        "How long a create's Idempotency-Key is remembered.",
    )
    db_pool_max_size: int = _env_field(
        "DB_POOL_MAX_SIZE",
        32,
        parse.int_between(1, 1000),
        "PostgreSQL connections per API process; keep it at least the request concurrency.",
    )
    db_acquire_timeout_seconds: float = _env_field(
        "DB_ACQUIRE_TIMEOUT_SECONDS",
        2.0,
        parse.float_between(0.05, 60),
        "Longest wait for a database connection before answering 503.",
    )
    db_statement_timeout_seconds: float = _env_field(
        "DB_STATEMENT_TIMEOUT_SECONDS",
        5.0,
        parse.float_between(0.05, 600),
        "Longest a statement may run.",
    )
    max_images_per_product: int = _env_field(
        "MAX_IMAGES_PER_PRODUCT", 20, parse.int_between(0, 1000), "Most image URLs in one product."
    )
    outbox_poll_interval_seconds: float = _env_field(
        "OUTBOX_POLL_INTERVAL_SECONDS",
        2.0,
        parse.float_between(0.05, 3600),
        "Fallback poll of the outbox when no NOTIFY arrives.",
    )
    otel_exporter_otlp_endpoint: str = _env_field(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        parse.optional_url,
        "OpenTelemetry collector (OTLP over HTTP, e.g. http://127.0.0.1:4318): spans of each "
        "product's work are exported to its /v1/traces; empty exports nothing and costs nothing.",
    )
    sse_max_streams: int = _env_field(
        "SSE_MAX_STREAMS",
        1000,
        parse.int_between(1, 1_000_000),
        "Open GET /products/{id}/events streams per API process; one more is answered 503.",
    )
    log_level: str = _env_field(
        "LOG_LEVEL", "info", parse.choice("debug", "info", "warning", "error"), "Log level."
    )
    log_format: str = _env_field(
        "LOG_FORMAT",
        "json",
        parse.choice("json", "console"),
        "json (one object per line) or console.",
    )
    # -- image pipeline --------------------------------------------------------------------------
    image_max_download_bytes: int = _env_field(
        "IMAGE_MAX_DOWNLOAD_BYTES",
        25 * MIB,
        parse.int_between(1024, 1024 * MIB),
        "Largest source image, enforced while streaming.",
    )
    image_download_timeout_seconds: float = _env_field(
        "IMAGE_DOWNLOAD_TIMEOUT_SECONDS",
        15.0,
        parse.float_between(0.1, 600),
        "Time allowed for one download request, connect included; each redirect hop gets its own.",
    )
    image_allow_loopback_sources: bool = _env_field(
        "IMAGE_ALLOW_LOOPBACK_SOURCES",
        False,
        parse.boolean,
        "Allow source URLs on loopback addresses (development and tests only).",
    )
    image_allow_private_sources: bool = _env_field(
        "IMAGE_ALLOW_PRIVATE_SOURCES",
        False,
        parse.boolean,
        "Allow source URLs on private addresses (development only). Link-local never is.",
    )
    image_allowed_source_origins: str = _env_field(
        "IMAGE_ALLOWED_SOURCE_ORIGINS",
        "",
        source_origins_setting,
        "Source origins (scheme://ip:port, comma-separated) allowed although on a loopback or "
        "private address: exactly those, IP literals only; empty opens none.",
    )
    image_rendition_sizes: tuple[int, ...] = _env_field(
        "IMAGE_RENDITION_SIZES",
        (320, 640, 1024, 1600),
        parse.ascending_ints(16, 16384),
        "Longest sides of each source's renditions, ascending (comma-separated); a source yields "
        "those not larger than itself, or one at its own size when smaller than all.",
    )
    image_output_formats: tuple[str, ...] = _env_field(
        "IMAGE_OUTPUT_FORMATS",
        ("jpeg", "webp"),
        parse.choices("jpeg", "webp", "avif"),
        "Formats of the renditions (comma-separated: jpeg, webp, avif); each size is made in each.",
    )
    image_quality_jpeg: int = _env_field(
        "IMAGE_QUALITY_JPEG", 80, parse.int_between(1, 95), "Encoder quality of JPEG renditions."
    )
    image_quality_webp: int = _env_field(
        "IMAGE_QUALITY_WEBP", 79, parse.int_between(1, 100), "Encoder quality of WebP renditions."
    )
    image_quality_avif: int = _env_field(
        "IMAGE_QUALITY_AVIF", 63, parse.int_between(1, 100), "Encoder quality of AVIF renditions."
    )
    image_avif_speed: int = _env_field(
        "IMAGE_AVIF_SPEED",
        8,
        parse.int_between(0, 10),
        "libavif encoder speed, 0 (slowest, smallest) to 10: bounds the CPU an AVIF costs.",
    )
    image_max_pixels: int = _env_field(
        "IMAGE_MAX_PIXELS",
        50_000_000,
        parse.int_between(1, 1_000_000_000),
        "Largest source resolution; above it an image is a decompression bomb.",
    )
    image_compress_timeout_seconds: float = _env_field(
        "IMAGE_COMPRESS_TIMEOUT_SECONDS",
        30.0,
        parse.float_between(0.1, 3600),
        "Longest compression of one image; past it the process is killed and the image retried "
        "alone, then rejected as too_slow.",
    )
    image_max_attempts: int = _env_field(
        "IMAGE_MAX_ATTEMPTS",
        4,
        parse.int_between(1, 100),
        "Attempts per transient failure, the first included.",
    )
    image_retry_base_seconds: float = _env_field(
        "IMAGE_RETRY_BASE_SECONDS",
        1.0,
        parse.float_between(0.0, 3600),
        "Base of the exponential backoff between attempts.",
    )
    storage_gc_interval_seconds: float = _env_field(
        "STORAGE_GC_INTERVAL_SECONDS",
        21600.0,
        parse.float_between(0, 30 * 86400),
        "How often each worker tries to run the storage garbage collection (python -m "
        "compressor.gc), one worker at a time across the group; 0 turns it off.",
    )
    storage_gc_grace_seconds: float = _env_field(
        "STORAGE_GC_GRACE_SECONDS",
        3600.0,
        parse.float_between(0, 30 * 86400),
        "Age below which the periodic storage garbage collection keeps an unreferenced object "
        "(its upload's database write may still be in flight).",
    )
    # -- worker supervisor (each also a run_workers.py flag) ------------------------------------------
    worker_processes: int = _env_field(
        "WORKER_PROCESSES", 0, parse.int_between(0, 1024), "Compression processes; 0 = CPU count."
    )
    worker_download_concurrency: int = _env_field(
        "WORKER_DOWNLOAD_CONCURRENCY", 32, parse.int_between(1, 10_000), "Concurrent downloads."
    )
    worker_upload_concurrency: int = _env_field(
        "WORKER_UPLOAD_CONCURRENCY", 16, parse.int_between(1, 10_000), "Concurrent uploads."
    )
    worker_max_inflight_jobs: int = _env_field(
        "WORKER_MAX_INFLIGHT_JOBS",
        64,
        parse.int_between(1, 100_000),
        "Jobs taken from Kafka but not finished; above it the consumer pauses.",
    )
    worker_group_id: str = _env_field(
        "WORKER_GROUP_ID", "image-workers", parse.nonempty, "Kafka consumer group of the workers."
    )
    worker_metrics_host: str = _env_field(
        "WORKER_METRICS_HOST", "127.0.0.1", parse.nonempty, "Address of the worker's /metrics."
    )
    worker_metrics_port: int = _env_field(
        "WORKER_METRICS_PORT", 9100, parse.int_between(0, 65535), "Port of the worker's /metrics."
    )
    console_worker_metrics: str = _env_field(
        "CONSOLE_WORKER_METRICS",
        "",
        parse.optional_host_ports,
        "The workers' /metrics addresses (host:port, comma-separated) the console's pipeline "
        "page reads and sums, one per supervisor; empty: WORKER_METRICS_HOST:WORKER_METRICS_PORT.",
    )
    worker_shutdown_timeout_seconds: float = _env_field(
        "WORKER_SHUTDOWN_TIMEOUT_SECONDS",
        30.0,
        parse.float_between(0, 3600),
        "Longest graceful drain of in-flight jobs on SIGTERM.",
    )
    webhook_signing_key: str = _env_field(
        "WEBHOOK_SIGNING_KEY",
        "",
        parse.signing_key,
        "Server key (at least 32 random characters) from which each webhook's signing secret is "
        "derived, so the database holds no secret; empty turns webhooks off (POST /webhooks "
        "answers 503). Changing it changes every webhook's secret.",
        secret=True,
    )
    webhook_timeout_seconds: float = _env_field(
        "WEBHOOK_TIMEOUT_SECONDS",
        10.0,
        parse.float_between(0.5, 60),
        "A delivery counts only if the endpoint answers 2xx within this time, connect included.",
    )
    webhook_retry_schedule: tuple[float, ...] = _env_field(
        "WEBHOOK_RETRY_SCHEDULE",
        (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
        parse.durations(0.1, 7 * 86400),
        "Waits between a failed delivery attempt and the next (comma-separated, with s, m, h or "
        "d); after the last one fails the delivery has failed, and an endpoint with no success "
        "since is disabled.",
    )
    webhook_concurrency: int = _env_field(
        "WEBHOOK_CONCURRENCY",
        32,
        parse.int_between(1, 1000),
        "Deliveries one dispatcher makes at once, over all endpoints.",
    )
    webhook_endpoint_concurrency: int = _env_field(
        "WEBHOOK_ENDPOINT_CONCURRENCY",
        2,
        parse.int_between(1, 100),
        "Deliveries one dispatcher makes at once to one endpoint: a slow endpoint holds no more.",
    )
    webhook_group_id: str = _env_field(
        "WEBHOOK_GROUP_ID",
        "webhook-dispatchers",
        parse.nonempty,
        "Kafka consumer group of the webhook dispatchers (run_workers.py --role webhooks).",
    )
    webhook_allow_loopback_urls: bool = _env_field(
        "WEBHOOK_ALLOW_LOOPBACK_URLS",
        False,
        parse.boolean,
        "Allow webhook URLs on loopback addresses (development and tests only).",
    )
    webhook_allow_private_urls: bool = _env_field(
        "WEBHOOK_ALLOW_PRIVATE_URLS",
        False,
        parse.boolean,
        "Allow webhook URLs on private addresses (development only). Link-local never is.",
    )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def admin_keys(self) -> tuple[str, ...]:
        return tuple(self.admin_api_keys.split(",")) if self.admin_api_keys else ()

    @property
    def worker_metrics_addresses(self) -> tuple[str, ...]:
        """Where the console reads the workers' /metrics (CONSOLE_WORKER_METRICS)."""
        if self.console_worker_metrics:
            return tuple(self.console_worker_metrics.split(","))
        return (f"{self.worker_metrics_host}:{self.worker_metrics_port}",)

    @property
    def allowed_source_origins(self) -> tuple[SourceOrigin, ...]:
        return parse_source_origins(self.image_allowed_source_origins)

    @property
    def webhooks_enabled(self) -> bool:
        return bool(self.webhook_signing_key)

    @property
    def storage_is_local(self) -> bool:
        return not self.image_storage_url.startswith("s3://")

    @property
    def local_storage_path(self) -> Path:
        url = self.image_storage_url
        path = Path(urlsplit(url).path) if url.startswith("file://") else Path(url)
        return path.resolve()


# Variables that earlier versions read, and what replaced them: one set would be silently
# ignored otherwise (a deployment's IMAGE_QUALITY=90 quietly becoming 80).
REPLACED = {
    "IMAGE_MAX_DIMENSION": "IMAGE_RENDITION_SIZES",
    "IMAGE_OUTPUT_FORMAT": "IMAGE_OUTPUT_FORMATS",
    "IMAGE_QUALITY": "IMAGE_QUALITY_JPEG, IMAGE_QUALITY_WEBP or IMAGE_QUALITY_AVIF",
}


def settings_fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Settings))


def env_names() -> list[str]:
    return [f.metadata["env"] for f in settings_fields()]


def read_dotenv(path: Path) -> dict[str, str]:
    """Parses KEY=VALUE lines (optionally `export`ed and quoted); comments and blanks skipped."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> Settings:
    """Builds Settings from `.env` overlaid by the environment (the environment wins).

    Raises SettingsError naming the first bad variable.
    """
    source = read_dotenv(dotenv) if dotenv is not None else {}
    source.update(os.environ if environ is None else environ)
    for old, new in REPLACED.items():
        if old in source:
            raise SettingsError(f"{old} is no longer read: set {new} instead")
    values: dict[str, Any] = {}
    for f in settings_fields():
        name = f.metadata["env"]
        raw = source.get(name)
        if raw is None:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            shown = name if f.metadata["secret"] else f"{name}={raw!r}"
            raise SettingsError(f"{shown}: {exc}") from None
    return Settings(**values)


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The environment that loads back into `settings`: for child processes and tools."""
    env = {}
    for f in settings_fields():
        env[f.metadata["env"]] = env_value(getattr(settings, f.name))
    return env


def env_value(value: Any) -> str:
    """A setting's value as its variable writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def load_settings_or_exit() -> Settings:
    """For command-line entry points: a bad variable ends the process with one clear line."""
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
