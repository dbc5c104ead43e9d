"""raid: the data set is mounted, every disk present, redundant, and without recorded errors.

The judgement is a pure function over what btrfs said (unit-tested without disks); the
probe only reads it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from atlas_services import proc
from atlas_services.errors import AtlasError
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
    """Judge the data set's btrfs RAID from what btrfs said (pure)."""
    if mount is None:
        return Outcome.failed("the data set is not mounted")
    if mount.fstype != "btrfs":
        return Outcome.failed(f"the data set is {mount.fstype}, not btrfs")
    total, missing = parse_devices(show)
    if missing or "degraded" in mount.options:
        return Outcome.failed(f"RAID degraded: a disk of {total} is missing — replace it")
    outcomes = []
    profiles = parse_profiles(df)
    weak = sorted(f"{kind} {profile.lower()}" for kind, profile in profiles.items()
                  if profile not in REDUNDANT)
    if weak:
        outcomes.append(Outcome.degraded(f"not redundant on {total} disk(s): {', '.join(weak)}"))
    counters = parse_error_counters(stats)
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

    def _btrfs(self, *args: str) -> str:
        # `device stats -c` exits 64 when a counter is non-zero: that is an answer.
        return proc.run(["btrfs", *args, str(self.data_root)], ok_codes=(0, 64),
                        timeout=self.timeout / 3).stdout

    def check(self) -> Outcome:
        mount = find_mount(parse_mountinfo(self.mountinfo.read_text()), self.data_root)
        if mount is None or mount.fstype != "btrfs":
            return raid_outcome(mount, "", "", "")
        try:
            show = self._btrfs("filesystem", "show", "--raw")
            df = self._btrfs("filesystem", "df")
            stats = self._btrfs("device", "stats", "-c")
        except AtlasError as err:
            return Outcome.failed(f"cannot read the RAID state: {err.what}")
        return raid_outcome(mount, show, df, stats)
