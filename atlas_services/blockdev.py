"""Block devices: what is there (libblkid low-level probing, not udev's database), what is
in use, and the guards every command that writes to a disk goes through."""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from atlas_services import proc
from atlas_services.errors import Refused

logger = logging.getLogger(__name__)

BLKGETSIZE64 = 0x80081272
SYS_BLOCK = Path("/sys/class/block")
# Kernel devices that never hold a data set.
IGNORED_PREFIXES = ("ram", "zram", "sr", "fd", "nbd")
# Probing every disk at boot: a disk that hangs blkid must not hang role detection.
PROBE_TIMEOUT_S = 60


@dataclass(frozen=True)
class DeviceProbe:
    """What libblkid finds on a device: a file system, a RAID member, a partition table."""

    device: Path
    values: dict[str, str]

    @property
    def empty(self) -> bool:
        return not self.values

    @property
    def fstype(self) -> str:
        return self.values.get("TYPE", "")

    @property
    def label(self) -> str:
        return self.values.get("LABEL", "")

    @property
    def uuid(self) -> str:
        return self.values.get("UUID", "")

    @property
    def partition_table(self) -> str:
        return self.values.get("PTTYPE", "")

    def describe(self) -> str:
        if self.fstype:
            return f"a {self.fstype} file system" + (f" labelled {self.label!r}" if self.label else "")
        if self.partition_table:
            return f"a {self.partition_table} partition table"
        return "data blkid recognises: " + ", ".join(f"{k}={v}" for k, v in self.values.items())


def probe(device: Path) -> DeviceProbe:
    """Low-level probe (blkid -p): reads the device itself, whatever udev knows or not."""
    try:
        # blkid exits 2 when it finds nothing recognisable: an empty disk.
        result = proc.run(["blkid", "-p", "-o", "export", device], ok_codes=(0, 2),
                          timeout=PROBE_TIMEOUT_S)
    except proc.CommandFailed as err:
        raise Refused(f"cannot probe {device}: {err.output.strip() or 'blkid failed'}") from None
    values = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key != "DEVNAME":
            values[key] = value
    return DeviceProbe(device, values)


def probe_all(devices: list[Path]) -> list[DeviceProbe]:
    """Low-level probe of many devices in one blkid run (boot time matters); a device
    blkid cannot open counts as empty, with the reason logged."""
    if not devices:
        return []
    result = proc.run(["blkid", "-p", "-o", "export", *devices], ok_codes=proc.ANY_EXIT,
                      timeout=PROBE_TIMEOUT_S)
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            current = None
        elif key == "DEVNAME":
            current = found.setdefault(value, {})
        elif current is not None:
            current[key] = value
    for line in result.stderr.splitlines():
        logger.info("blkid: %s", line)
    return [DeviceProbe(d, found.get(str(d), {})) for d in devices]


def kernel_devices() -> list[Path]:
    """/dev nodes of every block device and partition the kernel knows, in name order."""
    devices = []
    for entry in sorted(SYS_BLOCK.iterdir()) if SYS_BLOCK.exists() else []:
        if entry.name.startswith(IGNORED_PREFIXES):
            continue
        if entry.name.startswith("loop") and not (entry / "loop" / "backing_file").exists():
            continue
        if (entry / "size").exists() and (entry / "size").read_text().strip() == "0":
            continue
        devices.append(Path("/dev") / entry.name)
    return devices


def device_size(device: Path) -> int:
    with device.open("rb") as dev:
        buf = fcntl.ioctl(dev.fileno(), BLKGETSIZE64, b"\0" * 8)
    size: int = struct.unpack("Q", buf)[0]
    return size


def sysfs_node(device: Path) -> Path:
    rdev = device.stat().st_rdev
    return Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}").resolve()


def whole_disk(node: Path) -> Path:
    """The sysfs node of the disk a partition belongs to (or the disk itself)."""
    return node.parent if (node / "partition").exists() else node


def disk_names(disk: Path) -> set[str]:
    """The disk's kernel name and those of its partitions."""
    names = {disk.name}
    names.update(p.name for p in disk.iterdir() if (p / "partition").exists())
    return names


SYS_BTRFS = Path("/sys/fs/btrfs")


def btrfs_members() -> set[str]:
    """Kernel names of every member of a mounted btrfs: mountinfo names only the device it
    was mounted from, so the second disk of a mounted raid1 looks unused there."""
    names: set[str] = set()
    for devices in SYS_BTRFS.glob("*/devices") if SYS_BTRFS.is_dir() else []:
        names.update(entry.name for entry in devices.iterdir())
    return names


def mounted_devices() -> set[str]:
    """Kernel names of block devices that are mounted (any member of a mounted btrfs) or
    used as swap."""
    names: set[str] = btrfs_members()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        source = line.split(" - ", 1)[1].split()[1]
        if source.startswith("/dev/"):
            names.add(Path(os.path.realpath(source)).name)
    for line in Path("/proc/swaps").read_text().splitlines()[1:]:
        names.add(Path(os.path.realpath(line.split()[0])).name)
    return names


def running_system_disks() -> set[str]:
    """Kernel names of the disks that hold /, /usr, /boot or /efi."""
    disks: set[str] = set()
    for mountpoint in ("/", "/usr", "/boot", "/efi", "/boot/efi"):
        try:
            dev = Path(mountpoint).stat().st_dev
        except FileNotFoundError:
            continue
        node = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
        if node.exists():
            disks.add(whole_disk(node.resolve()).name)
    return disks


def holders_of(disk: Path) -> list[str]:
    """What holds the disk (its sysfs node) or any of its partitions: an md or dm device
    built on sdb1 holds sdb as much as one built on sdb."""
    nodes = [disk, *(p for p in disk.iterdir() if (p / "partition").exists())]
    return sorted({h.name for node in nodes if (node / "holders").is_dir()
                   for h in (node / "holders").iterdir()})


def check_writable_disk(device: Path) -> int:
    """Refuse a device that writing to would destroy the wrong thing; returns its size.

    Refused: not a block device, a partition, the running system's disk, anything of it
    mounted, or held by RAID/LVM/device-mapper.
    """
    try:
        mode = device.stat().st_mode
    except FileNotFoundError:
        raise Refused(f"device {device} does not exist") from None
    if not stat.S_ISBLK(mode):
        raise Refused(f"{device} is not a block device", "name a whole disk, e.g. /dev/sdb")
    node = sysfs_node(device)
    disk = whole_disk(node)
    if disk != node:
        raise Refused(f"{device} is a partition", f"name the whole disk: /dev/{disk.name}")
    if disk.name in running_system_disks():
        raise Refused(f"{device} holds the running system", "never write to the disk this "
                      "system booted from")
    busy = disk_names(disk) & mounted_devices()
    if busy:
        raise Refused(f"{device} is in use: {', '.join(sorted(busy))} mounted",
                      "unmount it first")
    holders = holders_of(disk)
    if holders:
        raise Refused(f"{device} is in use by {', '.join(holders)}",
                      "stop the RAID/LVM/dm device that holds it first")
    return device_size(device)
