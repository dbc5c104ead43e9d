"""Loop devices for tests: sparse files attached as disks, and a fresh btrfs on one."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
