"""The disks decide: standby without a data set, primary and secondary with the data sets
provisioned in the guests as a person would. (Moving the disks between the servers is
the failover drill, tests/lab/test_drill.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from atlaslab import cluster
from atlaslab.machine import BuiltImage, Lab, Machine


def role_of(machine: Machine) -> dict[str, object]:
    data: dict[str, object] = json.loads(machine.ssh("cat /run/atlas/role.json").stdout)
    return data


def fingerprint(machine: Machine) -> str:
    return machine.ssh("ssh-keygen -lf /run/atlas/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]


def boot_all(*machines: Machine) -> None:
    for machine in machines:
        machine.start()
    for machine in machines:
        machine.wait_booted()


def shutdown_all(*machines: Machine) -> None:
    for machine in machines:
        machine.shutdown()


@pytest.fixture(scope="module")
def pair(built_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Lab, Machine, Machine]]:
    with Lab(tmp_path_factory.mktemp("roles"), built_image) as lab:
        a = lab.machine("a", disks=[lab.disk("a-data1"), lab.disk("a-data2")])
        b = lab.machine("b", disks=[lab.disk("b-data1"), lab.disk("b-data2")])
        yield lab, a, b


class TestRoles:
    """One story, in order: the steps share the two machines."""

    fingerprints: ClassVar[dict[str, str]] = {}

    def test_without_data_set_both_are_standby(self, pair: tuple[Lab, Machine, Machine]) -> None:
        _, a, b = pair
        boot_all(a, b)
        for machine in (a, b):
            role = role_of(machine)
            assert role["role"] == "standby" and role["reason_code"] == "no-dataset"
            assert machine.boot_state == "running", machine.ssh("systemctl --failed").stdout
            assert machine.ssh("systemctl is-active atlas-standby.target").stdout.strip() == "active"
            assert machine.ssh("systemctl is-active nginx postgresql", check=False
                               ).stdout.split() == ["inactive", "inactive"]
            assert "standby" in machine.ssh("atlas status").stdout

    def test_provisioned_disks_make_primary_and_secondary(
            self, pair: tuple[Lab, Machine, Machine]) -> None:
        _, a, b = pair
        cluster.provision(a, b)
        keys = a.ssh("cat /etc/atlas/cluster/primary/ssh_host_ed25519_key.pub")
        self.fingerprints["primary"] = a.ssh(
            "ssh-keygen -lf /etc/atlas/cluster/primary/ssh_host_ed25519_key.pub").stdout.split()[1]
        self.fingerprints["secondary"] = a.ssh(
            "ssh-keygen -lf /etc/atlas/cluster/secondary/ssh_host_ed25519_key.pub").stdout.split()[1]
        assert keys.returncode == 0
        shutdown_all(a, b)
        boot_all(a, b)
        for machine, role, spec in ((a, "primary", cluster.PRIMARY),
                                    (b, "secondary", cluster.SECONDARY)):
            assert role_of(machine)["role"] == role
            assert machine.ssh("hostname").stdout.strip() == spec.hostname
            assert spec.address in machine.ssh("ip -br -4 addr show enp0s16").stdout
            assert fingerprint(machine) == self.fingerprints[role]
            assert machine.ssh(f"systemctl is-active atlas-{role}.target").stdout.strip() == "active"
            assert machine.ssh("findmnt -no FSTYPE /srv/atlas").stdout.strip() == "btrfs"
            assert machine.ssh("systemctl is-active nginx postfix dovecot postgresql smbd",
                               check=False).stdout.split() == ["active"] * 5
            assert machine.boot_state == "running", machine.ssh("systemctl --failed").stdout
        # The two servers reach each other over the private segment only.
        assert a.ssh("ping -c 1 -W 5 10.77.0.11", check=False).returncode == 0

    def test_role_decision_is_logged_with_its_message_id(
            self, pair: tuple[Lab, Machine, Machine]) -> None:
        _, a, _ = pair
        from atlas_services import messages

        entries = a.ssh(f"journalctl -b -o json MESSAGE_ID={messages.ROLE_PRIMARY}").stdout
        entry = json.loads(entries.splitlines()[-1])
        assert entry["ATLAS_ROLE"] == "primary" and entry["ATLAS_CLUSTER_ID"]

    def test_role_service_timing(self, pair: tuple[Lab, Machine, Machine],
                                 artifacts_dir: Path) -> None:
        _, a, _ = pair
        times = a.ssh("systemctl show atlas-role.service -P ExecMainStartTimestampMonotonic "
                      "-P ExecMainExitTimestampMonotonic -P InactiveExitTimestampMonotonic "
                      "-P ActiveEnterTimestampMonotonic").stdout.split()
        record: dict[str, object] = dict(zip(["main_start", "main_exit", "inactive_exit", "active_enter"],
                          map(int, times), strict=True))
        record["own_seconds"] = (record["active_enter"] - record["inactive_exit"]) / 1e6
        record["steps"] = role_of(a)["timings"]
        (artifacts_dir / "role-timing.json").write_text(json.dumps(record, indent=2) + "\n")
        assert isinstance(record["own_seconds"], float) and record["own_seconds"] > 0
