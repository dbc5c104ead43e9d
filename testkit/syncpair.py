"""A primary and a secondary for the Synchronizer's tests and benchmark: each with its stores
on its own real btrfs (loop device), and a private sshd on 127.0.0.1 that lets the cluster's
sync key in only for `sync-serve` — the same authorized_keys line the primary gets on the box.

Nothing here touches the host's sshd: the private sshd has its own config, host keys (the
cluster's primary keys, pinned in the data set's known_hosts), port and authorized_keys,
and is killed at teardown with every session it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from atlas_services import cluster, dataset, proc
from atlas_services.paths import Layout
from atlas_services.peer import keys
from atlas_services.peer.client import Target, ssh_argv
from atlas_services.roles import Role
from atlas_services.store.config import ConfigStore
from atlas_services.store.modules import ModuleStore
from atlas_services.sync import session, state
from atlas_services.sync.secondary import HookResult, Hooks
from testkit.bundles import make_bundle
from testkit.clusters import make_cluster
from testkit.disks import loop_btrfs
from testkit.net import free_port
from testkit.repo import REPO, TEST_PUB

SSHD = Path("/usr/sbin/sshd")
FS_SIZE = "1G"  # sparse; room for the 10,000-file tree and the big streams


class Unavailable(Exception):
    """This host cannot run a pair (not root, no sshd)."""


# ---------------------------------------------------------------- a fake system root


def fake_system_root(dest: Path, *, kernel: str | None = None,
                     package_versions: dict[str, str] | None = None) -> Path:
    """The host's dpkg database, kernel and hardware facts copied below dest (a server's
    root), with the given changes: what its environment manifest reads. Again on the same
    root, it replaces what was there."""
    dpkg = Layout.under(dest).dpkg_admindir
    dpkg.mkdir(parents=True, exist_ok=True)
    status = Path("/var/lib/dpkg/status").read_text()
    for name, version in (package_versions or {}).items():
        block_start = status.index(f"\nPackage: {name}\n")
        version_at = status.index("\nVersion: ", block_start)
        line_end = status.index("\n", version_at + 1)
        status = status[:version_at] + f"\nVersion: {version}" + status[line_end:]
    (dpkg / "status").write_text(status)
    kernel_dir = dest / "proc/sys/kernel"
    kernel_dir.mkdir(parents=True, exist_ok=True)
    release = kernel or Path("/proc/sys/kernel/osrelease").read_text().strip()
    (kernel_dir / "osrelease").write_text(release + "\n")
    (kernel_dir / "version").write_text(Path("/proc/sys/kernel/version").read_text())
    for name in ("cpuinfo", "meminfo"):
        (dest / "proc" / name).write_text(Path("/proc", name).read_text())
    for nic in sorted(Path("/sys/class/net").iterdir()):
        if not (nic / "device").exists():
            continue
        copy = dest / "sys/class/net" / nic.name
        (copy / "device").mkdir(parents=True, exist_ok=True)
        driver = nic / "device/driver"
        if driver.is_symlink() and not (copy / "device/driver").is_symlink():
            (copy / "device/driver").symlink_to(driver.readlink())
        (copy / "address").write_text((nic / "address").read_text())
    for disk in sorted(Path("/sys/block").iterdir()):
        if not (disk / "device").exists():
            continue
        copy = dest / "sys/block" / disk.name
        (copy / "device").mkdir(parents=True, exist_ok=True)
        (copy / "queue").mkdir(exist_ok=True)
        (copy / "size").write_text((disk / "size").read_text())
        (copy / "queue/rotational").write_text((disk / "queue/rotational").read_text())
    return dest


def serve_command(root: Path) -> str:
    """`atlas sync-serve` of the server whose tree is below `root`: the forced command."""
    return (f"/usr/bin/env PYTHONPATH={REPO} /usr/bin/python3 -m atlas_services --root {root} "
            "sync-serve")


# ---------------------------------------------------------------- the private sshd


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class PrivateSshd:
    """/usr/sbin/sshd -D on 127.0.0.1:<free port>, with its own config and host keys."""

    def __init__(self, directory: Path, host_keys: list[Path]) -> None:
        self.directory = directory
        self.host_keys = host_keys
        self.port = free_port()
        self.authorized_keys_dir = directory / "authorized_keys"
        self.authorized_keys_dir.mkdir(mode=0o755)
        self.log = directory / "sshd.log"
        self.child: subprocess.Popen[bytes] | None = None

    def config(self) -> Path:
        lines = [f"Port {self.port}", "ListenAddress 127.0.0.1", "AddressFamily inet",
                 *(f"HostKey {k}" for k in self.host_keys),
                 f"PidFile {self.directory / 'sshd.pid'}",
                 f"AuthorizedKeysFile {self.authorized_keys_dir}/%u",
                 "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
                 "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
                 "StrictModes yes", "PrintMotd no", "LogLevel VERBOSE",
                 "Subsystem sftp /usr/lib/openssh/sftp-server", ""]
        path = self.directory / "sshd_config"
        path.write_text("\n".join(lines))
        return path

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        config = self.config()
        proc.run([SSHD, "-t", "-f", config])
        self.child = proc.spawn([SSHD, "-D", "-e", "-f", config], log_file=self.log, die_with_parent=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.child.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.child is None:
            return
        sessions = _children(self.child.pid)
        proc.terminate(self.child, grace=5)
        for pid in sessions:  # each session is its own process group (sshd calls setsid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        self.child = None

    def restart_with(self, host_keys: list[Path]) -> None:
        self.stop()
        self.host_keys = host_keys
        self.start()


# ---------------------------------------------------------------- the two servers


def small_tree(root: Path, motd: str = "hello") -> Path:
    """A configuration tree without service templates: apply renders it with no checker."""
    (root / "templates/etc").mkdir(parents=True)
    (root / "atlas.json").write_text('{"admin_email": "owner@example.com"}\n')
    (root / "templates/etc/motd.j2").write_text(motd + " from {{ hostname }} ({{ role }})\n")
    return root


@dataclass
class Server:
    root: Path  # a btrfs of its own: the server's whole tree (its stores, data set, role.json)
    role: Role

    @property
    def layout(self) -> Layout:
        return Layout.under(self.root)

    @property
    def config(self) -> ConfigStore:
        return ConfigStore(self.layout.config_store)

    @property
    def modules(self) -> ModuleStore:
        return ModuleStore(self.layout.module_store, self.layout.formats_file)

    @property
    def data(self) -> Path:
        return self.layout.data_root

    @property
    def role_file(self) -> Path:
        return self.layout.role_file

    @property
    def results(self) -> Path:
        return self.layout.verify_latest

    @property
    def update_record(self) -> Path:
        return self.layout.update_record

    def install(self, archive: Path, *, select: bool = False) -> None:
        manifest = self.modules.install(archive, None, TEST_PUB)
        if select:
            self.modules.select(manifest.name, manifest.version)

    def commit(self, relative: str, text: str, message: str = "change") -> int:
        path = self.config.work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return self.config.commit(message).number


@dataclass
class Pair:
    primary: Server
    secondary: Server
    sshd: PrivateSshd
    cluster_dir: Path
    tmp: Path
    applied: list[int] = field(default_factory=list)

    @property
    def target(self) -> Target:
        from atlas_services.peer.client import target_from_dataset

        return target_from_dataset(self.secondary.layout, address="127.0.0.1", port=self.sshd.port)

    @property
    def layout(self) -> Layout:
        """The secondary's: where a sync reads and writes."""
        return self.secondary.layout

    def serve_command(self, *, wrapper: str = "") -> str:
        command = serve_command(self.primary.root)
        return wrapper.format(command=command) if wrapper else command

    def authorize(self, *, wrapper: str = "", sources: list[str] | None = None) -> Path:
        """The primary's authorized_keys line for the sync key, as role apply writes it."""
        return keys.install_sync_access(self.primary.layout, target_dir=self.sshd.authorized_keys_dir,
                                          command=self.serve_command(wrapper=wrapper),
                                          sources=["127.0.0.1"] if sources is None else sources)

    def hooks(self) -> Hooks:
        target_root = self.tmp / "secondary-etc"

        def apply_config(store: ConfigStore, generation: int) -> str:
            from atlas_services.render import standard_context
            from atlas_services.store import apply

            context = standard_context(role="secondary", hostname="shop2", data_root="/srv/atlas",
                                       settings={}, domain="shop.test", address="127.0.0.1", prefix=8,
                                       gateway="", dns=[])
            apply.apply(store, generation, layout=Layout.under(target_root), context=context)
            self.applied.append(generation)
            return f"applied generation {generation}"

        def verify_setup() -> HookResult:
            return HookResult(True, True, "ok")
        return Hooks(apply_config=apply_config, verify_setup=verify_setup)

    def sync(self) -> state.SyncState:
        return session.run(self.target, self.layout, self.hooks())

    def ssh(self, request: str, *, target: Target | None = None,
            extra: list[str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """Raw ssh with the sync key, as an attacker holding it would try."""
        argv = ssh_argv(target or self.target, [request])
        if extra:
            argv = [argv[0], *extra, *argv[1:]]
        return subprocess.run(argv, capture_output=True, check=False, timeout=60)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`atlas sync ...` on the secondary, pointed at its stores."""
        return subprocess.run(
            [sys.executable, "-m", "atlas_services", "--root", str(self.secondary.root), "sync",
             *(() if "--primary" in args else ("--primary", f"127.0.0.1:{self.sshd.port}")), *args],
            capture_output=True, text=True, check=False, cwd=REPO, env={**os.environ, **(env or {})},
            timeout=300)


def _provision(root: Path, cluster_dir: Path, role: Role) -> None:
    the_cluster = cluster.load(cluster_dir)
    plan = dataset.Plan(cluster=the_cluster, cluster_dir=cluster_dir, role=role, devices=(), wipe=False)
    root.mkdir(parents=True)
    dataset._write_meta(root, plan)


def check_available() -> None:
    if os.geteuid() != 0:
        raise Unavailable("real btrfs, loop devices and an sshd need root")
    if not SSHD.exists():
        raise Unavailable("openssh-server is not installed (run ci/setup)")


@contextlib.contextmanager
def make_pair(tmp_path: Path) -> Iterator[Pair]:
    """Primary and secondary, both seeded as at first boot (each its own generation 1 and
    demo 1.0), the primary serving through the private sshd."""
    check_available()
    run_dir = Path(tempfile.mkdtemp(prefix="atlas-test-sshd-", dir="/run"))
    try:
        with loop_btrfs("primary", FS_SIZE) as proot, loop_btrfs("secondary", FS_SIZE) as sroot:
            cluster_dir = tmp_path / "cluster"
            make_cluster(cluster_dir)
            servers = []
            for root, role in ((proot, Role.PRIMARY), (sroot, Role.SECONDARY)):
                server = Server(root, role)
                _provision(server.data, cluster_dir, role)
                server.role_file.parent.mkdir(parents=True)
                server.role_file.write_text(json.dumps({"role": role}) + "\n")
                fake_system_root(root)
                server.config.init(small_tree(tmp_path / f"default-{role}"))
                server.install(make_bundle(tmp_path / role, "1.0"), select=True)
                servers.append(server)
            sshd = PrivateSshd(run_dir, cluster.host_key_files(cluster_dir, Role.PRIMARY))
            the_pair = Pair(servers[0], servers[1], sshd, cluster_dir, tmp_path)
            the_pair.authorize()
            sshd.start()
            try:
                yield the_pair
            finally:
                sshd.stop()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


