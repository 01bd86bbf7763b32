"""The layers of docs/architecture.md hold, and the checker that holds them would notice a breach."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tally", "jobs", "cache", "dashboard_api")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the packages under ``root`` with the contracts of ``root/pyproject.toml``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layer_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def copy_of_the_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", root)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("static", "__pycache__"))
    return root


@pytest.mark.parametrize(
    ("module", "breach", "contract"),
    [
        ("dashboard_api/routes.py", "import jobs.hourly", "The API is HTTP over Redis"),
        ("dashboard_api/routes.py", "import pyspark.sql", "The API is HTTP over Redis"),
        ("cache/keys.py", "import fastapi", "Redis publishing knows nothing of HTTP"),
        ("cache/publish.py", "import jobs.transform", "Layers"),
        ("tally/core/spec.py", "import cache.keys", "Layers"),
        ("jobs/source.py", "import redis", "The Spark job knows nothing of Redis"),
    ],
)
def test_a_forbidden_import_breaks_the_contracts(copy_of_the_tree: Path, module: str, breach: str, contract: str):
    path = copy_of_the_tree / module
    original = path.read_text()
    path.write_text(original + f"\n{breach}  # noqa\n")
    try:
        result = lint_imports(copy_of_the_tree)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("dag_file", sorted((ROOT / "dags").glob("*.py")), ids=lambda p: p.name)
def test_dags_only_orchestrate(dag_file: Path):
    """A DAG file calls the application layer (and reads the core); the job, Redis and API stay behind it."""
    ours = {m for m in imported_modules(dag_file) if m.split(".")[0] in PACKAGES}
    assert ours, "a DAG that imports nothing of Tally runs nothing"
    behind = {m for m in ours if not m.startswith(("tally.app", "tally.core"))}
    assert not behind, f"{dag_file.name} imports {sorted(behind)}; call them through tally.app instead"
