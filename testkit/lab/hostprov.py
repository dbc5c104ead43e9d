"""Provision data-set disk files from the host (loop devices), with the same code the
box runs: a lab can then boot straight into a role, or into a refusal, without first
booting standby to provision in the guest."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from atlas_services import dataset, proc
from atlas_services.roles import Role


@contextlib.contextmanager
def attached(files: list[Path]) -> Iterator[list[Path]]:
    devices: list[Path] = []
    try:
        for file in files:
            devices.append(Path(proc.run(["losetup", "-f", "--show", file]).stdout.strip()))
        yield devices
    finally:
        for device in devices:
            proc.run(["losetup", "-d", device], ok_codes=proc.ANY_EXIT)
        proc.run(["btrfs", "device", "scan", "--forget"], ok_codes=proc.ANY_EXIT)


def provision(files: list[Path], role: str, cluster_dir: Path) -> None:
    with attached(files) as devices:
        dataset.provision(dataset.plan(cluster_dir, Role(role), devices, force=True))
