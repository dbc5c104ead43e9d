"""The built image boots into a healthy ATLAS server and carries no per-host secret."""

from __future__ import annotations

import json
import re

import build
from atlas_services import daemons
from testkit.lab.machine import BuiltImage, Machine


def test_outputs_are_complete_and_checksummed(built_image: BuiltImage) -> None:
    manifest = built_image.manifest
    for key in ("image_version", "git_revision", "atlas_services_version",
                "build_inputs_sha256", "packages", "kernel_command_line"):
        assert manifest[key], key
    sums = built_image.image.with_name(built_image.image.name + ".sha256").read_text().split()
    assert sums == [manifest["image_sha256"], built_image.image.name]
    assert built_image.image.name == f"atlas_{manifest['image_version']}.raw"
    assert any(p.startswith("linux-image-") for p in manifest["packages"])
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9+.-]*=\S+", p) for p in manifest["packages"])


def test_image_file_holds_no_host_secret(built_image: BuiltImage) -> None:
    with build.mounted_root(built_image.image) as root:
        assert list((root / "etc/ssh").glob("ssh_host_*")) == []
        assert (root / "etc/machine-id").read_text().strip() in ("", "uninitialized")
        assert build.host_secrets(root) == []
        shadow = (root / "etc/shadow").read_text().splitlines()
    esp = build.esp_files(built_image.image)
    assert "loader/random-seed" not in esp
    assert "EFI/BOOT/BOOTX64.EFI" in esp
    # Every account is locked or has no password hash at all: nothing to guess.
    for line in shadow:
        name, password = line.split(":")[:2]
        assert password.startswith(("*", "!")), f"{name} has a usable password"


def test_image_has_esp_with_systemd_boot_and_btrfs_root(built_image: BuiltImage) -> None:
    parts = build.partitions(built_image.image)
    assert [p.type for p in parts] == [build.ESP_TYPE, build.ROOT_X86_64_TYPE]
    assert "console=ttyS0" in built_image.cmdline


def test_boots_to_running_with_no_failed_units(booted: Machine) -> None:
    failed = booted.ssh("systemctl --failed --no-legend --plain").stdout
    assert booted.boot_state == "running", failed


def test_atlas_command_matches_manifest_version(booted: Machine, built_image: BuiltImage) -> None:
    assert booted.ssh("atlas --version").stdout.split() == [
        "atlas", built_image.manifest["atlas_services_version"]]
    status = json.loads(booted.ssh("atlas status --json").stdout)
    assert status["image_version"] == built_image.manifest["image_version"]


def test_without_a_data_set_business_services_stay_stopped(booted: Machine) -> None:
    states = booted.ssh(f"systemctl is-active {' '.join(daemons.UNITS)}", check=False)
    assert states.stdout.split() == ["inactive"] * len(daemons.UNITS)
    assert booted.ssh("systemctl is-active atlas-standby.target").stdout.strip() == "active"
    # Enabled is what an administrator would switch: the unit files named after the services.
    for service in (d.unit_prefix for d in daemons.DAEMONS):
        assert booted.ssh(f"systemctl is-enabled {service}", check=False
                          ).stdout.strip() == "disabled", service


def test_atlas_units_pass_systemd_analyze_verify(booted: Machine) -> None:
    units = booted.ssh("ls /usr/lib/systemd/system/atlas-*").stdout.split()
    result = booted.ssh(f"systemd-analyze verify {' '.join(units)}", check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_machine_id_is_generated_at_boot(booted: Machine) -> None:
    machine_id = booted.ssh("cat /etc/machine-id").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", machine_id)


def test_host_keys_are_made_on_the_server_in_run_only(booted: Machine) -> None:
    fingerprint = booted.ssh("ssh-keygen -lf /run/atlas/ssh/ssh_host_ed25519_key.pub").stdout
    assert "SHA256:" in fingerprint
    assert booted.ssh("ls /etc/ssh/ | grep -c ssh_host_", check=False).stdout.strip() == "0"


def test_root_file_system_is_btrfs(booted: Machine) -> None:
    assert booted.ssh("findmnt -no FSTYPE /").stdout.strip() == "btrfs"


def test_root_password_is_locked(booted: Machine) -> None:
    assert booted.ssh("passwd -S root").stdout.split()[1] == "L"


def test_atlas_units_are_installed(booted: Machine) -> None:
    for unit in ("atlas-primary.target", "atlas-secondary.target", "atlas-standby.target"):
        assert booted.ssh(f"systemctl cat {unit}", check=False).returncode == 0, unit


def test_image_version_is_in_os_release(booted: Machine, built_image: BuiltImage) -> None:
    release = booted.ssh("cat /usr/lib/os-release").stdout
    assert f"IMAGE_VERSION={built_image.manifest['image_version']}" in release.replace('"', "")
