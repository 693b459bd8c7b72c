"""docker-compose (Debian's, a client we did not write) validates docker-compose.yml against the
Compose schema and resolves it (`config`): anchors merged, variables interpolated, paths made
absolute. tests/unit/test_docker_files.py reads the same file as YAML; this is what the tool
itself makes of it. `config` needs no Docker engine: every run here points DOCKER_HOST at a
socket that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.settings import load_settings
from testkit.debian_tools import DEBIAN_BIN, debian_tool, run_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {
    *("postgres", "redis", "kafka", "minio", "minio-init"),
    *("migrate", "api", "workers", "webhooks"),
}
APP_SERVICES = ("migrate", "api", "workers", "webhooks")


@pytest.fixture(scope="module")
def docker_compose() -> str:
    return debian_tool("docker-compose", "docker-compose")


@pytest.fixture
def engineless_env(tmp_path) -> dict[str, str]:
    """No Docker engine to talk to, and none of the developer's variables or .env."""
    socket = tmp_path / "no-docker-engine.sock"
    assert not socket.exists()
    return {"PATH": DEBIAN_BIN, "HOME": str(tmp_path), "DOCKER_HOST": f"unix://{socket}"}


def compose_config(
    docker_compose: str, compose_file: Path, env: dict[str, str], *, check: bool = True
):
    """`docker-compose config` of `compose_file`, resolved as if it lay at the repository's root,
    with an empty env file (a developer's .env holds settings, not compose variables)."""
    empty = Path(env["HOME"]) / "empty.env"
    empty.touch()
    return run_tool(
        [
            docker_compose,
            *("--env-file", str(empty), "--project-directory", str(ROOT)),
            *("-f", str(compose_file), "config"),
        ],
        env=env,
        timeout_s=60,
        check=check,
    )


def test_compose_config_validates_the_file(docker_compose, engineless_env):
    """Debian bookworm's docker-compose 1.29.2 predates the Compose spec's top-level `name` and
    refused the whole file for it, until the file dropped it."""
    result = compose_config(docker_compose, COMPOSE_FILE, engineless_env, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert set(yaml.safe_load(result.stdout)["services"]) == SERVICES


def test_compose_config_resolves_services_environment_and_build(docker_compose, engineless_env):
    resolved = yaml.safe_load(compose_config(docker_compose, COMPOSE_FILE, engineless_env).stdout)
    services = resolved["services"]
    assert set(services) == SERVICES
    assert set(resolved["volumes"]) == {"postgres-data", "minio-data"}

    # The x-app anchor, merged: one image, one build and one environment for all three.
    app = [services[name] for name in APP_SERVICES]
    for service in app:
        assert service["image"] == "product-catalogue:local"
        assert service["build"] == {"context": str(ROOT), "args": {"PILLOW_SIMD_AVX2": "1"}}
        assert service["environment"] == app[0]["environment"]
    env = app[0]["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["IMAGE_STORAGE_URL"] == "s3://images/catalogue"
    assert env["S3_ENDPOINT_URL"] == "http://minio:9000"
    # What compose hands the processes is valid settings (every value a string by now).
    settings = load_settings({k: str(v) for k, v in env.items()}, None)
    assert settings.api_host == "0.0.0.0"
    assert not settings.storage_is_local

    # Start-up order and health, as the tool resolved them.
    assert services["workers"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "minio-init": {"condition": "service_completed_successfully"},
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "kafka": {"condition": "service_healthy"},
    }
    assert services["api"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["migrate"]["healthcheck"] == {"test": ["NONE"]}  # `disable: true`
    assert services["api"]["ports"] == [{"published": 8080, "target": 8080}]
    for name in ("postgres", "redis", "kafka", "minio", "workers"):
        assert services[name]["healthcheck"]["test"], name


def test_compose_config_interpolates_the_avx2_switch(docker_compose, engineless_env):
    """`PILLOW_SIMD_AVX2=0 docker compose up --build`, as the file's header says, reaches the
    build of every app service."""
    env = {**engineless_env, "PILLOW_SIMD_AVX2": "0"}
    services = yaml.safe_load(compose_config(docker_compose, COMPOSE_FILE, env).stdout)["services"]
    for name in APP_SERVICES:
        assert services[name]["build"]["args"] == {"PILLOW_SIMD_AVX2": "0"}


def test_compose_config_refuses_a_dependency_on_an_undefined_service(
    docker_compose, engineless_env, tmp_path
):
    """What parsing the file as YAML cannot see, the tool does: `config` checks references."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    compose["services"]["api"]["depends_on"]["search"] = {"condition": "service_healthy"}
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(compose))
    result = compose_config(docker_compose, broken, engineless_env, check=False)
    assert result.returncode != 0
    message = (result.stdout + result.stderr).decode(errors="replace")
    assert "Service 'api' depends on service 'search' which is undefined" in message
