"""The failover drill: write business data on the primary, move its disks to the other
server, and prove the new primary serves the same data under the same identity, green.

Each step is timed; each assertion is recorded (not raised) so the report says
everything that held and everything that did not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas_services import daemons
from testkit.lab import business, facts, pair
from testkit.lab.guestprov import PRIMARY, SECONDARY, RoleSpec
from testkit.lab.machine import BUSINESS_INTERFACE, Machine
from testkit.lab.pace import PACE

log = logging.getLogger("lab")

# Bases of the drill's waits on the reference machine (scaled by the run's pace).
GREEN_BASE_S = 300.0
SYNC_BASE_S = 300.0
SHUTDOWN_BASE_S = 120.0


@dataclass
class Report:
    steps: list[dict[str, Any]] = field(default_factory=list)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    boots: list[dict[str, Any]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("drill: %s", name)
        start = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.steps.append({"step": name, "seconds": round(time.monotonic() - start, 1),
                               "ok": ok})

    def check(self, name: str, probe: Callable[[], bool]) -> bool:
        try:
            ok, detail = bool(probe()), ""
        except Exception as err:  # a failed assertion is reported, not raised
            ok, detail = False, f"{type(err).__name__}: {err}"
        self.assertions.append({"assertion": name, "ok": ok, **({"detail": detail} if detail else {})})
        log.info("drill: %s %s%s", "PASS" if ok else "FAIL", name, f" ({detail})" if detail else "")
        return ok

    @property
    def passed(self) -> bool:
        return all(s["ok"] for s in self.steps) and all(a["ok"] for a in self.assertions)

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "steps": self.steps, "boots": self.boots,
                "assertions": self.assertions}

    def table(self) -> str:
        lines = [f"{'step':58} {'seconds':>8}  ok"]
        lines += [f"{s['step']:58} {s['seconds']:8.1f}  {'yes' if s['ok'] else 'NO'}"
                  for s in self.steps]
        lines.append("")
        lines += [f"{b['server']}: role decided {b['role_decided_s']:.1f} s, services active "
                  f"{b['services_active_s']:.1f} s, first green {b['first_green_s']:.1f} s "
                  "(guest time after boot)" for b in self.boots]
        failed = [a for a in self.assertions if not a["ok"]]
        lines.append(f"\n{len(self.assertions) - len(failed)} of {len(self.assertions)} "
                     "assertions held" + ("" if not failed else ":"))
        lines += [f"  FAILED {a['assertion']} {a.get('detail', '')}" for a in failed]
        return "\n".join(lines)


# ---------------------------------------------------------------- facts from a server


def wait_green(machine: Machine) -> None:
    machine.wait_for("verified green", lambda: facts.verify_green(machine),
                     PACE.limit(GREEN_BASE_S))


def boot_figures(machine: Machine) -> dict[str, Any]:
    """Guest-clock seconds from kernel start to: role decided, services up, first green."""
    return {"server": machine.name,
            "role_decided_s": facts.unit_seconds(machine, "atlas-role.service"),
            "services_active_s": max(facts.unit_seconds(machine, s) for s in daemons.UNITS),
            "first_green_s": facts.first_green_s(machine) or 0.0}


# ---------------------------------------------------------------- the drill


def assert_roles(report: Report, primary: Machine, secondary: Machine, fingerprints: dict[str, str],
                 phase: str) -> None:
    for machine, role, spec in ((primary, "primary", PRIMARY), (secondary, "secondary", SECONDARY)):
        assert_identity(report, machine, role, spec, fingerprints[role], phase)


def assert_identity(report: Report, machine: Machine, role: str, spec: RoleSpec, fp: str,
                    phase: str) -> None:
    where = f"{phase}: {machine.name}"
    report.check(f"{where} is {role}", lambda: bool(facts.role_json(machine)["role"] == role))
    report.check(f"{where} is named {spec.hostname}",
                 lambda: machine.ssh("hostname").stdout.strip() == spec.hostname)
    report.check(f"{where} holds {spec.address}", lambda: spec.address in machine.ssh(
        f"ip -br -4 addr show {BUSINESS_INTERFACE}").stdout)
    report.check(f"{where} has the {role}'s SSH host key", lambda: facts.host_key_fingerprint(machine) == fp)
    report.check(f"{where} runs atlas-{role}.target", lambda: machine.ssh(
        f"systemctl is-active atlas-{role}.target").stdout.strip() == "active")


def assert_data(report: Report, primary: Machine, data: business.BusinessData, phase: str) -> None:
    where = f"{phase}: {primary.name}"
    report.check(f"{where} serves the web page", lambda: data.tag in business.read_page(primary))
    report.check(f"{where} has the mail (IMAP)",
                 lambda: data.subject in business.mail_subjects(primary, data))
    report.check(f"{where} has the row (PostgreSQL)", lambda: business.row_present(primary, data))
    report.check(f"{where} has the file (SMB)",
                 lambda: business.read_file(primary, data) == data.file_content)


def swap_and_boot(the_pair: pair.Pair, report: Report, phase: str) -> None:
    a, b = the_pair.server("server1"), the_pair.server("server2")
    with report.step(f"{phase}: shut both down, move the data-set disks, boot both"):
        for machine in (a, b):
            machine.shutdown(PACE.limit(SHUTDOWN_BASE_S))
        a.disks, b.disks = b.disks, a.disks
        for machine in (a, b):
            machine.start()
        for machine in (a, b):
            machine.wait_booted()


def drill(the_pair: pair.Pair, report_file: Path | None = None) -> Report:
    report = Report()
    primary, secondary = the_pair.by_role("primary"), the_pair.by_role("secondary")
    fingerprints = {role: facts.host_key_fingerprint(m) for role, m in (("primary", primary),
                                                                         ("secondary", secondary))}
    data = business.BusinessData()
    marker = f"drill-{data.tag}@shop.test"
    with report.step("a. write business data on the primary through real clients"):
        for machine in (primary, secondary):
            business.create_owner_account(machine)
        business.create_business_accounts(primary, data)
        business.write_all(primary, data)
        assert_data(report, primary, data, "before failover")
    with report.step("b. commit a configuration change; the secondary applies it; both green"):
        generation = pair.set_settings(primary, "drill: new administrator address",
                                       admin_email=marker)
        secondary.wait_for("synchronized", lambda: secondary.ssh(
            "atlas sync --now", check=False).returncode == 0
            and facts.applied_generation(secondary) >= generation, PACE.limit(SYNC_BASE_S))
        wait_green(primary)
        wait_green(secondary)
    with report.step("c. atlas failover prepare on the primary"):
        prepared = primary.ssh("atlas failover prepare", check=False)
        log.info("drill: failover prepare said:\n%s%s", prepared.stdout, prepared.stderr)
        report.check("failover prepare: the secondary is ready", lambda: prepared.returncode == 0)
    swap_and_boot(the_pair, report, "d. failover")
    new_primary, new_secondary = secondary, primary
    with report.step("e. the new primary serves everything, verified green"):
        assert_roles(report, new_primary, new_secondary, fingerprints, "after failover")
        assert_data(report, new_primary, data, "after failover")
        report.check("after failover: the configuration change is in force", lambda: marker in
                     new_primary.ssh("cat /etc/atlas/atlas.json").stdout)
        report.check("after failover: the new primary verifies green",
                     lambda: _green_within(new_primary))
        report.check("after failover: the new secondary verifies green",
                     lambda: _green_within(new_secondary))
        report.check("after failover: atlas status tells the story", lambda: "primary" in
                     new_primary.ssh("atlas status").stdout)
        report.boots.append(boot_figures(new_primary))
    swap_and_boot(the_pair, report, "f. swap back")
    with report.step("f. after swapping back, the first server is primary again"):
        assert_roles(report, primary, secondary, fingerprints, "after swap back")
        assert_data(report, primary, data, "after swap back")
        report.check("after swap back: the primary verifies green", lambda: _green_within(primary))
    if report_file is not None:
        report_file.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report


def _green_within(machine: Machine) -> bool:
    wait_green(machine)
    return True
