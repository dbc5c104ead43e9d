"""How long the lab waits, sized from what this run has measured on this machine.

Machines of the lab's kind differ two to three times in speed (TCG emulation on two shared
cores), so no wait is a fixed host deadline. Each wait has a base: what a developer's
machine needs, with room to spare. Once a guest has booted in this run, every base is
scaled by how much slower that boot was than the same boot on the developer's machine;
before that, by the slowest factor seen on a machine of this kind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger("lab")

# Seconds from QEMU's start until systemd has finished starting up, two guests booting at
# once, on a developer's machine (the reference every base below was measured against).
REFERENCE_BOOT_S = 165.0
# Before any boot was measured: a fresh machine of this kind booted 3× slower (495 s).
UNMEASURED_FACTOR = 3.5
# A boot may take this many times the slowest boot already seen in this run.
BOOT_MARGIN = 3.0
BOOT_FLOOR_S = 600.0


@dataclass
class Pace:
    """The run's measured pace: the slowest boot so far scales every wait."""

    slowest_boot_s: float = 0.0

    def record_boot(self, seconds: float) -> None:
        if seconds > self.slowest_boot_s:
            self.slowest_boot_s = seconds
            logger.info("lab: slowest boot of this run so far %.0f s: waits are sized %.1f× "
                        "the reference machine's", seconds, self.factor)

    @property
    def factor(self) -> float:
        if not self.slowest_boot_s:
            return UNMEASURED_FACTOR
        return max(1.0, self.slowest_boot_s / REFERENCE_BOOT_S)

    def limit(self, base_s: float) -> float:
        """A wait whose base (on the reference machine, with room) is base_s."""
        return base_s * self.factor

    def boot_limit(self) -> float:
        """How long one boot may take: a multiple of the slowest boot already seen."""
        if not self.slowest_boot_s:
            return REFERENCE_BOOT_S * UNMEASURED_FACTOR * BOOT_MARGIN
        return max(BOOT_FLOOR_S, self.slowest_boot_s * BOOT_MARGIN)


# One per process: every lab of a test run shares what the run has measured.
PACE = Pace()
