"""The exposure budget of every ATLAS service (`systemd-analyze security`, 0 = fully fenced
off, 10 = nothing), in one table, and the reading of the tool's output.

The image tier measures each unit inside a booted guest (the authority: the image's own
systemd) and fails above the budget; the unit tier scores the unit files offline with the
host's systemd-analyze for quick feedback. Why a unit needs what it keeps is said in the
unit itself.
"""

from __future__ import annotations

import re

BUDGET: dict[str, float] = {
    # Mounts the data set for the whole system, so no mount namespace; see its unit.
    "atlas-role.service": 5.5,
    "atlas-sync.service": 3.0,
    "atlas-verify.service": 1.5,
    "atlas-verify-setup.service": 2.2,
    "atlas-store-seed.service": 2.0,
    "atlas-ssh-hostkeys.service": 1.0,
    # The peer door's transient service (door.SANDBOX), scored while one runs.
    "atlas-door.service": 1.5,
}
# systemd < 254 and >= 254 score a few settings differently: what the host's offline
# scoring may exceed the budget by before the unit tier calls it a regression.
OFFLINE_SLACK = 0.3

_OVERALL = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def overall(output: str) -> float:
    """The overall exposure level in `systemd-analyze security UNIT` output."""
    match = _OVERALL.search(output)
    if match is None:
        raise ValueError(f"no overall exposure level in: {output[-300:]!r}")
    return float(match.group(1))
