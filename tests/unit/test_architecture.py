"""The architecture rules (the import-linter contracts of pyproject.toml) hold for the repository,
and each of them fails on a tree that breaks it, so a passing `lint-imports` means something."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = REPO_ROOT / "pyproject.toml"
# The one of this interpreter's environment (not resolved: .venv/bin/python is a link).
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

API_AND_WORKER = "The API, the image worker and the webhook dispatcher never import each other"
LAYERS = "Entry points over shared contracts over SQL over settings"
HANDLERS = "Request handlers load neither Kafka nor the worker"
PRODUCT = "The product never imports its tests, benchmarks or test support"
TESTS_AND_BENCH = "Tests and benchmarks share only testkit"
TESTKIT = "Test support is not built on tests or benchmarks"

# A tiny tree with a module in every root package and only allowed imports: module -> imports.
ALLOWED: dict[str, list[str]] = {
    "config.settings": [],
    "db.queries": ["config.settings"],
    "catalogue.contract": ["db.queries"],
    "server.app": ["catalogue.contract"],
    "server.handlers.products": ["catalogue.contract"],
    "compressor.worker": ["catalogue.contract"],
    "webhooks.dispatcher": ["catalogue.contract"],
    "testkit.support": ["config.settings"],
    "tests.test_app": ["server.app", "testkit.support"],
    "bench.bench_app": ["server.app", "testkit.support"],
}

# One import too many, and the contracts it must break (no more, no fewer).
VIOLATIONS: dict[str, tuple[str, str, set[str]]] = {
    "api-imports-worker": ("server.uses_worker", "compressor.worker", {API_AND_WORKER, LAYERS}),
    "dispatcher-imports-worker": (
        "webhooks.uses_worker",
        "compressor.worker",
        {API_AND_WORKER, LAYERS},
    ),
    "api-imports-dispatcher": (
        "server.uses_dispatcher",
        "webhooks.dispatcher",
        {API_AND_WORKER, LAYERS},
    ),
    "handler-imports-kafka": ("server.handlers.uses_kafka", "aiokafka", {HANDLERS}),
    "contract-imports-api": ("catalogue.uses_api", "server.app", {LAYERS}),
    "sql-imports-testkit": ("db.uses_testkit", "testkit.support", {PRODUCT}),
    "tests-import-bench": ("tests.test_uses_bench", "bench.bench_app", {TESTS_AND_BENCH}),
    "bench-imports-tests": ("bench.uses_tests", "tests.test_app", {TESTS_AND_BENCH}),
    "testkit-imports-bench": ("testkit.uses_bench", "bench.bench_app", {TESTKIT}),
}

_VERDICT = re.compile(r"^(?P<name>.+) (?P<verdict>KEPT|BROKEN)$", re.MULTILINE)


def _contract_names() -> set[str]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {contract["name"] for contract in config["contracts"]}


def _lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No cache: nothing written into the checkout, and no race with a concurrent `make lint`.
    # No PYTHONPATH: a temporary tree must not be mixed up with the repository's packages.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _verdicts(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {m["name"]: m["verdict"] for m in _VERDICT.finditer(result.stdout)}


def _write_tree(root: Path, modules: dict[str, list[str]]) -> None:
    for module, imports in modules.items():
        *packages, name = module.split(".")
        folder = root.joinpath(*packages)
        for depth in range(1, len(packages) + 1):
            init = root.joinpath(*packages[:depth], "__init__.py")
            init.parent.mkdir(parents=True, exist_ok=True)
            init.touch()
        (folder / f"{name}.py").write_text("".join(f"import {i}\n" for i in imports))


def _lint_tree(tmp_path: Path, modules: dict[str, list[str]]) -> subprocess.CompletedProcess[str]:
    """lint-imports with a copy of the repository's config, over a temporary tree."""
    config = tmp_path / "contracts.toml"
    shutil.copyfile(PYPROJECT, config)
    tree = tmp_path / "tree"
    _write_tree(tree, modules)
    return _lint_imports(tree, "--config", str(config))


def test_repository_keeps_every_import_contract() -> None:
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, f"lint-imports failed:\n{result.stdout}\n{result.stderr}"
    assert set(_verdicts(result).values()) == {"KEPT"}, result.stdout


def test_every_contract_has_a_violation_below() -> None:
    shown = set().union(*(broken for _, _, broken in VIOLATIONS.values()))
    assert shown == _contract_names(), "each contract of pyproject.toml needs a VIOLATIONS case"


def test_tree_with_only_allowed_imports_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint_tree(tmp_path, ALLOWED)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert _verdicts(result) == dict.fromkeys(_contract_names(), "KEPT"), result.stdout


@pytest.mark.parametrize(("importer", "imported", "broken"), VIOLATIONS.values(), ids=VIOLATIONS)
def test_one_forbidden_import_breaks_its_contract(
    tmp_path: Path, importer: str, imported: str, broken: set[str]
) -> None:
    result = _lint_tree(tmp_path, {**ALLOWED, importer: [imported]})
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 1, output
    expected = {name: "BROKEN" if name in broken else "KEPT" for name in _contract_names()}
    assert _verdicts(result) == expected, output
    assert f"{importer} -> {imported} (l.1)" in result.stdout, output
