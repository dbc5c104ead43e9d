"""Drift classification: each rule of drift.py, on small manifests."""

from __future__ import annotations

from dataclasses import replace

import pytest

from atlas_services.sync import drift
from atlas_services.sync.drift import DriftClass
from atlas_services.sync.manifest import Disk, EnvManifest, Hardware, ModuleFacts, Nic

EQUAL, COMPATIBLE, INCOMPATIBLE = DriftClass.EQUAL, DriftClass.COMPATIBLE, DriftClass.INCOMPATIBLE
SHA_A, SHA_B = "a" * 64, "b" * 64
GIB = 2**30


def manifest(**changes: object) -> EnvManifest:
    base = EnvManifest(
        hostname="shop1", image_version="0.1.0", atlas_version="0.1.0",
        kernel_release="6.1.0-28-amd64", kernel_version="#1 SMP",
        packages={"nginx": "1.22.1-9+deb12u1", "less": "590-2", "postgresql-15": "15.10-0+deb12u1"},
        modules={"atlas_services": ModuleFacts({"0.1.0": SHA_A}, "0.1.0")},
        hardware=Hardware(arch="x86_64", cpu_model="Xeon E-2314", cpu_count=4, memory_bytes=16 * GIB,
                          nics=(Nic("eno1", "aa:bb:cc:dd:ee:01", "igb", 1000),),
                          disks=(Disk("sda", 480 * 10**9, "SSD 480", False),)),
        collected="2026-11-25T20:00:00Z")
    return replace(base, **changes)


def classes(primary: EnvManifest, secondary: EnvManifest, **kw: object) -> dict[str, DriftClass]:
    return {d.item: d.klass for d in drift.compare(primary, secondary, **kw)}  # type: ignore[arg-type]


def test_identical_environments_are_equal_in_every_category() -> None:
    found = classes(manifest(), manifest())
    assert set(found.values()) == {EQUAL}
    assert {"image", "packages", "kernel", "modules", "cpu", "memory", "nics", "disks"} <= set(found)


def test_a_package_missing_on_the_secondary_is_incompatible() -> None:
    secondary = manifest(packages={"nginx": "1.22.1-9+deb12u1", "postgresql-15": "15.10-0+deb12u1"})
    assert classes(manifest(), secondary)["package less"] is INCOMPATIBLE


def test_a_package_only_on_the_secondary_is_compatible() -> None:
    secondary = manifest(packages={**manifest().packages, "htop": "3.2.2-2"})
    assert classes(manifest(), secondary)["package htop"] is COMPATIBLE


def test_a_critical_package_at_another_upstream_version_is_incompatible() -> None:
    secondary = manifest(packages={**manifest().packages, "nginx": "1.24.0-1"})
    item = next(d for d in drift.compare(manifest(), secondary) if d.item == "package nginx")
    assert item.klass is INCOMPATIBLE
    assert "1.22.1-9+deb12u1 on the primary, 1.24.0-1 on the secondary" in item.reason


def test_a_debian_revision_difference_is_compatible() -> None:
    secondary = manifest(packages={**manifest().packages, "nginx": "1.22.1-9+deb12u2"})
    assert classes(manifest(), secondary)["package nginx"] is COMPATIBLE


def test_another_upstream_version_of_an_ordinary_package_is_compatible() -> None:
    secondary = manifest(packages={**manifest().packages, "less": "608-1"})
    assert classes(manifest(), secondary)["package less"] is COMPATIBLE


@pytest.mark.parametrize(("version", "upstream"), [
    ("1.22.1-9+deb12u1", "1.22.1"), ("1:2.3.4-5", "1:2.3.4"), ("590", "590"), ("2:1.0-rc1-3", "2:1.0-rc1"),
])
def test_upstream_version_drops_the_debian_revision(version: str, upstream: str) -> None:
    assert drift.upstream_version(version) == upstream


@pytest.mark.parametrize("name", ["nginx", "postgresql-15", "dovecot-imapd", "python3-jinja2", "libc6",
                                  "linux-image-6.1.0-28-amd64", "samba", "libssl3", "python3.11"])
def test_service_and_platform_packages_are_critical(name: str) -> None:
    assert drift.is_critical(name)


@pytest.mark.parametrize("name", ["less", "htop", "vim-tiny", "bash"])
def test_ordinary_packages_are_not_critical(name: str) -> None:
    assert not drift.is_critical(name)


@pytest.mark.parametrize(("primary", "secondary", "expected"), [
    ("6.1.0-28-amd64", "6.1.0-28-amd64", EQUAL),
    ("6.1.0-28-amd64", "6.1.0-30-amd64", COMPATIBLE),  # same series
    ("6.1.0-30-amd64", "6.1.0-28-amd64", COMPATIBLE),
    ("6.1.0-28-amd64", "6.12.9-amd64", COMPATIBLE),  # newer series on the secondary
    ("6.12.9-amd64", "6.1.0-28-amd64", INCOMPATIBLE),  # older series on the secondary
    ("weird", "6.1.0-28-amd64", INCOMPATIBLE),
])
def test_kernel_classes(primary: str, secondary: str, expected: DriftClass) -> None:
    assert drift.compare_kernel(primary, secondary).klass is expected


def test_the_selected_module_version_missing_on_the_secondary_is_incompatible() -> None:
    primary = manifest(modules={"atlas_services": ModuleFacts({"0.1.0": SHA_A, "0.2.0": SHA_B}, "0.2.0")})
    found = classes(primary, manifest())
    assert found["module atlas_services 0.2.0"] is INCOMPATIBLE
    assert found["selection atlas_services"] is INCOMPATIBLE


def test_an_unselected_module_version_missing_on_the_secondary_is_compatible() -> None:
    primary = manifest(modules={"atlas_services": ModuleFacts({"0.0.9": SHA_B, "0.1.0": SHA_A}, "0.1.0")})
    assert classes(primary, manifest())["module atlas_services 0.0.9"] is COMPATIBLE


def test_the_same_module_version_with_other_contents_is_incompatible() -> None:
    secondary = manifest(modules={"atlas_services": ModuleFacts({"0.1.0": SHA_B}, "0.1.0")})
    assert classes(manifest(), secondary)["module atlas_services 0.1.0"] is INCOMPATIBLE


def test_a_selection_that_differs_because_an_update_is_staged_is_compatible() -> None:
    secondary = manifest(modules={"atlas_services": ModuleFacts({"0.1.0": SHA_A, "0.2.0": SHA_B}, "0.2.0")})
    found = classes(manifest(), secondary, staged={"atlas_services": "0.2.0"})
    assert found["selection atlas_services"] is COMPATIBLE
    assert found["module atlas_services 0.2.0"] is COMPATIBLE


def test_memory_classes() -> None:
    def memory(secondary_bytes: int) -> DriftClass:
        hw = replace(manifest().hardware, memory_bytes=secondary_bytes)
        return classes(manifest(), manifest(hardware=hw))["memory"]
    assert memory(16 * GIB - 100 * 2**20) is EQUAL
    assert memory(12 * GIB) is COMPATIBLE
    assert memory(7 * GIB) is INCOMPATIBLE


def test_no_nic_for_the_primarys_interface_is_incompatible() -> None:
    hw = replace(manifest().hardware, nics=(Nic("enp3s0", "aa:bb:cc:dd:ee:02", "r8169", 1000),))
    assert classes(manifest(), manifest(hardware=hw), interface_pattern="eno*")["nics"] is INCOMPATIBLE
    assert classes(manifest(), manifest(hardware=hw), interface_pattern="en*")["nics"] is COMPATIBLE


def test_another_architecture_is_incompatible_and_another_cpu_compatible() -> None:
    hw = replace(manifest().hardware, arch="aarch64", cpu_model="Ampere", cpu_count=2)
    found = classes(manifest(), manifest(hardware=hw))
    assert found["architecture"] is INCOMPATIBLE and found["cpu"] is COMPATIBLE


def test_other_disks_and_image_versions_are_compatible() -> None:
    hw = replace(manifest().hardware, disks=(Disk("sda", 960 * 10**9, "SSD 960", False),))
    found = classes(manifest(), manifest(hardware=hw, image_version="0.2.0"))
    assert found["disks"] is COMPATIBLE and found["image"] is COMPATIBLE


def test_manifest_round_trips_through_json() -> None:
    assert EnvManifest.from_json(manifest().to_json()) == manifest()


def test_a_staged_version_installed_on_both_differs_only_in_its_compatible_selection() -> None:
    both = {"0.1.0": SHA_A, "0.2.0": SHA_B}
    primary = manifest(modules={"atlas_services": ModuleFacts(both, "0.1.0")})
    secondary = manifest(modules={"atlas_services": ModuleFacts(both, "0.2.0")})
    items = [d for d in drift.compare(primary, secondary, staged={"atlas_services": "0.2.0"})
             if d.item.startswith(("module", "selection"))]
    assert [(d.item, d.klass) for d in items] == [("selection atlas_services", COMPATIBLE)]
    assert "staged" in items[0].reason


def test_a_selection_other_than_the_staged_version_is_incompatible() -> None:
    both = {"0.1.0": SHA_A, "0.2.0": SHA_B}
    primary = manifest(modules={"atlas_services": ModuleFacts(both, "0.2.0")})
    secondary = manifest(modules={"atlas_services": ModuleFacts(both, "0.1.0")})
    found = classes(primary, secondary, staged={"atlas_services": "0.3.0"})
    assert found["selection atlas_services"] is INCOMPATIBLE
