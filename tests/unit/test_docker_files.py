"""The Docker files agree with the code: settings names, services, commands, files, docs.

No Docker engine is needed: both files are parsed and checked against the repository.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml  # PyYAML, installed with moto[server] (requirements-dev.txt)

from config.settings import env_names, load_settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "api", "workers")
# boto3's standard variables: how the app services reach MinIO. They are not settings.
BOTO3_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
# Variables the Dockerfile may set besides settings: the interpreter's and pip's own.
DOCKERFILE_VARIABLES = {
    "PATH",
    "VIRTUAL_ENV",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# -- parsing ---------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper-case: FROM, RUN, COPY, ...
    args: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def run_text(self) -> str:
        return "\n".join(i.args for i in self.all("RUN"))


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with their line continuations joined; comments and parser directives dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def dockerfile_stages() -> list[Stage]:
    stages: list[Stage] = []
    for instruction in dockerfile_instructions((ROOT / "Dockerfile").read_text()):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{instruction.keyword} before the first FROM"
            stages[-1].instructions.append(instruction)
    return stages


def copy_sources(instruction: Instruction) -> list[str]:
    """The build-context paths of a COPY (none when it copies from another stage or image)."""
    words = shlex.split(instruction.args)
    if any(w.startswith("--from") for w in words):
        return []
    words = [w for w in words if not w.startswith("--")]
    return words[:-1]


def env_assignments(instruction: Instruction) -> dict[str, str]:
    words = shlex.split(instruction.args)
    if "=" not in words[0]:  # legacy `ENV NAME value`
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line.lstrip("/") for line in lines if line and not line.startswith(("#", "!"))]


def is_dockerignored(source: str, patterns: list[str]) -> bool:
    source = source.strip("/").removeprefix("./")
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatch(source, pattern) or source.startswith(pattern + "/"):
            return True
    return False


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return dockerfile_stages()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


_DEFAULTED = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")


def environment_of(service: dict) -> dict[str, str]:
    """The service's environment as Compose gives it with none of the variables it reads set
    (`${NAME:-default}` becomes its default)."""
    env = service.get("environment") or {}
    if isinstance(env, list):  # `- NAME=value` form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {
        str(k): "" if v is None else _DEFAULTED.sub(lambda m: m[1], str(v)) for k, v in env.items()
    }


def depends_on_of(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def command_of(service: dict) -> list[str]:
    command = service.get("command")
    return shlex.split(command) if isinstance(command, str) else list(command or [])


def python_entry_file(command: list[str]) -> Path:
    """The repository file that `python X.py …` or `python -m pkg …` runs."""
    assert command, "no command"
    assert command[0] == "python", f"{command}: app commands run the image's python"
    if command[1] == "-m":
        module = ROOT / command[2].replace(".", "/")
        return module / "__main__.py" if module.is_dir() else module.with_suffix(".py")
    return ROOT / command[1]


# -- Dockerfile ------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_with_pinned_images(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        tag = stage.image.partition(":")[2]
        assert tag, f"FROM {stage.image}: pin a tag"
        assert tag != "latest", f"FROM {stage.image}: pin a version, not latest"
        assert re.search(r"\d", tag), f"FROM {stage.image}: pin a version"


def test_final_stage_runs_as_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "the runtime stage sets no USER"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}


def test_avx2_build_argument_exists_and_is_used(stages: list[Stage]) -> None:
    build = next(s for s in stages if "pillow-simd" in s.run_text())
    args = {a.args.split("=")[0]: a.args.partition("=")[2] for a in build.all("ARG")}
    assert args.get("PILLOW_SIMD_AVX2") == "1", "AVX2 must be on by default"
    pillow_run = next(r.args for r in build.all("RUN") if "pillow-simd" in r.args)
    assert re.search(r"\$\{?PILLOW_SIMD_AVX2\b", pillow_run), "the ARG is not used"
    assert "-mavx2" in pillow_run
    assert "--no-deps" in pillow_run
    assert "check_pillow_simd.py" in build.run_text()


def test_requirements_copied_and_installed(stages: list[Stage]) -> None:
    copied = [src for s in stages for c in s.all("COPY") for src in copy_sources(c)]
    assert "requirements.txt" in copied
    runs = "\n".join(s.run_text() for s in stages)
    assert re.search(r"pip install\b[^\n]*-r requirements\.txt", runs)


def test_every_copied_path_exists_and_is_not_dockerignored(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    sources = [src for s in stages for c in s.all("COPY") for src in copy_sources(c)]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not is_dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_runtime_stage_installs_no_build_tools(stages: list[Stage]) -> None:
    runtime = stages[-1].run_text()
    for tool in ("build-essential", "gcc", "g++", "make ", "-dev "):
        assert tool not in runtime + " ", f"the runtime stage installs {tool.strip()}"


def test_runtime_stage_copies_the_venv_and_the_app(stages: list[Stage]) -> None:
    runtime = stages[-1]
    assert any("--from=" in c.args and "/opt/venv" in c.args for c in runtime.all("COPY"))
    copied = {src.rstrip("/") for c in runtime.all("COPY") for src in copy_sources(c)}
    needed_paths = (
        *("config", "db", "catalogue", "server", "compressor", "webhooks"),
        *("run_api.py", "run_workers.py"),
    )
    for needed in needed_paths:
        assert needed in copied, f"the runtime stage does not copy {needed}"


def test_default_command_runs_a_copied_file(stages: list[Stage]) -> None:
    runtime = stages[-1]
    command = json.loads(runtime.all("CMD")[-1].args)
    assert command == ["python", "run_api.py"]
    assert python_entry_file(command).is_file()
    healthcheck = runtime.all("HEALTHCHECK")
    assert healthcheck, "no HEALTHCHECK"
    assert "/healthz" in healthcheck[-1].args
    exposed = {p for e in runtime.all("EXPOSE") for p in e.args.split()}
    assert {"8080", "9100"} <= exposed


def test_dockerfile_env_names_are_settings_or_interpreter_variables(stages: list[Stage]) -> None:
    known = set(env_names()) | DOCKERFILE_VARIABLES
    for stage in stages:
        for instruction in stage.all("ENV"):
            for name in env_assignments(instruction):
                assert name in known, f"Dockerfile ENV {name} is no setting"
    runtime_env = {k: v for i in stages[-1].all("ENV") for k, v in env_assignments(i).items()}
    # Both servers must listen beyond the container (published port, Prometheus scrapes).
    for name in ("API_HOST", "WORKER_METRICS_HOST"):
        if name in env_names():
            assert runtime_env.get(name) == "0.0.0.0", f"the image must set {name}=0.0.0.0"
    assert runtime_env.get("PYTHONUNBUFFERED") == "1"


# -- docker-compose.yml ----------------------------------------------------------------------------


def test_compose_has_the_services(services: dict[str, dict]) -> None:
    expected = {"postgres", "redis", "kafka", "minio", "minio-init", "migrate", "api", "workers"}
    assert expected <= set(services)


def test_app_services_set_only_known_variables(services: dict[str, dict]) -> None:
    known = set(env_names()) | BOTO3_VARIABLES
    for name in APP_SERVICES:
        env = environment_of(services[name])
        assert env, f"{name} sets no environment"
        unknown = set(env) - known
        assert not unknown, f"{name} sets variables the settings do not know: {sorted(unknown)}"


def test_app_service_values_are_valid_settings(services: dict[str, dict]) -> None:
    for name in APP_SERVICES:
        env = environment_of(services[name])
        settings = load_settings(env, dotenv=None)  # raises on any bad value
        for url in (settings.postgres_url, settings.redis_url, settings.s3_endpoint_url):
            assert urlsplit(url).hostname in services, f"{name}: {url} names no service"
        for server in settings.kafka_bootstrap_servers.split(","):
            assert server.rpartition(":")[0] in services, f"{name}: {server} names no service"
        assert not settings.storage_is_local, "in compose, images go to MinIO"


def test_app_services_use_the_minio_bucket_and_credentials(services: dict[str, dict]) -> None:
    minio_env = environment_of(services["minio"])
    init = " ".join(command_of(services["minio-init"]))
    for name in APP_SERVICES:
        env = environment_of(services[name])
        bucket = urlsplit(env["IMAGE_STORAGE_URL"]).netloc
        assert f"mb --ignore-existing local/{bucket}" in init
        assert f"anonymous set download local/{bucket}" in init
        assert env["IMAGE_PUBLIC_BASE_URL"].rstrip("/").endswith(f"/{bucket}")
        assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


def test_depends_on_names_existing_services_with_valid_conditions(
    services: dict[str, dict],
) -> None:
    for name, service in services.items():
        for dependency, condition in depends_on_of(service).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert condition in DEPENDS_ON_CONDITIONS, f"{name}: bad condition {condition}"
            target = services[dependency]
            if condition == "service_healthy":
                check = target.get("healthcheck") or {}
                reason = f"{name} waits for {dependency} to be healthy, which has no health check"
                assert check.get("test"), reason
                assert not check.get("disable"), reason
            if condition == "service_completed_successfully":
                assert target.get("restart", "no") == "no", f"{dependency} must be one-shot"


def test_app_startup_order(services: dict[str, dict]) -> None:
    migrate = depends_on_of(services["migrate"])
    assert migrate.get("postgres") == "service_healthy"
    for name in ("api", "workers"):
        deps = depends_on_of(services[name])
        assert deps.get("migrate") == "service_completed_successfully"
        assert deps.get("kafka") == "service_healthy"
        assert deps.get("redis") == "service_healthy"
    assert depends_on_of(services["workers"]).get("minio-init") == (
        "service_completed_successfully"
    )


@pytest.mark.parametrize("name", ["postgres", "redis", "kafka", "minio"])
def test_infrastructure_has_health_checks(services: dict[str, dict], name: str) -> None:
    check = services[name].get("healthcheck") or {}
    assert check.get("test"), f"{name} has no health check"
    assert not check.get("disable")


def test_health_check_commands(services: dict[str, dict]) -> None:
    def text(name: str) -> str:
        test = services[name]["healthcheck"]["test"]
        return test if isinstance(test, str) else " ".join(test)

    assert "pg_isready" in text("postgres")
    assert "redis-cli ping" in text("redis")
    assert "kafka-broker-api-versions.sh --bootstrap-server localhost:9092" in text("kafka")


def test_kafka_is_single_node_kraft_without_auto_create(services: dict[str, dict]) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = environment_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert "0.0.0.0" not in advertised
    app_servers = environment_of(services["api"])["KAFKA_BOOTSTRAP_SERVERS"]
    assert app_servers in advertised, "the apps must bootstrap from an advertised listener"


def test_images_are_pinned(services: dict[str, dict]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue  # the image built from this repository
        image = service.get("image", "")
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        assert tag, f"{name}: pin a tag of {image!r}"
        assert tag != "latest", f"{name}: pin a version of {image!r}, not latest"
        assert re.search(r"\d", tag), f"{name}: pin a version of {image!r}"


def test_build_args_are_dockerfile_args(services: dict[str, dict], stages: list[Stage]) -> None:
    declared = {a.args.split("=")[0] for s in stages for a in s.all("ARG")}
    for name in APP_SERVICES:
        build = services[name].get("build") or {}
        assert build, f"{name} is not built from this repository"
        assert set(build.get("args") or {}) <= declared


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_commands_name_existing_files(services: dict[str, dict], name: str) -> None:
    command = command_of(services[name])
    entry = python_entry_file(command)
    assert entry.is_file(), f"{name}: {' '.join(command)} runs {entry.relative_to(ROOT)}, missing"


def test_app_commands(services: dict[str, dict]) -> None:
    assert command_of(services["migrate"]) == ["python", "-m", "db", "migrate"]
    assert command_of(services["api"])[:2] == ["python", "run_api.py"]
    assert command_of(services["workers"])[:2] == ["python", "run_workers.py"]


def test_api_publishes_8080(services: dict[str, dict]) -> None:
    published = set()
    for port in services["api"].get("ports", []):
        if isinstance(port, dict):
            published.add((str(port.get("published")), str(port.get("target"))))
        else:
            host_part, _, target = str(port).rpartition(":")
            published.add((host_part.rpartition(":")[2], target.split("/")[0]))
    assert ("8080", "8080") in published
    assert environment_of(services["api"]).get("API_PORT", "8080") == "8080"


# -- .env.example and the README -------------------------------------------------------------------


def generated(fmt: str) -> str:
    result = subprocess.run(
        [sys.executable, "scripts/gen_settings_docs.py", fmt],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_env_example_is_generated_from_the_settings() -> None:
    assert (ROOT / ".env.example").read_text() == generated("env"), (
        ".env.example is stale: run `python scripts/gen_settings_docs.py env > .env.example`"
    )


def test_markdown_table_has_a_row_per_setting() -> None:
    table = generated("markdown")
    assert table.startswith("| Variable | Default | Meaning |")
    for name in env_names():
        assert f"| `{name}` |" in table


def test_readme_documents_every_setting() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    if not re.search(r"^#+\s*Configuration", text, re.MULTILINE | re.IGNORECASE):
        pytest.skip("README has no configuration table yet")
    missing = [name for name in env_names() if f"`{name}`" not in text]
    assert not missing, f"README's configuration table lacks {missing}"
