"""`atlas role detect|apply`: which role this server takes at boot, and taking it.

`apply` is what atlas-role.service runs early at every boot: detect, then (for a usable
data set) mount it, install the role's host keys, write its network configuration, set
its host name, bump the set's generation, start the role's target, and record it all.
A refusal takes none of those steps: the server stays standby and says why.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from atlas_services import (
    cluster,
    dataset,
    detect,
    fsutil,
    log,
    messages,
    proc,
    servicedata,
    settings,
    untrusted,
    volume,
)
from atlas_services.detect import Decision
from atlas_services.errors import AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.roles import Role

logger = logging.getLogger(__name__)

STANDBY_HOSTNAME = "atlas-standby"

EVENT_IDS = {
    Role.PRIMARY: messages.ROLE_PRIMARY,
    Role.SECONDARY: messages.ROLE_SECONDARY,
    Role.STANDBY: messages.ROLE_STANDBY,
    Role.REFUSED: messages.ROLE_REFUSED,
}


class System(Protocol):
    """What role apply asks of the running system (systemd over D-Bus on the box)."""

    def set_hostname(self, name: str) -> None: ...
    def start_unit(self, unit: str) -> None: ...
    def reload_network(self) -> None: ...
    def reload_units(self) -> None: ...
    def notify(self, status: str) -> None: ...


class DBusSystem:
    """hostnamed and the service manager over the system bus (pydbus)."""

    def __init__(self) -> None:
        from pydbus import SystemBus

        self.bus = SystemBus()

    def set_hostname(self, name: str) -> None:
        # Transient only: the name belongs to the data set, not to this OS disk.
        self.bus.get("org.freedesktop.hostname1").SetHostname(name, False)

    def start_unit(self, unit: str) -> None:
        self.bus.get("org.freedesktop.systemd1").StartUnit(unit, "replace")

    def reload_network(self) -> None:
        # At boot networkd starts after this service and reads /run itself. Asking it to
        # reload before then would D-Bus-activate it, and it waits for us: only a running
        # networkd is told (when the role is re-applied by hand).
        if proc.run(["systemctl", "is-active", "--quiet", "systemd-networkd.service"],
                    ok_codes=proc.ANY_EXIT, timeout=10).returncode == 0:
            proc.run(["networkctl", "reload"], ok_codes=proc.ANY_EXIT, timeout=30)

    def reload_units(self) -> None:
        self.bus.get("org.freedesktop.systemd1").Reload()

    def notify(self, status: str) -> None:
        from systemd import daemon

        daemon.notify(f"READY=1\nSTATUS={status}")


class Stopwatch:
    """Seconds spent in each step of taking the role, for role.json and the journal."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = round(time.monotonic() - start, 3)


def known_cluster(layout: Layout) -> str | None:
    try:
        return layout.known_cluster_file.read_text().strip() or None
    except FileNotFoundError:
        return None


def resolve_interface(pattern: str, sys_net: Path = Path("/sys/class/net")) -> str | None:
    """The first network interface (in name order) whose name matches the pattern."""
    names = sorted(p.name for p in sys_net.iterdir()) if sys_net.exists() else []
    return next((n for n in names if n != "lo" and fnmatch.fnmatchcase(n, pattern)), None)


def detect_role(*, address_check: bool = True, devices: list[Path] | None = None,
                watch: Stopwatch | None = None, layout: Layout = Layout()) -> Decision:
    """Probe and decide; changes nothing (data sets are only looked at read-only)."""
    watch = watch or Stopwatch()
    the_settings = settings.load(layout)
    with watch.step("probe"):
        facts = detect.probe_facts(known_cluster(layout), devices, layout)
    decision = detect.decide(facts, the_settings)
    vol = decision.volume
    if address_check and vol and decision.role.has_dataset:
        with watch.step("address_check"):
            interface = resolve_interface(vol.identity.interface)
            in_use = bool(interface) and detect.address_answered(str(interface), vol.identity.ip)
        decision = detect.decide(replace(facts, address_in_use=in_use), the_settings)
    return decision


def network_config(identity: volume.Identity, interface: str) -> str:
    lines = ["# Written by atlas-role.service for this boot's role; do not edit.",
             "[Match]", f"Name={interface}", "", "[Network]", f"Address={identity.address}"]
    if identity.gateway:
        lines.append(f"Gateway={identity.gateway}")
    lines += [f"DNS={server}" for server in identity.dns]
    lines += ["LinkLocalAddressing=no", "IPv6AcceptRA=no", ""]
    return "\n".join(lines)


def install_host_keys(data_root: Path, target: Path) -> None:
    """The role's SSH host keys, from the data set into /run: nothing secret stays on the
    OS disk when the disks leave."""
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for key in sorted(dataset.secrets(data_root).glob("ssh_host_*_key*")):
        mode = 0o644 if key.name.endswith(".pub") else 0o600
        try:
            data = untrusted.read_bytes(key, below=data_root)
        except (OSError, ValueError) as err:
            raise Refused(f"host key {key} on the data set is unusable: {untrusted.describe(err)}",
                          "re-provision the data set from the cluster directory") from None
        fsutil.write_atomic(target / key.name, data, mode)


def mount_data_root(decision: Decision, data_root: Path) -> None:
    assert decision.dataset is not None
    data_root.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(data_root):
        return
    # nodev,nosuid: a device node or a set-id program on a disk that travels means nothing.
    options = "rw,noatime,nodev,nosuid" + (",degraded" if decision.degraded else "")
    proc.run(["btrfs", "device", "scan", *decision.dataset.devices], timeout=dataset.SCAN_TIMEOUT_S)
    proc.run(["mount", "-t", "btrfs", "-o", options, decision.dataset.devices[0], data_root],
             timeout=dataset.MOUNT_TIMEOUT_S)


def take_role(decision: Decision, system: System, layout: Layout, watch: Stopwatch) -> Decision:
    """Mount, claim the identity, bump the generation; returns the decision as applied."""
    with watch.step("mount"):
        data_root = layout.data_root
        mount_data_root(decision, data_root)
        vol = volume.read(data_root)
    with watch.step("host_keys"):
        install_host_keys(data_root, layout.host_key_dir)
    with watch.step("sync_access"):
        from atlas_services.peer import keys

        keys.install_for_role(vol.role, layout)
    with watch.step("service_data"):
        domain = dataset_domain(data_root)
        fqdn = f"{vol.identity.hostname}.{domain}" if domain else vol.identity.hostname
        try:
            servicedata.prepare(data_root, fqdn)
        except AtlasError as err:
            # The role is still this server's; the services will say what they miss.
            logger.error("service data on the data set not laid out: %s", err)
    with watch.step("network"):
        interface = resolve_interface(vol.identity.interface)
        if interface is None:
            logger.warning("no network interface matches %r: the role's address is not "
                           "configured", vol.identity.interface)
        else:
            fsutil.write_atomic(layout.network_file, network_config(vol.identity, interface).encode())
            system.reload_network()
    with watch.step("hostname"):
        system.set_hostname(vol.identity.hostname)
    with watch.step("generation"):
        bumped = vol.bumped()
        volume.write(data_root, bumped)
        fsutil.write_atomic(layout.known_cluster_file, f"{bumped.cluster_id}\n".encode())
    assert decision.dataset is not None
    return replace(decision, dataset=replace(decision.dataset, volume=bumped))


class _NothingRunsYet:
    """At boot the business services start after this service: nothing to reload."""

    def reload(self, unit: str) -> None:
        pass

    def restart(self, unit: str) -> None:
        pass


def prepare_configuration(decision: Decision, layout: Layout, watch: Stopwatch,
                          system: System) -> None:
    """Adopt the data set's newer configuration (primary) and render it for this role.

    A failure is logged, not fatal: the services then start on the configuration /etc
    already holds, which is better than no role at all.
    """
    from atlas_services.store import apply as store_apply
    from atlas_services.store.config import ConfigStore, adopt_newer_from_dataset

    store = ConfigStore(layout.config_store)
    if not store.exists():
        logger.warning("no configuration store on this OS disk: /etc is used as it is")
        return
    try:
        if decision.role is Role.PRIMARY:
            with watch.step("adopt_config"):
                adopted = adopt_newer_from_dataset(store, layout.data_root)
            if adopted is not None:
                logger.info("adopted configuration generation %d from the data set", adopted)
        with watch.step("apply_config"):
            result = store_apply.apply(store, layout=layout, manager=_NothingRunsYet())
        # Rendered unit drop-ins (the Verifier's period) count only after a reload.
        if any(path.startswith("etc/systemd/") for path in result.changed + result.removed):
            system.reload_units()
    except AtlasError as err:
        logger.error("configuration for the %s role not applied: %s", decision.role, err)


def write_role_file(decision: Decision, timings: dict[str, float], domain: str,
                    layout: Layout) -> None:
    fsutil.write_atomic(layout.role_file, (json.dumps(
        {**decision.to_json(), "domain": domain, "timings": timings}, indent=2) + "\n").encode())


def dataset_domain(data_root: Path) -> str:
    the_cluster = cluster.find_on_dataset(data_root)
    return the_cluster.domain if the_cluster else ""


def log_decision(decision: Decision) -> None:
    vol = decision.volume
    message_id = messages.ROLE_DEGRADED if decision.degraded else EVENT_IDS[decision.role]
    log.event(message_id, f"ATLAS role: {decision.role} — {decision.message}",
              priority=4 if decision.role is Role.REFUSED or decision.degraded else 6,
              role=decision.role, reason=decision.reason,
              dataset_id=vol.dataset_id if vol else None,
              generation=vol.generation if vol else None,
              cluster_id=vol.cluster_id if vol else None)


def _failed(err: Exception, data_root: Path) -> Decision:
    """Taking the role broke on this server: serve nothing, unmount, and say why."""
    logger.exception("taking the role failed")
    if os.path.ismount(data_root):
        proc.run(["umount", data_root], ok_codes=proc.ANY_EXIT, timeout=dataset.MOUNT_TIMEOUT_S)
    what = str(err) if isinstance(err, AtlasError) else f"{type(err).__name__}: {err}"
    return Decision(Role.REFUSED, detect.Reason.ERROR, f"the role could not be taken: {what}")


def apply(system: System, layout: Layout = Layout()) -> Decision:
    watch = Stopwatch()
    domain = ""
    try:
        decision = detect_role(watch=watch, layout=layout)
        if decision.role.has_dataset:
            decision = take_role(decision, system, layout, watch)
            domain = dataset_domain(layout.data_root)
            # The configuration is rendered from role.json: write it before rendering.
            write_role_file(decision, watch.steps, domain, layout)
            prepare_configuration(decision, layout, watch, system)
    # Whatever broke, the server must end this boot in a defined state that says why.
    except Exception as err:
        decision = _failed(err, layout.data_root)
    if not decision.role.has_dataset:
        from atlas_services.peer import keys

        keys.remove_sync_access(layout)
        with watch.step("hostname"):
            system.set_hostname(STANDBY_HOSTNAME)
    with watch.step("start_target"):
        system.start_unit(decision.target)
    write_role_file(decision, watch.steps, domain, layout)
    log_decision(decision)
    # Printed for the console (the unit sends stdout there too): a refusal must be seen.
    print(f"ATLAS: {decision.role} — {decision.message}", flush=True)
    system.notify(f"{decision.role}: {decision.message}")
    return decision


def detect_command(args: argparse.Namespace) -> int:
    devices = [Path(d) for d in args.device] if args.device else None
    decision = detect_role(address_check=not args.no_address_check, devices=devices,
                           layout=args.layout)
    if args.json:
        print(json.dumps(decision.to_json(), indent=2))
    else:
        print(f"{decision.role}: {decision.message}")
    return 0


def apply_command(args: argparse.Namespace) -> int:
    apply(DBusSystem(), args.layout)
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("role", help="detect or take this server's role")
    verbs = parser.add_subparsers(metavar="VERB", required=True)
    det = verbs.add_parser(
        "detect", help="say which role the disks give this server (changes nothing)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  atlas role detect\n  atlas role detect --json --no-address-check")
    det.add_argument("--json", action="store_true", help="print machine-readable JSON")
    det.add_argument("--no-address-check", action="store_true",
                     help="skip duplicate-address detection on the network")
    det.add_argument("--device", action="append", metavar="DEV",
                     help="probe only this device (repeat); default: every block device")
    det.set_defaults(func=detect_command)
    app = verbs.add_parser("apply", help="take the role (run by atlas-role.service at boot)")
    app.set_defaults(func=apply_command)

