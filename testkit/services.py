"""Real business services on loopback, configured from ATLAS's own templates (tests, benchmarks).

A `ServiceStack` renders the config-default templates with private paths (config_root,
run_root under a temp dir) and free high ports on 127.0.0.1, lays out a data set the way
the box has it, and starts nginx, postfix, dovecot, PostgreSQL and samba as root, each in
the foreground under its own process group so that it can be stopped, hung (SIGSTOP) and
resumed. Nothing here touches the host's own service configuration or init.

The data set is btrfs raid1 on two loop devices, as on the box (testkit.disks.LoopRaid1).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from atlas_services import daemons, paths, proc, render, servicedata
from atlas_services.paths import Layout
from atlas_services.results import Cycle
from atlas_services.roles import Role
from atlas_services.settings import Settings
from atlas_services.verify import account, environment
from atlas_services.verify.cycle import Targets, run_once
from atlas_services.verify.report import JournalEntry, MailNotifier, Publisher
from testkit.disks import LoopRaid1
from testkit.net import free_ports
from testkit.repo import TEMPLATES

HOSTNAME = "atlas-test"
DOMAIN = "atlas.test"
SERVICES = tuple(d.name for d in daemons.DAEMONS)  # in start order
START_TIMEOUT_S = 30.0


def open_for_services(path: Path) -> None:
    """Let service users (postgres, www-data, mail, dovecot) traverse down to `path`.

    pytest makes its temp root 0700; only the execute bit is added, up to /tmp.
    """
    for directory in [path, *path.parents]:
        if directory in (Path("/"), Path("/tmp")):
            break
        st = directory.stat()
        if st.st_uid == 0 and (st.st_mode & 0o011) != 0o011:
            directory.chmod((st.st_mode & 0o7777) | 0o011)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(what: str, ready: Callable[[], bool], timeout: float = START_TIMEOUT_S,
             log_file: Path | None = None, child: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        exited = child is not None and child.poll() is not None
        if exited or time.monotonic() > deadline:
            tail = log_file.read_text()[-3000:] if log_file and log_file.exists() else ""
            how = "exited" if exited else f"not ready within {timeout:g} s"
            raise RuntimeError(f"{what} {how}\n{tail}")
        time.sleep(0.1)


def ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def make_dir(path: Path, mode: int = 0o755, owner: str | None = None,
             group: str | None = None) -> Path:
    """A directory of the test's own runtime tree (trusted), with owner and mode."""
    path.mkdir(parents=True, exist_ok=True)
    return servicedata.make_dir(path.parent, path.name, mode, owner, group)


PG_BIN = servicedata.PG_BIN


# ---------------------------------------------------------------- services


@dataclass
class Service:
    """One daemon: how to start it in the foreground, when it is ready, how it stops."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    stop_signal: signal.Signals = signal.SIGTERM
    # The process group to signal; by default the spawned process's own.
    group: Callable[[subprocess.Popen[bytes]], int | None] = field(default=lambda child: child.pid)
    before_start: Callable[[], object] = field(default=lambda: None)
    child: subprocess.Popen[bytes] | None = None
    paused: bool = False


def _signal_group(pgid: int | None, sig: signal.Signals) -> None:
    if pgid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies waiting to be reaped do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


class ServiceStack:
    """nginx, postfix, dovecot, PostgreSQL and samba for one server, on 127.0.0.1."""

    def __init__(self, root: Path, *, hostname: str = HOSTNAME,
                 domain: str = DOMAIN, role: Role = Role.PRIMARY) -> None:
        self.root = root
        self.hostname = hostname
        self.domain = domain
        self.role = role
        self.config_root = root / "config"
        self.run_root = root / "run"
        self.logs = root / "logs"
        self.ports = dict(zip(render.DEFAULT_PORTS, free_ports(len(render.DEFAULT_PORTS)), strict=True))
        self.services: dict[str, Service] = {}
        self.journal: list[JournalEntry] = []

    # -- paths

    def conf(self, relative: str) -> Path:
        return self.config_root / relative

    @property
    def postfix_dir(self) -> Path:
        return self.conf("etc/postfix")

    @property
    def pg_socket_dir(self) -> Path:
        return self.run_root / "var/run/postgresql"

    @property
    def layout(self) -> Layout:
        """This stack's box tree: under run_root, where the rendered nginx.conf serves the
        status page from; the data set is mounted at its data_root."""
        return Layout.under(self.run_root)

    @property
    def data_root(self) -> Path:
        return self.layout.data_root

    def log_tail(self, name: str, chars: int = 3000) -> str:
        log_file = self.logs / f"{name}.log"
        return log_file.read_text()[-chars:] if log_file.exists() else ""

    # -- preparing

    def context(self) -> dict[str, Any]:
        return render.standard_context(
            role=self.role, hostname=self.hostname, domain=self.domain, data_root=str(self.data_root),
            settings=Settings().to_json(), listen_address="127.0.0.1", ports=self.ports,
            config_root=str(self.config_root), run_root=str(self.run_root))

    def render(self) -> None:
        for rel, content in render.render_tree(TEMPLATES, self.context()).items():
            target = self.config_root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o644)

    def prepare_runtime(self) -> None:
        r = self.run_root
        for d in ("run", "var/log/nginx", "var/lib/nginx", "var/spool/postfix", "run/dovecot",
                  "var/lib/dovecot", "run/samba", "var/lib/samba/private", "var/cache/samba",
                  "var/log/samba"):
            make_dir(r / d)
        make_dir(r / "var/lib/postfix", 0o700, "postfix")
        make_dir(self.pg_socket_dir, 0o2775, "postgres", "postgres")
        self.logs.mkdir(parents=True, exist_ok=True)

    def prepare_data(self) -> None:
        """The data set as the box lays it out when a role is first taken on it."""
        make_dir(self.data_root)
        servicedata.prepare(self.data_root, f"{self.hostname}.{self.domain}", self.postfix_dir)
        (self.data_root / paths.WEB_ROOT / "index.html").write_text("<h1>Shop</h1>\n")
        make_dir(self.data_root / paths.DATASET_META)

    @property
    def tls_dir(self) -> Path:
        return servicedata.tls_dir(self.data_root)

    # -- services

    def _define(self) -> None:
        p = self.ports
        self.services = {
            "postgresql": Service(
                "postgresql",
                ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
                 str(PG_BIN / "postgres"), "-c",
                 f"config_file={self.conf('etc/postgresql/15/main/postgresql.conf')}"],
                ready=self._postgres_ready, stop_signal=signal.SIGINT),
            "dovecot": Service(
                "dovecot", ["dovecot", "-F", "-c", str(self.conf("etc/dovecot/dovecot.conf"))],
                ready=lambda: port_open(p["imap"]) and (
                    self.run_root / "var/spool/postfix/private/dovecot-lmtp").exists()),
            "postfix": Service(
                "postfix", ["postfix", "-c", str(self.postfix_dir), "start-fg"],
                ready=lambda: port_open(p["smtp"]),
                group=lambda child: self._postfix_master(),
                before_start=lambda: proc.run(["postfix", "-c", self.postfix_dir, "check"])),
            "nginx": Service(
                "nginx", ["nginx", "-c", str(self.conf("etc/nginx/nginx.conf")), "-e", "stderr",
                          "-g", "daemon off;"],
                ready=lambda: port_open(p["http"]) and port_open(p["https"])),
            "samba": Service(
                "samba", ["smbd", "--foreground", "--no-process-group", "-s",
                          str(self.conf("etc/samba/smb.conf")), "--debug-stdout"],
                ready=lambda: port_open(p["smb"])),
        }

    def _postgres_ready(self) -> bool:
        try:
            self.admin_db().close()
            return True
        except psycopg2.Error:
            return False

    def _postfix_master(self) -> int | None:
        # `postfix start-fg` runs master in a session of its own: find it by its pid file.
        pid_file = self.run_root / "var/spool/postfix/pid/master.pid"
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, name: str) -> None:
        service = self.services[name]
        if service.child is not None and service.child.poll() is None:
            return
        service.before_start()
        service.child = proc.spawn(service.argv, log_file=self.logs / f"{name}.log", die_with_parent=True)
        service.paused = False
        wait_for(name, service.ready, log_file=self.logs / f"{name}.log", child=service.child)

    def stop(self, name: str, grace: float = 15.0) -> None:
        """Stop a service and every process it started; SIGKILL what is left after `grace`."""
        service = self.services[name]
        child = service.child
        if child is None:
            return
        pgids = {child.pid, service.group(child)} - {None}
        for pgid in pgids:
            _signal_group(pgid, signal.SIGCONT)
            _signal_group(pgid, service.stop_signal)
        deadline = time.monotonic() + grace
        while any(_group_alive(g) for g in pgids if g is not None) and time.monotonic() < deadline:
            child.poll()  # reap it, so it does not linger as a zombie
            time.sleep(0.1)
        for pgid in pgids:
            _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)
        service.child = None
        service.paused = False

    def pause(self, name: str) -> None:
        """Hang a service: SIGSTOP its whole process group (its ports still accept connections)."""
        service = self.services[name]
        assert service.child is not None
        _signal_group(service.group(service.child), signal.SIGSTOP)
        service.paused = True

    def resume(self, name: str) -> None:
        service = self.services[name]
        assert service.child is not None
        _signal_group(service.group(service.child), signal.SIGCONT)
        service.paused = False

    def reload(self, name: str) -> None:
        """Make a service read its configuration (and certificates) again."""
        if name == "postfix":
            proc.run(["postfix", "-c", self.postfix_dir, "reload"])
            return
        service = self.services[name]
        assert service.child is not None
        os.kill(service.child.pid, signal.SIGHUP)

    def start_all(self) -> None:
        for name in SERVICES:
            self.start(name)

    def stop_all(self) -> None:
        for name in reversed(SERVICES):
            if name in self.services:
                self.stop(name)

    def ensure_running(self) -> None:
        """Undo a test's stop or pause: every service up and answering."""
        for name in SERVICES:
            service = self.services[name]
            if service.paused:
                self.resume(name)
            self.start(name)

    # -- whole lifecycle

    def up(self) -> None:
        self.render()
        self.prepare_runtime()
        self.prepare_data()
        self._define()
        self.start_all()
        self.setup_verifier()

    # -- the verifier against this stack

    @property
    def environment(self) -> environment.Environment:
        return environment.Environment(
            data_root=self.data_root, domain=self.domain, hostname=self.hostname,
            config_root=self.config_root,
            db=environment.DbAdmin(socket_dir=self.pg_socket_dir, port=self.ports["postgresql"]))

    def setup_verifier(self) -> list[str]:
        return environment.ensure(self.environment)

    def targets(self, **overrides: Any) -> Targets:
        values: dict[str, Any] = dict(
            role=self.role, hostname=self.hostname, address="127.0.0.1", layout=self.layout,
            settings=Settings(), ports=self.ports, probe_timeout_s=5.0, filesystems=(self.data_root,),
            units=NoFailedUnits(), clock_synchronized=lambda: True)
        values.update(overrides)
        return Targets(**values)

    def publisher(self, notify_to: str | None = None, **overrides: Any) -> Publisher:
        notifier = None
        if notify_to:
            notifier = MailNotifier(recipient=notify_to, sender=f"atlas-verify@{self.domain}",
                                    host="127.0.0.1", port=self.ports["smtp"])
        values: dict[str, Any] = dict(layout=self.layout, journal=self.journal.append,
                                      notifier=notifier)
        values.update(overrides)
        return Publisher(**values)

    def cycle(self, publisher: Publisher | None = None, **target_overrides: Any) -> Cycle:
        return run_once(self.targets(**target_overrides), publisher or self.publisher())

    # -- administration, as provisioning or a user would

    def admin_db(self, dbname: str = "postgres") -> Any:
        conn = psycopg2.connect(host=str(self.pg_socket_dir), port=self.ports["postgresql"],
                                user="postgres", dbname=dbname, connect_timeout=3)
        conn.autocommit = True
        return conn

    def add_mail_user(self, address: str, password: str) -> None:
        users = self.data_root / paths.MAIL_USERS
        with users.open("a") as f:
            f.write(f"{address}:{environment.ssha512(password)}\n")
        recipients = self.data_root / paths.MAIL_RECIPIENTS
        with recipients.open("a") as f:
            f.write(f"{address} OK\n")
        proc.run(["postmap", "-c", self.postfix_dir, f"hash:{recipients}"])
        time.sleep(environment.PASSWD_FILE_RESCAN_S)


class NoFailedUnits:
    """The systemd layer for a host without systemd as PID 1: reports whatever it is told."""

    def __init__(self, failed: list[str] | None = None) -> None:
        self.failed = list(failed or [])

    def failed_units(self) -> list[str]:
        return list(self.failed)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@contextlib.contextmanager
def running_stack() -> Iterator[ServiceStack]:
    """A data set and a full stack on it in a private temp dir, all torn down whatever happens.

    Not under pytest's temp root: pytest puts that back to mode 0700 whenever any pytest
    session starts (another developer's, CI's), which would lock the services' own users
    (postgres, www-data, mail, dovecot) out of their files in the middle of a run.
    """
    root = Path(tempfile.mkdtemp(prefix="atlas-services-", dir="/tmp"))
    open_for_services(root)
    had_user = _user_exists(account.UNIX_USER)
    stack = ServiceStack(root)
    dataset = LoopRaid1(root, stack.data_root)
    try:
        dataset.create()
        stack.up()
        yield stack
    finally:
        stack.stop_all()
        dataset.destroy()
        if not os.path.ismount(dataset.mountpoint):
            shutil.rmtree(root, ignore_errors=True)
        if not had_user and _user_exists(account.UNIX_USER):
            # verify setup made the system user on this host: take it away again.
            proc.run(["userdel", account.UNIX_USER], ok_codes=proc.ANY_EXIT)
