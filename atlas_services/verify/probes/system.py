"""system: the data set's RAID state, free space, sync freshness and drift, clock, failed units.

Each check is a pure function over what was read (unit-tested without disks) plus a
probe that reads it; what this host cannot give (systemd, the kernel's NTP state) comes
through a thin injectable layer.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from atlas_services import clock, daemons, proc
from atlas_services.errors import AtlasError, Refused
from atlas_services.results import Outcome, Status, parse_time, worst
from atlas_services.roles import Role
from atlas_services.verify.probes import Probe, first_line


def _combine(outcomes: Sequence[Outcome]) -> Outcome:
    """One outcome from several: the worst status; the problems' reasons, or all if none."""
    status = worst(o.status for o in outcomes)
    shown = [o for o in outcomes if o.status is not Status.OK] or list(outcomes)
    return Outcome(status, "; ".join(o.message for o in shown))


# ---------------------------------------------------------------- RAID


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
    return _combine(outcomes)


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
        result = proc.run(["btrfs", *args, str(self.data_root)], check=False, timeout=self.timeout / 3)
        # `device stats -c` exits 64 when a counter is non-zero: that is an answer.
        if result.returncode not in (0, 64):
            raise proc.CommandFailed(["btrfs", *args], f"failed with exit code {result.returncode}",
                                     result.stderr)
        return result.stdout

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


# ---------------------------------------------------------------- free space


def space_outcome(where: str, free: int, total: int, min_percent: int) -> Outcome:
    """Free space of one file system: below min_percent degraded, below half of it failed."""
    if total <= 0:
        return Outcome.ok(f"{where}: size unknown")
    percent = 100.0 * free / total
    text = f"{where}: {percent:.1f}% free ({free // 2**20} MiB)"
    if percent < min_percent / 2:
        return Outcome.failed(f"{text} — nearly full")
    if percent < min_percent:
        return Outcome.degraded(f"{text} — below {min_percent}%")
    return Outcome.ok(text)


@dataclass
class SpaceProbe(Probe):
    """*Each file system the services write to has room left.*"""

    filesystems: Sequence[Path]
    min_percent: int
    timeout: float = 2.0
    name: str = "disk-space"

    @property
    def target(self) -> str:
        return ", ".join(str(p) for p in self.filesystems)

    def check(self) -> Outcome:
        outcomes = []
        for path in self.filesystems:
            try:
                st = os.statvfs(path)
            except OSError as err:
                outcomes.append(Outcome.failed(f"{path}: {first_line(err)}"))
                continue
            outcomes.append(space_outcome(str(path), st.f_bavail * st.f_frsize,
                                          st.f_blocks * st.f_frsize, self.min_percent))
            if st.f_files > 0:  # btrfs has no fixed inode count and reports 0
                outcomes.append(space_outcome(f"{path} inodes", st.f_favail, st.f_files,
                                              self.min_percent))
        return _combine(outcomes)


# ---------------------------------------------------------------- sync


@dataclass(frozen=True)
class Drift:
    item: str
    kind: str  # equal | compatible | incompatible
    reason: str


@dataclass(frozen=True)
class SyncState:
    """The Synchronizer's state file (paths.SYNC_STATE), the fields the Verifier reads."""

    last_attempt: dt.datetime
    last_success: dt.datetime | None
    drift: tuple[Drift, ...]

    @classmethod
    def from_json(cls, data: Any, source: str = "sync state") -> SyncState:
        if not isinstance(data, dict):
            raise Refused(f"{source}: expected a JSON object")
        success = data.get("last_success")
        drift = data.get("drift", [])
        if not isinstance(drift, list):
            raise Refused(f"{source}: drift must be a list")
        items = []
        for i, d in enumerate(drift):
            if not isinstance(d, dict) or d.get("class") not in ("equal", "compatible", "incompatible"):
                raise Refused(f"{source}: drift {i} needs a class equal|compatible|incompatible")
            items.append(Drift(str(d.get("item", "?")), str(d["class"]), str(d.get("reason", ""))))
        return cls(
            last_attempt=parse_time(data.get("last_attempt"), f"{source}: last_attempt"),
            last_success=None if success is None else parse_time(success, f"{source}: last_success"),
            drift=tuple(items),
        )


def sync_outcome(role: Role, state: SyncState | None, now: dt.datetime, stale_after_s: int) -> Outcome:
    """Freshness and drift of the secondary's copy of the primary (pure)."""
    if role is not Role.SECONDARY:
        return Outcome.ok(f"not a secondary ({role}): nothing to sync from")
    if state is None:
        return Outcome.failed("never synced from the primary")
    if state.last_success is None:
        last_attempt = clock.span(now - state.last_attempt)
        return Outcome.failed(f"no successful sync yet (last attempt {last_attempt} ago)")
    outcomes = []
    age = now - state.last_success
    stale = dt.timedelta(seconds=stale_after_s)
    text = f"last sync {clock.span(age)} ago"
    if state.last_attempt > state.last_success:
        text += f", last attempt {clock.span(now - state.last_attempt)} ago failed"
    if age > 4 * stale:
        outcomes.append(Outcome.failed(f"{text} (stale after {clock.span(stale)})"))
    elif age > stale:
        outcomes.append(Outcome.degraded(f"{text} (stale after {clock.span(stale)})"))
    else:
        outcomes.append(Outcome.ok(text))
    bad = [d for d in state.drift if d.kind == "incompatible"]
    if bad:
        outcomes.append(Outcome.failed("incompatible with the primary: "
                                       + ", ".join(f"{d.item} ({d.reason})" for d in bad)))
    else:
        compatible = sum(1 for d in state.drift if d.kind == "compatible")
        outcomes.append(Outcome.ok(f"no incompatible drift ({compatible} compatible differences)"))
    return _combine(outcomes)


@dataclass
class SyncProbe(Probe):
    """*On a secondary, the last sync is fresh and nothing drifted incompatibly from the primary.*"""

    role: Role
    stale_after_s: int
    state_file: Path
    now: Callable[[], dt.datetime] = field(default=clock.utcnow)
    timeout: float = 2.0
    name: str = "sync"

    @property
    def target(self) -> str:
        return str(self.state_file)

    def check(self) -> Outcome:
        try:
            state = SyncState.from_json(json.loads(self.state_file.read_text()), str(self.state_file))
        except FileNotFoundError:
            state = None
        except (OSError, ValueError) as err:
            return Outcome.failed(f"sync state unreadable: {first_line(err)}")
        except Refused as err:
            return Outcome.failed(err.what)
        return sync_outcome(self.role, state, self.now(), self.stale_after_s)


# ---------------------------------------------------------------- clock

# How far the clock may seem to go back between cycles before it counts as a jump.
BACKWARDS_TOLERANCE = dt.timedelta(minutes=5)


def clock_outcome(now: dt.datetime, floor: dt.datetime, last_seen: dt.datetime | None,
                  synchronized: bool | None, sync_required: bool = True) -> Outcome:
    """Is the wall clock believable (pure)? floor: no real time is earlier (the build time)."""
    if now < floor:
        return Outcome.failed(f"clock reads {now:%Y-%m-%d %H:%M} UTC, before this software was built")
    if last_seen is not None and now < last_seen - BACKWARDS_TOLERANCE:
        return Outcome.failed(f"clock went back: now {now:%Y-%m-%d %H:%M:%S}, "
                              f"last cycle {last_seen:%Y-%m-%d %H:%M:%S} UTC")
    if synchronized is False and sync_required:
        return Outcome.degraded("clock is not synchronized (NTP)")
    if synchronized is False:
        return Outcome.ok(f"{now:%Y-%m-%d %H:%M:%S} UTC, not synchronized (not required here)")
    state = "synchronized" if synchronized else "sync state unknown"
    return Outcome.ok(f"{now:%Y-%m-%d %H:%M:%S} UTC, {state}")


_TIME_ERROR = 5  # adjtimex(2): the kernel's clock is not synchronized


def kernel_clock_synchronized() -> bool | None:
    """The kernel's view (adjtimex, read-only): True/False, or None when it cannot be asked."""
    buf = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 only reads
    libc = ctypes.CDLL(None, use_errno=True)
    state = libc.adjtimex(buf)
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


def software_floor() -> dt.datetime:
    # In a reproducible image every file's mtime is the build's SOURCE_DATE_EPOCH:
    # no correct clock can read earlier than the package it runs.
    mtime = Path(__file__).stat().st_mtime
    return dt.datetime.fromtimestamp(mtime, dt.UTC)


@dataclass
class ClockProbe(Probe):
    """*The clock is later than the software's build, did not jump back, and is synchronized.*"""

    last_seen: dt.datetime | None = None
    synchronized: Callable[[], bool | None] = kernel_clock_synchronized
    sync_required: bool = True
    floor: Callable[[], dt.datetime] = software_floor
    now: Callable[[], dt.datetime] = field(default=clock.utcnow)
    timeout: float = 2.0
    name: str = "clock"

    @property
    def target(self) -> str:
        return "system clock"

    def check(self) -> Outcome:
        return clock_outcome(self.now(), self.floor(), self.last_seen, self.synchronized(),
                             self.sync_required)


# ---------------------------------------------------------------- systemd units

# A failed unit of a business service fails the probe; any other failed unit degrades it.
BUSINESS_UNIT_PREFIXES = tuple(d.unit_prefix for d in daemons.DAEMONS)
# The verifier's own unit fails whenever a cycle finds a problem: not news to itself.
IGNORED_UNITS = frozenset({"atlas-verify.service"})


class UnitsUnavailable(Exception):
    """systemd could not be asked (not running, no bus)."""


class SystemdUnits(Protocol):
    def failed_units(self) -> list[str]: ...


class Systemctl:
    """The real layer: `systemctl list-units --state=failed`."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout

    def failed_units(self) -> list[str]:
        try:
            result = proc.run(["systemctl", "list-units", "--state=failed", "--plain", "--no-legend",
                               "--no-pager", "--full"], timeout=self.timeout)
        except AtlasError as err:
            raise UnitsUnavailable(err.what) from None
        return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def units_outcome(failed: Sequence[str]) -> Outcome:
    failed = sorted(u for u in failed if u not in IGNORED_UNITS)
    business = [u for u in failed if u.startswith(BUSINESS_UNIT_PREFIXES)]
    if business:
        return Outcome.failed(f"failed units: {', '.join(failed)}")
    if failed:
        return Outcome.degraded(f"failed units: {', '.join(failed)}")
    return Outcome.ok("no failed units")


@dataclass
class UnitsProbe(Probe):
    """*systemd lists no failed unit.*"""

    units: SystemdUnits = field(default_factory=Systemctl)
    timeout: float = 5.0
    name: str = "units"

    @property
    def target(self) -> str:
        return "systemd"

    def check(self) -> Outcome:
        try:
            failed = self.units.failed_units()
        except UnitsUnavailable as err:
            return Outcome.degraded(f"cannot ask systemd: {err}")
        return units_outcome(failed)
