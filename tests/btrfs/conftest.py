"""The btrfs tier: real loop devices with real btrfs, created and removed by each test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit.disks import LoopDisks, loop_btrfs


@pytest.fixture
def loop_disks(tmp_path: Path) -> Iterator[LoopDisks]:
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    disks = LoopDisks(tmp_path)
    yield disks
    disks.cleanup()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Callable[..., Path]:
    """`atlas cluster init` into a temp dir; returns the cluster directory."""
    from atlas_services import cluster as cluster_mod

    def make(name: str = "cluster", interface: str = "lo") -> Path:
        directory = tmp_path / name
        import uuid
        the_cluster = cluster_mod.Cluster.from_json({
            "cluster_id": str(uuid.uuid4()), "domain": "shop.test",
            "roles": {"primary": {"hostname": "shop1", "address": "10.77.0.10/24",
                                  "gateway": "10.77.0.1", "dns": ["10.77.0.1"],
                                  "interface": interface},
                      "secondary": {"hostname": "shop2", "address": "10.77.0.11/24",
                                    "gateway": "10.77.0.1", "dns": ["10.77.0.1"],
                                    "interface": interface}}})
        cluster_mod.create(the_cluster, directory)
        return directory
    return make


@pytest.fixture
def store_fs() -> Iterator[Path]:
    """Root of a real, empty btrfs (stands in for the OS disk's /var/lib/atlas)."""
    if os.geteuid() != 0:
        pytest.skip("real btrfs on loop devices needs root")
    with loop_btrfs("atlas-os") as root:
        yield root


@pytest.fixture
def dataset_fs() -> Iterator[Path]:
    """Root of a second real btrfs, standing in for a mounted data set."""
    if os.geteuid() != 0:
        pytest.skip("real btrfs on loop devices needs root")
    with loop_btrfs("atlas-data") as root:
        yield root
