"""`atlas failover prepare`: on the primary, before its disks move to the other server.

It asks the secondary (through the sync key's door, which on a secondary answers only
`hello`, `results` and `pull`) to sync from this primary now, checks that the secondary
holds this primary's newest configuration and that its Verifier was green at its last
cycle, then prints the checklist a person follows at the servers. Nothing here changes
the primary.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from atlas_services import clock, settings
from atlas_services.errors import EXIT_FAILED, EXIT_OK, AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.roles import Role, read_role

CHECKLIST = """\
Failover checklist ({primary} → {other}):
  1. Tell the users: mail, web, database and shares stop for a few minutes.
  2. Power off {secondary_name} (the secondary) first: `systemctl poweroff` there.
  3. Power off this server ({primary_name}): `systemctl poweroff`.
  4. Take this server's data-set disks out (all of them: {disks}) and label them "primary".
  5. Put them into {secondary_name}'s bays, and {secondary_name}'s disks into this server.
  6. Power on {secondary_name}: it becomes {primary_name}, with the same address and keys.
  7. Power on this server: it becomes the secondary and starts syncing.
  8. Check `atlas status` on both: role, and the Verifier green.
"""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str



def _age_s(when: str | None, now: datetime) -> float | None:
    if not when:
        return None
    try:
        return (now - clock.parse_time(when)).total_seconds()
    except ValueError:
        return None


def evaluate(pulled: dict[str, Any], results: dict[str, Any], primary_newest: int | None,
             verify_interval_s: int, now: datetime) -> list[Check]:
    """What the secondary's answers say about a failover now (pure)."""
    sync_ok = pulled.get("status") == "ok"
    secondary_gens = (pulled.get("generations") or {}).get("secondary") or []
    newest = max(secondary_gens) if secondary_gens else None
    age = _age_s(results.get("finished"), now)
    fresh = age is not None and age <= 2 * verify_interval_s + 60
    failing = [r.get("probe", "?") for r in results.get("results", []) if r.get("status") != "ok"]
    return [
        Check("final sync", sync_ok, f"sync {pulled.get('status', 'unknown')}"
              + (f": {pulled.get('last_error')}" if pulled.get("last_error") else "")),
        Check("configuration", primary_newest is not None and newest == primary_newest,
              f"secondary holds generation {newest}, the primary's newest is {primary_newest}"),
        Check("secondary verified green", results.get("status") == "ok" and fresh,
              f"last cycle {results.get('status', 'unknown')}"
              + (f" {age:.0f} s ago" if age is not None else "")
              + (f"; not ok: {', '.join(failing)}" if failing else "")),
    ]


def trial_check(record_file: Path) -> Check:
    """The secondary runs a version on trial while an update is staged: after a failover it
    would run it as the primary, unpromoted. Promote or roll back first."""
    from atlas_services.update import record

    try:
        staged = record.read(record_file).staged
    except AtlasError as err:
        return Check("no update on trial", False, str(err))
    if not staged:
        return Check("no update on trial", True, "nothing is staged")
    names = ", ".join(f"{u.module} {u.version}" for u in staged.values())
    return Check("no update on trial", False, f"the secondary runs {names} on trial: after a failover "
                 "it would run as the primary unpromoted; 'atlas update promote' or 'atlas update "
                 "rollback' first")


def prepare(layout: Layout = Layout()) -> tuple[list[Check], str]:
    from atlas_services.peer import client
    from atlas_services.peer.failures import SyncError
    from atlas_services.store.config import ConfigStore

    record = read_role(layout.role_file)
    if record.role is not Role.PRIMARY:
        what = record.role if isinstance(record.role, Role) else "not in a role"
        raise Refused(f"this server is {what}, not the primary",
                      "run 'atlas failover prepare' on the primary")
    target = client.target_from_dataset(layout, role=Role.SECONDARY)
    try:
        with client.Client(target) as peer:
            pulled = peer.call_json("pull")
            served = peer.call_json("results")
    except SyncError as err:
        raise AtlasError(f"the secondary {target.describe()} cannot be asked: {err}",
                         "make sure it is powered on and in its role; a failover now may lose "
                         "the configuration changes it has not pulled") from None
    store = ConfigStore(layout.config_store)
    primary_newest = store.newest() if store.exists() else None
    # sync-serve wraps the Verifier's latest cycle: {"available": bool, "results": cycle}.
    cycle = served.get("results") if isinstance(served, dict) else None
    checks = evaluate(pulled, cycle if isinstance(cycle, dict) else {}, primary_newest,
                      settings.load(layout).verify_interval_s, clock.utcnow())
    checks.append(trial_check(layout.update_record))
    text = CHECKLIST.format(primary=record.hostname, other=target.host_key_alias,
                            primary_name=record.hostname, secondary_name=target.host_key_alias,
                            disks=", ".join(record.devices) or "every data-set disk")
    return checks, text


def prepare_command(args: argparse.Namespace) -> int:
    checks, checklist = prepare(args.layout)
    ready = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"ready": ready, "checks": [asdict(c) for c in checks],
                          "checklist": checklist}, indent=2))
    else:
        for check in checks:
            print(f"{'ok' if check.ok else 'NOT OK':7} {check.name}: {check.detail}")
        print()
        if not ready:
            print("The secondary is NOT ready: a failover now may lose data or configuration.")
        print(checklist, end="")
    return EXIT_OK if ready else EXIT_FAILED


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("failover", help="prepare a failover to the secondary")
    verbs = parser.add_subparsers(metavar="VERB", required=True)
    prep = verbs.add_parser(
        "prepare", help="final sync, check the secondary is green, print the checklist",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  atlas failover prepare      (on the primary)")
    prep.add_argument("--json", action="store_true", help="print machine-readable JSON")
    prep.set_defaults(func=prepare_command)
