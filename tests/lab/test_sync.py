"""The Synchronizer in the two-VM lab: a configuration committed on the primary is live on
the secondary within one sync period (shortened for the test).

Needs, in the image: atlas-sync.timer enabled (preset) and role apply calling
`atlas_services.sync.access.install_sync_access()` on the primary (remove_sync_access()
otherwise), so the secondary's sync key gets in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from atlaslab import cluster
from atlaslab.machine import BuiltImage, Lab, Machine

INTERVAL_S = 30
TICK_S = 60  # atlas-sync.timer's OnUnitInactiveSec
SETTINGS = "/var/lib/atlas/config/work/atlas.json"


def boot_all(*machines: Machine) -> None:
    for machine in machines:
        machine.start()
    for machine in machines:
        machine.wait_booted()


def set_setting(machine: Machine, key: str, value: object, message: str) -> int:
    """Change one setting in the primary's working tree and commit it; returns the generation."""
    data = json.loads(machine.ssh(f"cat {SETTINGS}").stdout)
    data[key] = value
    machine.ssh(f"cat > {SETTINGS}", input=json.dumps(data, indent=2) + "\n")
    committed = json.loads(machine.ssh(f"atlas config commit --json -m '{message}'").stdout)
    return int(committed["number"])


def sync_state(machine: Machine) -> dict[str, object]:
    data: dict[str, object] = json.loads(machine.ssh("atlas sync status --json").stdout)
    return data


@pytest.fixture(scope="module")
def pair(built_image: BuiltImage,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Machine, Machine]]:
    with Lab(tmp_path_factory.mktemp("sync"), built_image) as lab:
        a = lab.machine("a", disks=[lab.disk("a-data1")])
        b = lab.machine("b", disks=[lab.disk("b-data1")])
        boot_all(a, b)
        cluster.provision(a, b)
        for machine in (a, b):
            machine.shutdown()
        boot_all(a, b)
        yield a, b


def test_the_secondary_pulls_and_reports_no_incompatible_drift(pair: tuple[Machine, Machine]) -> None:
    _, b = pair
    result = b.ssh("atlas sync --now", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    state = sync_state(b)
    assert state["status"] == "ok"
    drift = state["drift"]
    assert isinstance(drift, list)
    assert [d for d in drift if d["class"] == "incompatible"] == []


def test_a_commit_on_the_primary_is_live_on_the_secondary_within_one_sync_period(
        pair: tuple[Machine, Machine]) -> None:
    a, b = pair
    set_setting(a, "sync_interval_s", INTERVAL_S, "sync every 30 s for the lab")
    assert b.ssh("atlas sync --now", check=False).returncode == 0  # the shorter period is in force
    generation = set_setting(a, "admin_email", "lab-owner@shop.test", "a new administrator")
    committed = time.monotonic()
    deadline = committed + INTERVAL_S + TICK_S + 30
    while time.monotonic() < deadline:
        if "lab-owner@shop.test" in b.ssh("cat /etc/atlas/atlas.json", check=False).stdout:
            break
        time.sleep(2)
    else:
        status = b.ssh("atlas sync status", check=False).stdout
        pytest.fail(f"generation {generation} not live on the secondary after "
                    f"{deadline - committed:.0f} s:\n{status}")
    elapsed = time.monotonic() - committed
    print(f"\ngeneration {generation} live on the secondary {elapsed:.0f} s after the commit")
    applied = sync_state(b)["applied"]
    assert isinstance(applied, dict) and applied["generation"] == generation
