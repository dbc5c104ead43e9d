"""Refusal drills: a server that must not serve a data set says why, stays standby and
leaves the disks as they were; a degraded set still serves, loudly."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlas_services import messages
from atlaslab import hostprov, pair
from atlaslab.machine import BuiltImage, Lab, Machine

BUSINESS = "nginx postfix dovecot postgresql smbd"


def digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for file in files:
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def role_of(machine: Machine) -> dict[str, object]:
    data: dict[str, object] = json.loads(machine.ssh("cat /run/atlas/role.json").stdout)
    return data


def reboot_with(machine: Machine, disks: list[Path]) -> None:
    machine.shutdown()
    machine.disks = disks
    machine.start()
    machine.wait_booted()


@pytest.fixture(scope="module")
def lab(built_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("refusals")
    with Lab(workdir, built_image) as the_lab:
        ours, theirs = workdir / "ours", workdir / "theirs"
        pair.make_cluster(ours)
        pair.make_cluster(theirs)
        primary = [the_lab.disk("ours-1"), the_lab.disk("ours-2")]
        hostprov.provision(primary, "primary", ours)
        # A byte-for-byte copy of the primary's set: a second claimant of its identity.
        for disk in primary:
            shutil.copyfile(disk, disk.with_name(disk.name.replace("ours", "copy")))
        hostprov.provision([the_lab.disk("theirs-1"), the_lab.disk("theirs-2")], "primary", theirs)
        the_lab.machine("x", disks=[the_lab.disk("blank-1"), the_lab.disk("blank-2")])
        the_lab.machine("y")
        yield the_lab


def disks(lab: Lab, *names: str) -> list[Path]:
    return [lab.workdir / "disks" / f"{name}.img" for name in names]


class TestRefusals:
    """In order: the steps share two machines."""

    def test_no_data_set_is_standby_and_says_why(self, lab: Lab) -> None:
        x = lab.machines["x"]
        x.start()
        x.wait_booted()
        role = role_of(x)
        assert (role["role"], role["reason_code"]) == ("standby", "no-dataset")
        assert "no data set found" in x.ssh("atlas status").stdout
        assert "ATLAS: standby — no data set found" in x.serial_log.read_text(errors="replace")
        assert x.ssh(f"systemctl is-active {BUSINESS}", check=False).stdout.split() == [
            "inactive"] * 5

    def test_raid1_member_missing_boots_degraded_loudly_with_services_up(self, lab: Lab) -> None:
        x = lab.machines["x"]
        reboot_with(x, disks(lab, "ours-1"))
        role = role_of(x)
        assert (role["role"], role["reason_code"], role["degraded"]) == ("primary", "degraded", True)
        assert "DEGRADED" in x.ssh("atlas status").stdout
        assert "DEGRADED" in x.serial_log.read_text(errors="replace")
        entries = x.ssh(f"journalctl -b -o json MESSAGE_ID={messages.ROLE_DEGRADED}").stdout
        assert json.loads(entries.splitlines()[-1])["PRIORITY"] == "4"
        assert x.ssh(f"systemctl is-active {BUSINESS}", check=False).stdout.split() == [
            "active"] * 5

    def test_second_claimant_of_the_primary_address_refuses(self, lab: Lab) -> None:
        y = lab.machines["y"]
        copy = disks(lab, "copy-1", "copy-2")
        before = digest(copy)
        y.disks = copy
        y.start()
        y.wait_booted()
        role = role_of(y)
        assert (role["role"], role["reason_code"]) == ("refused", "address-in-use")
        assert y.ssh("systemctl is-active atlas-standby.target").stdout.strip() == "active"
        assert y.ssh(f"systemctl is-active {BUSINESS}", check=False).stdout.split() == [
            "inactive"] * 5
        assert "10.77.0.10" not in y.ssh("ip -br -4 addr").stdout
        y.shutdown()
        assert digest(copy) == before

    def test_foreign_cluster_is_refused_and_its_disks_untouched(self, lab: Lab) -> None:
        x = lab.machines["x"]
        theirs = disks(lab, "theirs-1", "theirs-2")
        x.shutdown()
        before = digest(theirs)
        reboot_with(x, theirs)
        role = role_of(x)
        assert (role["role"], role["reason_code"]) == ("refused", "foreign-cluster")
        assert "refused" in x.ssh("atlas status").stdout
        assert "ATLAS: refused" in x.serial_log.read_text(errors="replace")
        assert x.ssh("findmnt /srv/atlas", check=False).returncode != 0
        x.shutdown()
        assert digest(theirs) == before
