"""The btrfs tier: real loop devices with real btrfs, created and removed by each test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit import clusters
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
    def make(name: str = "cluster", interface: str = "lo") -> Path:
        clusters.make_cluster(tmp_path / name, interface=interface)
        return tmp_path / name
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
