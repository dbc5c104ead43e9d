"""Facts read from inside a lab guest, on the guest's own clocks: unit timestamps, journal
entries, the role record, host keys, the applied configuration, a Verifier cycle.

Product promises about time are checked with these (guest time), never with how long the
host happened to wait: a slow host makes every wait longer, not the product slower.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from typing import Any

from testkit.lab.machine import Machine

# systemd's own catalogue: a unit's start job began / a job finished (JOB_TYPE, JOB_RESULT).
UNIT_STARTING = "7d4958e842da4a758f6c1cdc7b36dcc5"
UNIT_JOB_DONE = "39f53479d3a045ac8e11786248231fbf"


def unit_seconds(machine: Machine, unit: str, prop: str = "ActiveEnterTimestampMonotonic") -> float:
    """A unit's monotonic timestamp property in seconds since the guest's kernel started
    (0 when the unit never reached that state in this boot)."""
    value = machine.ssh(f"systemctl show -P {shlex.quote(prop)} {shlex.quote(unit)}").stdout.strip()
    return int(value or 0) / 1e6


def journal(machine: Machine, *matches: str, boot: bool = True) -> list[dict[str, Any]]:
    """Journal entries (journalctl -o json) matching FIELD=value terms, oldest first."""
    terms = " ".join(shlex.quote(m) for m in matches)
    output = machine.ssh(f"journalctl {'-b ' if boot else ''}-o json --no-pager {terms}",
                         check=False).stdout
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def realtime(entry: dict[str, Any]) -> float:
    """An entry's wall-clock time on the guest that logged it, in seconds since the epoch."""
    return int(entry["__REALTIME_TIMESTAMP"]) / 1e6


@dataclass(frozen=True)
class Run:
    """One run of a oneshot service, in the guest's wall-clock seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def unit_runs(machine: Machine, unit: str) -> list[Run]:
    """Every finished run of a service in this boot, from systemd's own job messages."""
    runs, started = [], None
    for entry in journal(machine, f"UNIT={unit}"):
        if entry.get("MESSAGE_ID") == UNIT_STARTING:
            started = realtime(entry)
        elif entry.get("MESSAGE_ID") == UNIT_JOB_DONE and started is not None:
            runs.append(Run(started, realtime(entry)))
            started = None
    return runs


@dataclass(frozen=True)
class ClockOffset:
    """guest clock − host clock, known to within ± `uncertainty` seconds."""

    offset: float
    uncertainty: float

    def to_host(self, guest_time: float) -> float:
        return guest_time - self.offset


def clock_offset(machine: Machine) -> ClockOffset:
    """Read the guest's wall clock between two readings of the host's. Both guests' clocks
    start from the host's RTC, but only to the second; comparing them needs this."""
    before = time.time()
    guest = float(machine.ssh("date +%s.%N", timeout=60).stdout)
    after = time.time()
    return ClockOffset(guest - (before + after) / 2, (after - before) / 2)


def role_json(machine: Machine) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(machine.ssh("cat /run/atlas/role.json").stdout)
    return data


def host_key_fingerprint(machine: Machine) -> str:
    return machine.ssh("ssh-keygen -lf /run/atlas/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]


def applied_generation(machine: Machine) -> int:
    data = json.loads(machine.ssh("cat /etc/atlas/applied.json").stdout)
    generation: int = data["generation"]
    return generation


# Run inside a server: seconds from kernel start to the end of the first all-ok cycle.
_FIRST_GREEN_SCRIPT = """
import json, time
from datetime import datetime
boot = time.time() - float(open('/proc/uptime').read().split()[0])
with open('/var/lib/atlas/verify/history.jsonl') as history:
    for line in history:
        cycle = json.loads(line)
        finished = datetime.fromisoformat(cycle['finished']).timestamp()
        if finished >= boot and cycle['status'] == 'ok':
            print(round(finished - boot, 1))
            break
"""


def first_green_s(machine: Machine) -> float | None:
    """Guest seconds from kernel start to the end of this boot's first all-ok cycle."""
    found = machine.ssh("python3 -", input=_FIRST_GREEN_SCRIPT, check=False).stdout.strip()
    return float(found) if found else None


def verify_green(machine: Machine) -> bool:
    """Run one Verifier cycle now: did every probe pass?"""
    return machine.ssh("atlas verify --now --json", check=False).returncode == 0
