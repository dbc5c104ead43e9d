"""The code stays mypy --strict and ruff clean (CI enforces what the guide asks)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import build

RUFF = Path("/opt/atlas-tools/bin/ruff")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=build.REPO, capture_output=True, text=True, check=False)


def test_mypy_strict_on_the_package_and_build_py() -> None:
    if shutil.which("mypy") is None:
        pytest.skip("mypy is not installed (run ci/setup)")
    result = run("mypy", "--strict", "atlas_services", "build.py")
    assert result.returncode == 0, result.stdout


def test_ruff_clean() -> None:
    if not RUFF.exists():
        pytest.skip("ruff is not installed (run ci/setup)")
    result = run(str(RUFF), "check", "atlas_services", "build.py", "testkit", "tests", "ci",
                 "ci/lab", "ci/bench")
    assert result.returncode == 0, result.stdout
