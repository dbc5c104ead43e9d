"""`atlas verify` on a machine that is not a primary or secondary, and its output format."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

import build
from atlas_services import errors
from atlas_services.paths import Layout
from atlas_services.results import Cycle, ProbeResult, Status
from atlas_services.verify.cli import format_cycle

T0 = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)


def atlas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atlas_services", *args], capture_output=True,
                          text=True, check=False, cwd=build.REPO)


def test_verify_without_an_action_is_a_usage_error() -> None:
    result = atlas("verify")
    assert result.returncode == errors.EXIT_REFUSED
    assert result.stderr.startswith("atlas: say what to do")


def test_verify_now_without_a_role_is_refused_in_one_line() -> None:
    if Layout().role_file.exists():
        pytest.skip("this machine has a role: --now would really run")
    result = atlas("verify", "--now")
    assert result.returncode == errors.EXIT_REFUSED
    assert result.stderr.count("\n") == 1 and "role detection has not run" in result.stderr


def test_status_json_has_the_verifier_line() -> None:
    status = json.loads(atlas("status", "--json").stdout)
    assert "verify" in status


def test_cycle_text_shows_problems_in_capitals() -> None:
    results = (ProbeResult("web", "t", Status.OK, 0.02, "fine", T0, "primary", "shop1"),
               ProbeResult("mail", "t", Status.FAILED, 5.0, "not delivered", T0, "primary", "shop1"))
    text = format_cycle(Cycle("shop1", "primary", T0, T0 + dt.timedelta(seconds=5), results))
    assert text.splitlines()[0].startswith("verify: FAILED on shop1 (primary), 2 probes")
    assert "FAILED    mail" in text and "ok        web " in text
