"""The disks decide, on one server, boot after boot: standby without a data set; primary
once its disks are provisioned in the guest as a person would; degraded but serving with a
disk missing; refused — data untouched — when another server already answers the
primary's address or when the disks belong to another cluster. The first server is the
tier's `booted` machine (see conftest.py); the second boots through UEFI and systemd-boot.
(The secondary role and moving disks between servers are the lab tier's pair.)"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from atlas_services import daemons, messages
from atlas_services.roles import Role
from testkit.lab import facts, guestprov, hostprov
from testkit.lab.machine import Lab, Machine


def digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for file in files:
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def services(machine: Machine) -> list[str]:
    return machine.ssh(f"systemctl is-active {' '.join(daemons.UNITS)}", check=False).stdout.split()


def reboot_with(machine: Machine, disks: list[Path]) -> None:
    machine.shutdown()
    machine.disks = disks
    machine.start()
    machine.wait_booted()


def disks(lab: Lab, *names: str) -> list[Path]:
    return [lab.disk(name) for name in names]


@pytest.fixture(scope="module")
def theirs(lab: Lab, foreign_cluster: Path) -> list[Path]:
    """Two disks provisioned from the host as another cluster's primary data set."""
    their_disks = disks(lab, "theirs-1", "theirs-2")
    hostprov.provision(their_disks, Role.PRIMARY, foreign_cluster)
    return their_disks


class TestRoles:
    """One story, in order: the steps share the machines and their disks."""

    primary_key: str = ""
    copy_digest: str = ""

    def test_without_a_data_set_the_server_is_standby_and_says_why(self, booted: Machine) -> None:
        x = booted
        role = facts.role_json(x)
        assert (role["role"], role["reason_code"]) == ("standby", "no-dataset")
        assert x.boot_state == "running", x.ssh("systemctl --failed").stdout
        assert "no data set found" in x.ssh("atlas status").stdout
        assert "ATLAS: standby — no data set found" in x.serial_log.read_text(errors="replace")
        assert x.ssh("systemctl is-active atlas-standby.target").stdout.strip() == "active"
        assert services(x) == ["inactive"] * 5

    def test_disks_provisioned_in_the_guest_make_it_the_primary(self, lab: Lab,
                                                                artifacts_dir: Path) -> None:
        x = lab.machines["x"]
        guestprov.init_cluster(x)
        x.ssh(f"atlas disks init --role primary {guestprov.disk_paths(x)}")
        TestRoles.primary_key = x.ssh(
            "ssh-keygen -lf /etc/atlas/cluster/primary/ssh_host_ed25519_key.pub").stdout.split()[1]
        x.shutdown()
        # A byte-for-byte copy of the set: a second claimant of the primary's identity.
        for disk in x.disks:
            shutil.copyfile(disk, disk.with_name(disk.name.replace("x-", "copy-")))
        reboot_with(x, x.disks)
        role = facts.role_json(x)
        assert role["role"] == "primary" and role["reason_code"] == "ok"
        assert x.boot_state == "running", x.ssh("systemctl --failed").stdout
        assert x.ssh("hostname").stdout.strip() == guestprov.PRIMARY.hostname
        assert guestprov.PRIMARY.address in x.ssh("ip -br -4 addr show enp0s16").stdout
        fingerprint = x.ssh("ssh-keygen -lf /run/atlas/ssh/ssh_host_ed25519_key.pub").stdout
        assert fingerprint.split()[1] == TestRoles.primary_key
        assert x.ssh("systemctl is-active atlas-primary.target").stdout.strip() == "active"
        assert x.ssh("findmnt -no FSTYPE /srv/atlas").stdout.strip() == "btrfs"
        assert services(x) == ["active"] * 5
        entries = x.ssh(f"journalctl -b -o json MESSAGE_ID={messages.ROLE_PRIMARY}").stdout
        entry = json.loads(entries.splitlines()[-1])
        assert entry["ATLAS_ROLE"] == "primary" and entry["ATLAS_CLUSTER_ID"]
        own = (facts.unit_seconds(x, "atlas-role.service")
               - facts.unit_seconds(x, "atlas-role.service", "InactiveExitTimestampMonotonic"))
        record = {"own_seconds": own, "steps": role["timings"]}
        (artifacts_dir / "role-timing.json").write_text(json.dumps(record, indent=2) + "\n")

    def test_with_a_raid1_member_missing_it_serves_degraded_loudly(self, lab: Lab) -> None:
        x = lab.machines["x"]
        reboot_with(x, x.disks[:1])
        role = facts.role_json(x)
        assert (role["role"], role["reason_code"], role["degraded"]) == ("primary", "degraded", True)
        assert "DEGRADED" in x.ssh("atlas status").stdout
        assert "DEGRADED" in x.serial_log.read_text(errors="replace")
        entries = x.ssh(f"journalctl -b -o json MESSAGE_ID={messages.ROLE_DEGRADED}").stdout
        assert json.loads(entries.splitlines()[-1])["PRIORITY"] == "4"
        assert services(x) == ["active"] * 5

    def test_a_second_claimant_of_the_primary_address_refuses(self, lab: Lab) -> None:
        # The second server boots the way a real one does, through the firmware and
        # systemd-boot (the next step checks that), with a byte-for-byte copy of the set.
        copy = disks(lab, "copy-1", "copy-2")
        y = lab.machine("y", disks=copy, boot="uefi")
        TestRoles.copy_digest = digest(copy)
        y.start()
        y.wait_booted()
        role = facts.role_json(y)
        assert (role["role"], role["reason_code"]) == ("refused", "address-in-use")
        assert y.ssh("systemctl is-active atlas-standby.target").stdout.strip() == "active"
        assert services(y) == ["inactive"] * 5
        assert guestprov.PRIMARY.address.split("/")[0] not in y.ssh("ip -br -4 addr").stdout

    def test_the_image_boots_through_uefi_and_systemd_boot(self, lab: Lab) -> None:
        y = lab.machines["y"]
        assert "systemd-boot" in y.ssh("bootctl status --no-pager", check=False).stdout
        assert "console=ttyS0" in y.ssh("cat /proc/cmdline").stdout
        y.shutdown()
        assert digest(y.disks) == TestRoles.copy_digest

    def test_another_clusters_disks_are_refused_and_untouched(self, lab: Lab,
                                                              theirs: list[Path]) -> None:
        x = lab.machines["x"]
        x.shutdown()
        before = digest(theirs)
        reboot_with(x, theirs)
        role = facts.role_json(x)
        assert (role["role"], role["reason_code"]) == ("refused", "foreign-cluster")
        assert "refused" in x.ssh("atlas status").stdout
        assert "ATLAS: refused" in x.serial_log.read_text(errors="replace")
        assert x.ssh("findmnt /srv/atlas", check=False).returncode != 0
        x.shutdown()
        assert digest(theirs) == before
