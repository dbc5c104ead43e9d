"""Provision data-set disk files from the host (loop devices), with the same code the
box runs: a lab can then boot straight into a role, or into a refusal, without first
booting standby to provision in the guest."""

from __future__ import annotations

from pathlib import Path

from atlas_services import dataset
from atlas_services.roles import Role
from testkit.disks import attached


def provision(files: list[Path], role: str, cluster_dir: Path) -> None:
    with attached(files) as devices:
        dataset.provision(dataset.plan(cluster_dir, Role(role), devices, force=True))
