"""One verification cycle on a server: what to probe (targets), one cycle at a time, published."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from atlas_services import osinfo, render
from atlas_services.errors import AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.results import Cycle
from atlas_services.roles import Role
from atlas_services.settings import Settings
from atlas_services.verify import account, report
from atlas_services.verify.probes import Probe, Unavailable
from atlas_services.verify.probes.database import DatabaseProbe
from atlas_services.verify.probes.files import FilesProbe
from atlas_services.verify.probes.freshness import SyncProbe
from atlas_services.verify.probes.mail import MailProbe
from atlas_services.verify.probes.raid import RaidProbe
from atlas_services.verify.probes.space import SpaceProbe
from atlas_services.verify.probes.timekeeping import ClockProbe, kernel_clock_synchronized
from atlas_services.verify.probes.units import Systemctl, SystemdUnits, UnitsProbe
from atlas_services.verify.probes.web import WebProbe
from atlas_services.verify.runner import run_cycle

LOCK_WAIT_S = 60.0


@dataclass(frozen=True)
class Targets:
    """Everything the probes of one server need to know; built from the box, or by a test."""

    role: Role
    hostname: str
    address: str  # where the service probes connect
    settings: Settings
    layout: Layout = Layout()  # the data set, the sync state and the module store
    ports: Mapping[str, int] = field(default_factory=lambda: dict(render.DEFAULT_PORTS))
    probe_timeout_s: float | None = None  # default: settings.verify_probe_timeout_s
    filesystems: tuple[Path, ...] | None = None  # default: the data set and the OS disk's state
    units: SystemdUnits = field(default_factory=Systemctl)
    clock_synchronized: Callable[[], bool | None] = kernel_clock_synchronized

    @property
    def timeout(self) -> float:
        return float(self.probe_timeout_s or self.settings.verify_probe_timeout_s)


def service_probes(t: Targets) -> list[Probe]:
    """web, mail, database, files: each logs in with the verifier's account from the data set."""
    try:
        acct = account.load(t.layout.data_root)
    except AtlasError as err:
        reason = str(err)
        return [Unavailable(name, t.address, reason) for name in ("web", "mail", "database", "files")]
    p = t.ports
    return [
        WebProbe(t.address, p["http"], p["https"], account.CANARY_PATH,
                 acct.canary_sha256, timeout=t.timeout),
        MailProbe(t.address, p["smtp"], p["imap"], acct.mail_address, acct.mail_password,
                  timeout=t.timeout),
        DatabaseProbe(t.address, p["postgresql"], acct.db_password, timeout=t.timeout),
        FilesProbe(t.address, p["smb"], acct.smb_password, timeout=t.timeout),
    ]


def system_probes(t: Targets, last_seen: dt.datetime | None) -> list[Probe]:
    filesystems = t.filesystems or (t.layout.data_root, t.layout.state_dir)
    return [
        RaidProbe(t.layout.data_root),
        SpaceProbe(list(filesystems), t.settings.free_space_min_percent),
        SyncProbe(t.role, t.settings.sync_stale_after_s, t.layout.sync_state),
        ClockProbe(last_seen, synchronized=t.clock_synchronized,
                   sync_required=t.settings.clock_sync_required),
        UnitsProbe(t.units),
    ]


def modules_in_use(layout: Layout) -> dict[str, str]:
    """The module versions this cycle runs with (an update's trial counts cycles by them);
    none when the store cannot be read — the cycle itself must not fail for that."""
    import atlas_services
    from atlas_services.store.modules import ModuleStore

    try:
        store = ModuleStore(layout.module_store, layout.formats_file)
        return store.versions_in_use(Path(atlas_services.__file__))
    except (OSError, AtlasError):
        return {}


@contextmanager
def cycle_lock(path: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """One cycle at a time (the timer's and an administrator's `--now` would share a mailbox)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Read-only: flock needs no write access, so the verifier's user and root (an
    # administrator's `atlas verify --now`) share the lock whoever made the file.
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)) as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AtlasError("another verification cycle is still running",
                                     "wait for it, then look at 'atlas verify status'") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_once(targets: Targets, publisher: report.Publisher) -> Cycle:
    """Run every probe once and publish the cycle; returns it."""
    with cycle_lock(publisher.layout.verify_lock):
        previous = report.load_previous(publisher.layout.verify_latest)
        probes = service_probes(targets) + system_probes(targets, previous.finished if previous else None)
        cycle = run_cycle(probes, role=targets.role, host=targets.hostname,
                          modules=modules_in_use(targets.layout))
        publisher.publish(cycle)
    return cycle


# ---------------------------------------------------------------- the box


@dataclass(frozen=True)
class RoleInfo:
    """What the verifier needs of this boot's role: the same context the configuration was
    rendered with (store.apply.role_context), so probes dial what the services listen on."""

    role: Role
    hostname: str
    address: str
    domain: str
    ports: Mapping[str, int]


def read_role(settings: Settings, layout: Layout = Layout()) -> RoleInfo:
    if not layout.role_file.exists():
        raise Refused("role detection has not run on this boot", "see 'atlas status'")
    from atlas_services.store.apply import role_context  # the store's imports only when needed

    context = role_context(settings, layout)
    return RoleInfo(role=Role(context["role"]), hostname=context["hostname"], address=context["address"],
                    domain=context["domain"], ports=context["ports"])


def box_targets(settings: Settings, role: RoleInfo, layout: Layout = Layout()) -> Targets:
    if not role.role.has_dataset:
        raise Refused(f"this server is {role.role}: it runs no business services to verify",
                      "the verifier runs on a primary or a secondary")
    return Targets(role=role.role, hostname=role.hostname, address=role.address,
                   settings=settings, layout=layout, ports=dict(role.ports))


def box_publisher(settings: Settings, layout: Layout = Layout()) -> report.Publisher:
    sender = f"atlas-verify@{osinfo.hostname()}"

    def update_lines(role: str) -> list[str]:
        from atlas_services.update import view

        return view.lines(role, settings.promote_green_cycles, layout)
    return report.Publisher(
        layout=layout, history_cycles=settings.verify_history_cycles,
        notifier=report.MailNotifier(recipient=settings.admin_email, sender=sender),
        interval_s=settings.verify_interval_s, update_lines=update_lines)
