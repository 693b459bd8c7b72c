"""Settings: defaults, `.env` and the environment, and a clear one-line error for each bad value."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.origins import SourceOrigin, log_sources_opened, sources_opened_event
from config.settings import (
    Settings,
    SettingsError,
    env_names,
    env_value,
    load_settings,
    read_dotenv,
    settings_fields,
    settings_to_env,
)

ROOT = Path(__file__).resolve().parents[2]


def write_dotenv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


# -- defaults and sources --------------------------------------------------------------------------


def test_defaults_load_with_an_empty_environment(tmp_path: Path) -> None:
    settings = load_settings({}, dotenv=tmp_path / "no-such.env")
    assert settings == Settings()
    assert settings.api_port == 8080
    assert settings.kafka_jobs_topic == "product-images"
    assert settings.kafka_dlq_topic == "product-images.dlq"
    assert settings.image_storage_url == "./data/images"
    assert settings.log_format == "json"
    assert settings.s3_endpoint_url == ""


def test_every_default_passes_its_own_parser() -> None:
    for f in settings_fields():
        assert f.metadata["parse"](env_value(f.default)) == f.default, f.metadata["env"]


def test_every_setting_has_a_unique_upper_case_name_and_help() -> None:
    names = env_names()
    assert len(names) == len(set(names))
    for f in settings_fields():
        assert f.metadata["env"].isupper(), f.metadata["env"]
        assert f.metadata["help"].strip(), f"{f.metadata['env']} has no help"


def test_environment_overrides_dotenv(tmp_path: Path) -> None:
    dotenv = write_dotenv(tmp_path, "API_PORT=9000\nLOG_LEVEL=debug\n")
    settings = load_settings({"API_PORT": "9001"}, dotenv=dotenv)
    assert settings.api_port == 9001  # the environment wins
    assert settings.log_level == "debug"  # .env fills in what the environment lacks


def test_dotenv_parsing(tmp_path: Path) -> None:
    dotenv = write_dotenv(
        tmp_path,
        "# a comment\n"
        "\n"
        "   # an indented comment\n"
        "export API_PORT=9002\n"
        'KAFKA_JOBS_TOPIC="jobs.v2"\n'
        "KAFKA_DLQ_TOPIC='jobs.v2.dlq'\n"
        "  LOG_FORMAT = console  \n"
        "API_HOST='0.0.0.0'\n"
        "S3_ENDPOINT_URL=\n",
    )
    assert read_dotenv(dotenv) == {
        "API_PORT": "9002",
        "KAFKA_JOBS_TOPIC": "jobs.v2",
        "KAFKA_DLQ_TOPIC": "jobs.v2.dlq",
        "LOG_FORMAT": "console",
        "API_HOST": "0.0.0.0",
        "S3_ENDPOINT_URL": "",
    }
    settings = load_settings({}, dotenv=dotenv)
    assert settings.api_port == 9002
    assert settings.kafka_jobs_topic == "jobs.v2"
    assert settings.kafka_dlq_topic == "jobs.v2.dlq"
    assert settings.log_format == "console"


def test_dotenv_line_without_equals_names_file_and_line(tmp_path: Path) -> None:
    dotenv = write_dotenv(tmp_path, "# ok\nAPI_PORT=8080\nnot a pair\n")
    with pytest.raises(SettingsError, match=r"\.env:3: expected KEY=VALUE"):
        load_settings({}, dotenv=dotenv)


def test_bad_value_in_dotenv_stops_too(tmp_path: Path) -> None:
    dotenv = write_dotenv(tmp_path, "API_PORT=eighty\n")
    with pytest.raises(SettingsError, match=r"^API_PORT='eighty': must be an integer$"):
        load_settings({}, dotenv=dotenv)


def test_env_example_loads_to_the_defaults() -> None:
    assert load_settings({}, dotenv=ROOT / ".env.example") == Settings()


# -- bad values: one line naming the variable and what is wrong ------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        pytest.param("API_PORT", "x", "must be an integer", id="non-integer-port"),
        pytest.param("API_PORT", "70000", "must be between 1 and 65535", id="port-out-of-range"),
        pytest.param("API_PORT", "0", "must be between 1 and 65535", id="port-zero"),
        pytest.param(
            "IMAGE_ALLOW_LOOPBACK_SOURCES", "maybe", "must be true or false", id="bad-boolean"
        ),
        pytest.param("LOG_FORMAT", "xml", "must be one of json, console", id="bad-log-format"),
        pytest.param(
            "POSTGRES_URL",
            "mysql://db.example/catalogue",
            "must be a URL with scheme postgresql or postgres",
            id="bad-postgres-scheme",
        ),
        pytest.param(
            "POSTGRES_URL", "postgresql:///catalogue", "must name a host", id="postgres-no-host"
        ),
        pytest.param(
            "KAFKA_BOOTSTRAP_SERVERS",
            "kafka",
            "must be a comma-separated list of host:port",
            id="bootstrap-without-port",
        ),
        pytest.param(
            "KAFKA_BOOTSTRAP_SERVERS",
            "",
            "must be a comma-separated list of host:port",
            id="bootstrap-empty",
        ),
        pytest.param(
            "KAFKA_JOBS_TOPIC",
            "image jobs!",
            "must be 1-249 characters of letters, digits, '.', '_' or '-'",
            id="bad-topic",
        ),
        pytest.param(
            "IMAGE_STORAGE_URL",
            "s3://",
            "s3:// URL must name a bucket (s3://bucket/prefix)",
            id="s3-without-bucket",
        ),
        pytest.param(
            "IMAGE_STORAGE_URL",
            "file:data/images",
            "file:// URL must hold an absolute path",
            id="file-url-not-absolute",
        ),
        pytest.param(
            "IMAGE_DOWNLOAD_TIMEOUT_SECONDS", "nan", "must be between 0.1 and 600", id="nan-float"
        ),
        pytest.param(
            "IMAGE_DOWNLOAD_TIMEOUT_SECONDS", "soon", "must be a number", id="non-number-float"
        ),
        pytest.param("S3_ENDPOINT_URL", "minio:9000", "must be a URL with scheme", id="bad-s3"),
        pytest.param("API_HOST", "  ", "must not be empty", id="empty-host"),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "127.0.0.1:8090",
            "origin '127.0.0.1:8090': must be scheme://host:port with scheme http or https",
            id="origin-without-scheme",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "ftp://127.0.0.1:21",
            "with scheme http or https",
            id="origin-ftp",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://localhost:8090",
            "host must be an IP address such as 127.0.0.1 or [::1], not a name",
            id="origin-host-name",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://127.0.0.1:8090/samples",
            "must not have a path",
            id="origin-with-path",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://127.0.0.1:8090?x=1",
            "must not have a query or fragment",
            id="origin-with-query",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://127.0.0.1:8090#top",
            "must not have a query or fragment",
            id="origin-with-fragment",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://me:secret@127.0.0.1:8090",
            "must not hold a user name or password",
            id="origin-with-userinfo",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://127.0.0.1:0",
            "port must be a number between 1 and 65535",
            id="origin-port-zero",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://127.0.0.1:70000",
            "port must be a number between 1 and 65535",
            id="origin-port-out-of-range",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://[::1",
            "is not a URL",
            id="origin-unclosed-bracket",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://:8090",
            "must name a host",
            id="origin-without-host",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://169.254.169.254",
            "a link-local address is never an image source",
            id="origin-metadata-link-local",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://[fe80::1]:8090",
            "a link-local address is never an image source",
            id="origin-link-local-v6",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://0.0.0.0:8090",
            "an unspecified address is never an image source",
            id="origin-unspecified",
        ),
        pytest.param(
            "IMAGE_ALLOWED_SOURCE_ORIGINS",
            "http://127.0.0.1:8090,http://224.0.0.1:80",
            "origin 'http://224.0.0.1:80': a multicast address is never an image source",
            id="origin-second-of-two-bad",
        ),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(name: str, raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({name: raw}, dotenv=None)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{name}={raw!r}: "), text
    assert message in text


# -- storage ---------------------------------------------------------------------------------------


def test_relative_storage_path_is_local_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"IMAGE_STORAGE_URL": "./data/images"}, dotenv=None)
    assert settings.storage_is_local
    assert settings.local_storage_path == (tmp_path / "data" / "images").resolve()
    assert settings.local_storage_path.is_absolute()


def test_file_url_storage_is_local(tmp_path: Path) -> None:
    settings = load_settings({"IMAGE_STORAGE_URL": f"file://{tmp_path}/images"}, dotenv=None)
    assert settings.storage_is_local
    assert settings.local_storage_path == (tmp_path / "images").resolve()


def test_file_url_with_a_host_is_rejected() -> None:
    with pytest.raises(SettingsError, match="IMAGE_STORAGE_URL"):
        load_settings({"IMAGE_STORAGE_URL": "file://data/images"}, dotenv=None)


def test_s3_storage_is_not_local() -> None:
    settings = load_settings(
        {"IMAGE_STORAGE_URL": "s3://images/catalogue", "S3_ENDPOINT_URL": "http://minio:9000"},
        dotenv=None,
    )
    assert not settings.storage_is_local
    assert settings.s3_endpoint_url == "http://minio:9000"


# -- allowed source origins ------------------------------------------------------------------------


def test_no_source_origin_is_open_by_default() -> None:
    settings = load_settings({}, dotenv=None)
    assert settings.image_allowed_source_origins == ""
    assert settings.allowed_source_origins == ()
    assert not settings.image_allow_loopback_sources
    assert not settings.image_allow_private_sources


def test_source_origins_are_normalised_and_deduplicated() -> None:
    settings = load_settings(
        {
            "IMAGE_ALLOWED_SOURCE_ORIGINS": (
                " HTTP://127.0.0.1:8090/ , http://[0:0::1]:8091,https://10.0.0.5,"
                "http://127.0.0.1:8090,http://192.168.1.20, "
            )
        },
        dotenv=None,
    )
    assert settings.image_allowed_source_origins == (
        "http://127.0.0.1:8090,http://[::1]:8091,https://10.0.0.5:443,http://192.168.1.20:80"
    )
    assert settings.allowed_source_origins == (
        SourceOrigin("http", "127.0.0.1", 8090),
        SourceOrigin("http", "::1", 8091),
        SourceOrigin("https", "10.0.0.5", 443),
        SourceOrigin("http", "192.168.1.20", 80),
    )
    # The normalised value is what child processes get, and it loads back to the same.
    env = settings_to_env(settings)
    assert load_settings(env, dotenv=None) == settings


def test_sources_opened_event_is_info_when_closed_and_warning_when_opened() -> None:
    closed = load_settings({}, dotenv=None)
    assert sources_opened_event(closed) == (
        logging.INFO,
        "ssrf.sources_opened",
        {
            "allowed_source_origins": [],
            "allow_loopback_sources": False,
            "allow_private_sources": False,
        },
    )
    origin = load_settings({"IMAGE_ALLOWED_SOURCE_ORIGINS": "http://127.0.0.1:8090"}, None)
    assert sources_opened_event(origin) == (
        logging.WARNING,
        "ssrf.sources_opened",
        {
            "allowed_source_origins": ["http://127.0.0.1:8090"],
            "allow_loopback_sources": False,
            "allow_private_sources": False,
        },
    )
    for switch in ("IMAGE_ALLOW_LOOPBACK_SOURCES", "IMAGE_ALLOW_PRIVATE_SOURCES"):
        level, _event, _fields = sources_opened_event(load_settings({switch: "true"}, None))
        assert level == logging.WARNING, switch


def test_log_sources_opened_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"IMAGE_ALLOWED_SOURCE_ORIGINS": "http://[::1]:8090"}, None)
    logger = logging.getLogger("test.sources")
    with caplog.at_level(logging.INFO, logger="test.sources"):
        log_sources_opened(logger, settings)
    [record] = caplog.records
    assert (record.levelno, record.getMessage()) == (logging.WARNING, "ssrf.sources_opened")
    assert record.allowed_source_origins == ["http://[::1]:8090"]  # type: ignore[attr-defined]


# -- immutability ----------------------------------------------------------------------------------


def test_settings_are_frozen() -> None:
    settings = load_settings({}, dotenv=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.api_port = 1  # type: ignore[misc]
    changed = settings.replace(api_port=9999)
    assert changed.api_port == 9999
    assert settings.api_port == 8080


# -- start-up with a bad variable ------------------------------------------------------------------


def _clean_environment(**extra: str) -> dict[str, str]:
    """The current environment without any setting (a developer's shell may have some)."""
    env = {k: v for k, v in os.environ.items() if k not in set(env_names())}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["-m", "db", "migrate"], id="db-migrate"),
        pytest.param(["run_api.py"], id="run_api"),
        pytest.param(["run_workers.py"], id="run_workers"),
    ],
)
def test_bad_variable_stops_start_up_with_one_line(command: list[str], tmp_path: Path) -> None:
    if command[0] != "-m":
        script = ROOT / command[0]
        if not script.is_file():
            pytest.skip(f"{command[0]} does not exist yet")
        command = [str(script), *command[1:]]
    # Run from an empty folder, so a developer's own .env cannot change the outcome.
    result = subprocess.run(
        [sys.executable, *command],
        cwd=tmp_path,
        env=_clean_environment(API_PORT="x", PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stderr.splitlines() == ["configuration error: API_PORT='x': must be an integer"]
    assert result.returncode == 2
