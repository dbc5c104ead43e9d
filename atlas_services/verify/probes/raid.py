"""raid: the data set is mounted, every disk present, redundant, and without recorded errors.

The judgement is a pure function over what btrfs said (unit-tested without disks); the
probe only reads it, from sysfs (/sys/fs/btrfs/FSID: devinfo/*/missing and error_stats,
allocation/*/PROFILE): btrfs's own commands need CAP_SYS_ADMIN for the device list and its
counters, and the Verifier runs as its own unprivileged user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from atlas_services.results import Outcome, combine
from atlas_services.verify.probes import Probe


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    source: str
    options: frozenset[str]


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[Mount]:
    """proc(5) mountinfo: mount point (field 5), then after ' - ': type, source, super options."""
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        left, right = before.split(), after.split()
        if not sep or len(left) < 6 or len(right) < 3:
            continue
        options = frozenset(left[5].split(",")) | frozenset(right[2].split(","))
        mounts.append(Mount(_unescape(left[4]), right[0], _unescape(right[1]), options))
    return mounts


def find_mount(mounts: Iterable[Mount], point: Path) -> Mount | None:
    found = None
    for mount in mounts:
        if mount.point == str(point):
            found = mount  # the last one listed is the one on top
    return found


def parse_devices(show: str) -> tuple[int, bool]:
    """From `btrfs filesystem show`: (total devices, whether some are missing)."""
    match = re.search(r"Total devices (\d+)", show)
    total = int(match.group(1)) if match else 0
    missing = "Some devices missing" in show or bool(re.search(r"path\s+<?missing", show, re.I))
    return total, missing


def parse_profiles(df: str) -> dict[str, str]:
    """From `btrfs filesystem df`: block group type → profile (GlobalReserve left out)."""
    profiles = {}
    for line in df.splitlines():
        match = re.match(r"\s*(Data|Metadata|System)(?:\+\w+)?,\s*([\w]+):", line)
        if match:
            profiles[match.group(1)] = match.group(2).upper()
    return profiles


def parse_error_counters(stats: str) -> dict[str, int]:
    """From `btrfs device stats`: '[/dev/x].write_io_errs N' lines with N > 0."""
    errors = {}
    for line in stats.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and int(parts[1]) > 0:
            errors[parts[0]] = int(parts[1])
    return errors


REDUNDANT = {"RAID1", "RAID1C3", "RAID1C4", "RAID10", "RAID5", "RAID6"}


def raid_outcome(mount: Mount | None, show: str, df: str, stats: str) -> Outcome:
    """Judge the data set's btrfs RAID from what the btrfs commands said (pure)."""
    total, missing = parse_devices(show)
    return judge(mount, total, missing, parse_profiles(df), parse_error_counters(stats))


@dataclass(frozen=True)
class BtrfsState:
    """What sysfs says of a mounted btrfs."""

    total: int
    missing: bool
    profiles: dict[str, str]  # Data/Metadata/System → RAID1, DUP, ...
    counters: dict[str, int]  # "devid N.write_errs" → count, the non-zero ones


_PROFILES = ("single", "dup", "raid0", "raid1", "raid1c3", "raid1c4", "raid10", "raid5", "raid6")


def read_sysfs(source: str, sys_btrfs: Path = Path("/sys/fs/btrfs")) -> BtrfsState | None:
    """The state of the mounted btrfs whose device is `source`; None if sysfs has none."""
    name = Path(source).resolve().name
    found = [fs for fs in sys_btrfs.iterdir() if (fs / "devices" / name).exists()] \
        if sys_btrfs.is_dir() else []
    if not found:
        return None
    fs = found[0]
    devices = sorted((fs / "devinfo").iterdir(), key=lambda p: p.name)
    missing = any((d / "missing").read_text().strip() == "1" for d in devices)
    profiles: dict[str, str] = {}
    for kind in ("Data", "Metadata", "System"):
        allocation = fs / "allocation" / kind.lower()
        present = [p.name for p in allocation.iterdir() if p.is_dir() and p.name in _PROFILES] \
            if allocation.is_dir() else []
        weakest = [p for p in present if p.upper() not in REDUNDANT] or present
        if weakest:
            profiles[kind] = sorted(weakest)[0].upper()
    counters: dict[str, int] = {}
    for device in devices:
        for line in (device / "error_stats").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and int(parts[1]) > 0:
                counters[f"devid {device.name}.{parts[0]}"] = int(parts[1])
    return BtrfsState(len(devices), missing, profiles, counters)


def judge(mount: Mount | None, total: int, missing: bool, profiles: dict[str, str],
          counters: dict[str, int]) -> Outcome:
    """Judge the data set's btrfs RAID (pure)."""
    if mount is None:
        return Outcome.failed("the data set is not mounted")
    if mount.fstype != "btrfs":
        return Outcome.failed(f"the data set is {mount.fstype}, not btrfs")
    if missing or "degraded" in mount.options:
        return Outcome.failed(f"RAID degraded: a disk of {total} is missing — replace it")
    outcomes = []
    weak = sorted(f"{kind} {profile.lower()}" for kind, profile in profiles.items()
                  if profile not in REDUNDANT)
    if weak:
        outcomes.append(Outcome.degraded(f"not redundant on {total} disk(s): {', '.join(weak)}"))
    if counters:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counters.items()))
        outcomes.append(Outcome.degraded(f"disk errors recorded: {shown}"))
    if not outcomes:
        kinds = sorted({p.lower() for p in profiles.values()})
        return Outcome.ok(f"{total} disks, {'/'.join(kinds) or 'no profile'}, no errors")
    return combine(outcomes)


@dataclass
class RaidProbe(Probe):
    """*The data set is mounted, every disk present, redundant, and without recorded errors.*"""

    data_root: Path
    timeout: float = 5.0
    name: str = "raid"
    mountinfo: Path = Path("/proc/self/mountinfo")

    @property
    def target(self) -> str:
        return str(self.data_root)

    sys_btrfs: Path = Path("/sys/fs/btrfs")

    def check(self) -> Outcome:
        mount = find_mount(parse_mountinfo(self.mountinfo.read_text()), self.data_root)
        if mount is None or mount.fstype != "btrfs":
            return judge(mount, 0, False, {}, {})
        try:
            state = read_sysfs(mount.source, self.sys_btrfs)
        except OSError as err:
            return Outcome.failed(f"cannot read the RAID state from sysfs: {err}")
        if state is None:
            return Outcome.failed(f"sysfs knows no btrfs on {mount.source}")
        return judge(mount, state.total, state.missing, state.profiles, state.counters)
