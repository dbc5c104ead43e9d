"""The btrfs tier: real loop devices with real btrfs, created and removed by each test."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


class LoopDisks:
    """Sparse files attached as loop devices; detach() models pulling a disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.devices: dict[Path, Path] = {}  # device → backing file

    def make(self, count: int, size_mb: int = 300) -> list[Path]:
        made = []
        for _ in range(count):
            backing = self.directory / f"disk{len(self.devices)}.img"
            with backing.open("wb") as f:
                f.truncate(size_mb * 2**20)
            device = Path(subprocess.run(["losetup", "-f", "--show", str(backing)],
                                         capture_output=True, text=True,
                                         check=True).stdout.strip())
            self.devices[device] = backing
            made.append(device)
        return made

    def detach(self, device: Path) -> None:
        subprocess.run(["losetup", "-d", str(device)], check=True)

    def digest(self, devices: list[Path]) -> str:
        """Hash of the backing files: proof that a refusal wrote nothing."""
        h = hashlib.sha256()
        for device in devices:
            with self.devices[device].open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
        return h.hexdigest()

    def cleanup(self) -> None:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        for line in reversed(mounts):
            source, target = line.split()[:2]
            if Path(source) in self.devices or target.startswith(str(self.directory)):
                subprocess.run(["umount", "-l", target], check=False)
        for device in self.devices:
            subprocess.run(["losetup", "-d", str(device)], check=False, capture_output=True)
        # Forget the detached members so the kernel does not assemble stale sets later.
        subprocess.run(["btrfs", "device", "scan", "--forget"], check=False, capture_output=True)


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


# ---------------------------------------------------------------- the versioned store's file systems

STORE_FS_SIZE = "256M"  # mkfs.btrfs needs a little over 100 MiB for its default profile


@contextlib.contextmanager
def loop_btrfs(label: str, size: str = STORE_FS_SIZE) -> Iterator[Path]:
    """A freshly made btrfs on a loop device, mounted; unmounted and detached afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"atlas-{label}-") as tmp:
        image = Path(tmp) / "disk.img"
        mountpoint = Path(tmp) / "mnt"
        mountpoint.mkdir()
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                                capture_output=True, text=True).stdout.strip()
        mounted = False
        try:
            subprocess.run(["mkfs.btrfs", "-q", "-L", label, device], check=True, capture_output=True)
            subprocess.run(["mount", device, str(mountpoint)], check=True)
            mounted = True
            yield mountpoint
        finally:
            if mounted:
                subprocess.run(["umount", str(mountpoint)], check=False)
            subprocess.run(["losetup", "-d", device], check=False)


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
