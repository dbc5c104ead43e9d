"""A two-server ATLAS lab: the cluster, both data sets, both servers booted in their roles."""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas_services import cluster as cluster_mod
from testkit import clusters
from testkit.lab import hostprov
from testkit.lab.machine import BUSINESS_INTERFACE, BuiltImage, Lab, Machine

log = logging.getLogger("lab")

SERVERS = ("server1", "server2")


@dataclass(frozen=True)
class Pair:
    lab: Lab
    cluster_dir: Path

    def server(self, name: str) -> Machine:
        return self.lab.machines[name]

    def by_role(self, role: str) -> Machine:
        """The machine that currently holds the role's disks."""
        for machine in self.lab.machines.values():
            if machine.disks and machine.disks[0].stem.startswith(role):
                return machine
        raise LookupError(role)


SETTINGS_FILE = "/var/lib/atlas/config/work/atlas.json"


def commit_settings(machine: Machine, message: str, **values: object) -> dict[str, Any]:
    """Change settings in a primary's working tree, commit and apply them the way an
    administrator would; returns the new generation's record (number, time, …)."""
    data = json.loads(machine.ssh(f"cat {SETTINGS_FILE}").stdout)
    data.update(values)
    machine.ssh(f"cat > {SETTINGS_FILE}", input=json.dumps(data, indent=2) + "\n")
    committed: dict[str, Any] = json.loads(
        machine.ssh(f"atlas config commit --json -m {shlex.quote(message)}").stdout)
    machine.ssh("atlas config apply")
    return committed


def set_settings(machine: Machine, message: str, **values: object) -> int:
    """commit_settings, returning only the new generation's number."""
    return int(commit_settings(machine, message, **values)["number"])


def make_cluster(directory: Path) -> cluster_mod.Cluster:
    return clusters.make_cluster(directory, interface=BUSINESS_INTERFACE, gateway="", dns=(), force=True)


def up(workdir: Path, image: BuiltImage, *, die_with_parent: bool) -> Pair:
    """Provision both data sets (on the host, with the box's own code) and boot both servers."""
    lab = Lab(workdir, image, die_with_parent=die_with_parent)
    cluster_dir = workdir / "cluster"
    make_cluster(cluster_dir)
    for server, role in zip(SERVERS, ("primary", "secondary"), strict=True):
        disks = [lab.disk(f"{role}-1"), lab.disk(f"{role}-2")]
        log.info("lab: provisioning the %s data set on %s", role, ", ".join(d.name for d in disks))
        hostprov.provision(disks, role, cluster_dir)
        lab.machine(server, disks=disks)
    for machine in lab.machines.values():
        machine.start()
    for machine in lab.machines.values():
        machine.wait_booted()
    the_pair = Pair(lab, cluster_dir)
    # The lab's private segment has no time source: say so, so that the Verifier judges
    # the clock by what can be known here. The secondary takes it over by syncing.
    set_settings(the_pair.by_role("primary"), "lab: no time source on this network",
                 clock_sync_required=False)
    the_pair.by_role("secondary").ssh("atlas sync --now")
    return the_pair
