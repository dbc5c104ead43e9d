"""The code stays mypy --strict and ruff clean, in every Python directory (CI enforces what
the guide asks)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import build

RUFF = Path("/opt/atlas-tools/bin/ruff")
# The package, the build, test support, the tests and ci/'s Python files; ci/'s commands
# without a .py suffix are checked one by one (mypy would take both for __main__).
PYTHON = ("atlas_services", "build.py", "testkit", "tests", *sorted(
    str(p.relative_to(build.REPO)) for p in (build.REPO / "ci").glob("*.py")))
SCRIPTS = ("ci/lab", "ci/bench")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=build.REPO, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("targets", [PYTHON, *((s,) for s in SCRIPTS)], ids=["python", *SCRIPTS])
def test_mypy_strict(targets: tuple[str, ...]) -> None:
    if shutil.which("mypy") is None:
        pytest.skip("mypy is not installed (run ci/setup)")
    result = run("mypy", "--strict", *targets)
    assert result.returncode == 0, result.stdout


def test_ruff_clean() -> None:
    if not RUFF.exists():
        pytest.skip("ruff is not installed (run ci/setup)")
    result = run(str(RUFF), "check", *PYTHON, *SCRIPTS)
    assert result.returncode == 0, result.stdout
