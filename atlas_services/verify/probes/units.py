"""units: systemd lists no failed unit; a failed business service fails the probe. systemd
is asked through a thin injectable layer (`systemctl list-units --state=failed`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from atlas_services import daemons, proc
from atlas_services.errors import AtlasError
from atlas_services.results import Outcome
from atlas_services.verify.probes import Probe

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
