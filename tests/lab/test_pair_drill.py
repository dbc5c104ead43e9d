"""Two servers in their roles (the shared pair of tests/lab/conftest.py): the Synchronizer
keeps the secondary tracking the primary, and the failover drill — the acceptance test of
the product — moves the disks and back."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from testkit.lab import drill, pair
from testkit.lab.machine import Machine

log = logging.getLogger("tests")

SYNC_INTERVAL_S = 30
TIMER_SLACK_S = 60  # atlas-sync.timer's accuracy and the start of the sync itself


def sync_state(machine: Machine) -> dict[str, object]:
    data: dict[str, object] = json.loads(machine.ssh("atlas sync status --json").stdout)
    return data


def applied_generation(machine: Machine) -> object:
    applied = sync_state(machine)["applied"]
    return applied.get("generation") if isinstance(applied, dict) else None


def test_the_secondary_pulls_and_reports_no_incompatible_drift(the_pair: pair.Pair) -> None:
    secondary = the_pair.by_role("secondary")
    result = secondary.ssh("atlas sync --now", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    state = sync_state(secondary)
    assert state["status"] == "ok"
    drift = state["drift"]
    assert isinstance(drift, list)
    assert [d for d in drift if d["class"] == "incompatible"] == []


def test_a_commit_on_the_primary_is_live_on_the_secondary_within_one_sync_period(
        the_pair: pair.Pair) -> None:
    primary, secondary = the_pair.by_role("primary"), the_pair.by_role("secondary")
    pair.set_settings(primary, "sync every 30 s for the lab", sync_interval_s=SYNC_INTERVAL_S)
    assert secondary.ssh("atlas sync --now", check=False).returncode == 0
    generation = pair.set_settings(primary, "a new administrator",
                                   admin_email="lab-owner@shop.test")
    committed = time.monotonic()
    deadline = committed + SYNC_INTERVAL_S + TIMER_SLACK_S
    # The run records what it applied only after the whole pull ends, a few seconds after
    # atlas.json changes, so wait for the record and then look at the file.
    while applied_generation(secondary) != generation:
        if time.monotonic() > deadline:
            pytest.fail(f"generation {generation} not live on the secondary after "
                        f"{deadline - committed:.0f} s:\n"
                        + secondary.ssh("atlas sync status", check=False).stdout)
        time.sleep(2)
    log.info("generation %d live on the secondary %.0f s after the commit", generation,
             time.monotonic() - committed)
    assert "lab-owner@shop.test" in secondary.ssh("cat /etc/atlas/atlas.json").stdout


def test_failover_drill(the_pair: pair.Pair, artifacts_dir: Path) -> None:
    report = drill.drill(the_pair, artifacts_dir / "drill-report.json")
    log.info("drill report:\n%s", report.table())
    failed = [a for a in report.assertions if not a["ok"]]
    assert report.passed, json.dumps(failed or report.steps, indent=2)
