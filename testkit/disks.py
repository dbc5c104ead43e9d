"""Loop devices for tests, benchmarks and the lab: the one place a file becomes a disk
(attach, detach), sparse disks a test can pull (LoopDisks), and a fresh btrfs on one
(loop_btrfs) or raid1 across two (loop_raid1)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from atlas_services import proc

STORE_FS_SIZE = "256M"  # mkfs.btrfs needs a little over 100 MiB for its default profile


def sparse_file(path: Path, size: int | str) -> Path:
    """An empty file of `size` bytes (or a truncate(1) size such as "2G"), taking no space."""
    path.write_bytes(b"")
    proc.run(["truncate", "-s", str(size), path])
    return path


def attach(backing: Path) -> Path:
    """The file as a block device (the first free loop device)."""
    return Path(proc.run(["losetup", "--find", "--show", backing]).stdout.strip())


def detach(device: Path, *, forget: bool = False) -> None:
    """Let the device go (whatever state it is in); `forget` also drops btrfs's memory of the
    members, so the kernel does not assemble a stale set later."""
    proc.run(["losetup", "-d", device], ok_codes=proc.ANY_EXIT)
    if forget:
        proc.run(["btrfs", "device", "scan", "--forget"], ok_codes=proc.ANY_EXIT)


@contextlib.contextmanager
def attached(files: Sequence[Path]) -> Iterator[list[Path]]:
    """The files as block devices for the time of the block."""
    devices: list[Path] = []
    try:
        for file in files:
            devices.append(attach(file))
        yield devices
    finally:
        for device in devices:
            detach(device)
        proc.run(["btrfs", "device", "scan", "--forget"], ok_codes=proc.ANY_EXIT)


class LoopDisks:
    """Sparse files attached as loop devices; detach() models pulling a disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.devices: dict[Path, Path] = {}  # device → backing file

    def make(self, count: int, size_mb: int = 300) -> list[Path]:
        made = []
        for _ in range(count):
            backing = sparse_file(self.directory / f"disk{len(self.devices)}.img", size_mb * 2**20)
            device = attach(backing)
            self.devices[device] = backing
            made.append(device)
        return made

    def detach(self, device: Path) -> None:
        proc.run(["losetup", "-d", device])

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
                proc.run(["umount", "-l", target], ok_codes=proc.ANY_EXIT)
        for device in self.devices:
            detach(device)
        proc.run(["btrfs", "device", "scan", "--forget"], ok_codes=proc.ANY_EXIT)


@contextlib.contextmanager
def loop_btrfs(label: str, size: str = STORE_FS_SIZE) -> Iterator[Path]:
    """A freshly made btrfs on a loop device, mounted; unmounted and detached afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"atlas-{label}-") as tmp:
        mountpoint = Path(tmp) / "mnt"
        mountpoint.mkdir()
        device = attach(sparse_file(Path(tmp) / "disk.img", size))
        mounted = False
        try:
            proc.run(["mkfs.btrfs", "-q", "-L", label, device])
            proc.run(["mount", device, mountpoint])
            mounted = True
            yield mountpoint
        finally:
            if mounted:
                proc.run(["umount", mountpoint], ok_codes=proc.ANY_EXIT)
            detach(device)


class LoopRaid1:
    """btrfs raid1 across two loop devices, labelled like a data set, mounted at `mountpoint`:
    the box's data set, small."""

    def __init__(self, directory: Path, mountpoint: Path, size_mb: int = 256) -> None:
        self.directory = directory
        self.mountpoint = mountpoint
        self.size_mb = size_mb
        self.devices: list[Path] = []

    def create(self, label: str = "atlas-data") -> Path:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        for i in range(2):
            self.devices.append(attach(sparse_file(self.directory / f"disk{i}.img", self.size_mb * 2**20)))
        proc.run(["mkfs.btrfs", "-q", "-f", "-L", label, "-d", "raid1", "-m", "raid1", *self.devices])
        proc.run(["mount", "-t", "btrfs", "-o", f"device={self.devices[1]}", self.devices[0],
                  self.mountpoint])
        self.mountpoint.chmod(0o755)
        return self.mountpoint

    def destroy(self) -> None:
        if os.path.ismount(self.mountpoint):
            proc.run(["umount", self.mountpoint], ok_codes=proc.ANY_EXIT)
            if os.path.ismount(self.mountpoint):
                proc.run(["umount", "-l", self.mountpoint], ok_codes=proc.ANY_EXIT)
        for device in self.devices:
            detach(device)
        self.devices = []
