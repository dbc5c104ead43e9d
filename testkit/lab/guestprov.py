"""Provision an ATLAS cluster on lab machines the way a person would: in the guests."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from testkit.lab.machine import BUSINESS_INTERFACE, Machine

log = logging.getLogger("lab")


@dataclass(frozen=True)
class RoleSpec:
    hostname: str
    address: str  # with prefix


PRIMARY = RoleSpec("shop1", "10.77.0.10/24")
SECONDARY = RoleSpec("shop2", "10.77.0.11/24")
DOMAIN = "shop.test"


def disk_paths(machine: Machine) -> str:
    """The machine's data disks as the guest names them (by their QEMU serial)."""
    return " ".join(f"/dev/disk/by-id/virtio-{disk.stem}" for disk in machine.disks)


def init_cluster(machine: Machine) -> None:
    machine.ssh(
        f"atlas cluster init --domain {DOMAIN} --interface {BUSINESS_INTERFACE} "
        f"--primary-hostname {PRIMARY.hostname} --primary-address {PRIMARY.address} "
        f"--secondary-hostname {SECONDARY.hostname} --secondary-address {SECONDARY.address}")


def copy_cluster(source: Machine, target: Machine) -> None:
    archive = source.ssh("tar -C /etc/atlas -c cluster | base64 -w0").stdout
    target.ssh("mkdir -p -m 0755 /etc/atlas && base64 -d | tar -C /etc/atlas -x", input=archive)


def provision(primary: Machine, secondary: Machine) -> None:
    """Cluster on the first machine, each machine's disks for its role (both booted)."""
    log.info("lab: provisioning cluster on %s, data sets on %s and %s", primary.name,
             primary.name, secondary.name)
    init_cluster(primary)
    primary.ssh(f"atlas disks init --role primary {disk_paths(primary)}")
    copy_cluster(primary, secondary)
    secondary.ssh(f"atlas disks init --role secondary {disk_paths(secondary)}")
