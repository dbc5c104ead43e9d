"""disk-space: each file system the services write to has room left."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from atlas_services.results import Outcome, combine
from atlas_services.verify.probes import Probe, first_line


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
        return combine(outcomes)
