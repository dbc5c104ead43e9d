"""Least privilege, measured where it counts: `systemd-analyze security` of every ATLAS unit
and of the peer door's sandbox inside the booted image, recorded in
test-artifacts/exposure.json (and .md) and held to the budget in testkit/exposure.py; the door
answers from its own sandboxed transient service, and what that costs per request."""

from __future__ import annotations

import json
import shlex
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from atlas_services import door, messages
from testkit import exposure
from testkit.lab.machine import Machine

DOOR_PROBE = "atlas-door-exposure"


def measure(booted: Machine, unit: str) -> tuple[float, str]:
    result = booted.ssh(f"systemd-analyze security --no-pager {unit}", check=False)
    output = result.stdout + result.stderr
    return exposure.overall(output), output


@pytest.fixture(scope="module")
def table(booted: Machine, artifacts_dir: Path) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    details: list[str] = []
    for unit in sorted(exposure.BUDGET):
        if unit == "atlas-door.service":
            # A transient service with the door's own properties, scored while it runs.
            properties = " ".join(shlex.quote(f"--property={p}") for p in door.SANDBOX)
            booted.ssh(f"systemd-run --quiet --unit={DOOR_PROBE} {properties} /bin/sleep 300")
            try:
                score, output = measure(booted, f"{DOOR_PROBE}.service")
            finally:
                booted.ssh(f"systemctl stop {DOOR_PROBE}.service", check=False)
        else:
            score, output = measure(booted, unit)
        rows[unit] = {"exposure": score, "budget": exposure.BUDGET[unit],
                      "within": score <= exposure.BUDGET[unit]}
        details.append(f"## {unit}\n\n```\n{output.strip()}\n```\n")
    version = booted.ssh("systemctl --version").stdout.splitlines()[0]
    record = {"measured_in": "a booted guest of the image (standby)", "systemd": version,
              "units": rows}
    (artifacts_dir / "exposure.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| unit | exposure | budget |", "| --- | --- | --- |"]
    lines += [f"| {u} | {r['exposure']:.1f} | {r['budget']:.1f} |" for u, r in rows.items()]
    (artifacts_dir / "exposure.md").write_text(
        f"# ATLAS units: systemd-analyze security ({version})\n\n" + "\n".join(lines) + "\n\n"
        + "\n".join(details))
    return record


@pytest.mark.parametrize("unit", sorted(exposure.BUDGET))
def test_each_atlas_unit_is_within_its_exposure_budget(table: dict[str, Any], unit: str) -> None:
    row = table["units"][unit]
    assert row["within"], f"{unit}: exposure {row['exposure']} above its budget {row['budget']}"


def test_the_door_answers_from_its_own_sandbox(booted: Machine, artifacts_dir: Path) -> None:
    # A refusal is logged by the door itself: the journal says which unit it ran in.
    refused = booted.ssh("SSH_ORIGINAL_COMMAND='cat /etc/shadow' atlas sync-serve", check=False)
    assert refused.returncode == 2 and "refused" in refused.stderr
    entry = json.loads(booted.ssh(f"journalctl -o json -n 1 MESSAGE_ID={messages.SYNC_SERVE_REFUSED}")
                       .stdout.splitlines()[-1])
    assert entry["_SYSTEMD_UNIT"].startswith("atlas-door-"), entry.get("_SYSTEMD_UNIT")
    # What confinement costs a request (the standby serves `hello`): the same request
    # answered in the door's sandbox and, for comparison, in place.
    costs: dict[str, list[float]] = {"confined": [], "in_place": []}
    for _ in range(5):
        for kind, prefix in (("confined", ""), ("in_place", "ATLAS_DOOR_CONFINED=1 ")):
            started = time.monotonic()
            reply = booted.ssh(f"{prefix}SSH_ORIGINAL_COMMAND=hello atlas sync-serve")
            costs[kind].append(time.monotonic() - started)
            assert json.loads(reply.stdout)["role"] == "standby"
    medians = {kind: round(statistics.median(values), 3) for kind, values in costs.items()}
    (artifacts_dir / "door-cost.json").write_text(json.dumps(
        {"request": "hello over a local shell (ssh round trip included)", "runs": costs,
         "median_s": medians}, indent=2) + "\n")
