"""Lab machines: a built ATLAS image booted in QEMU on a copy-on-write disk.

A Lab owns a work directory, a private Ethernet segment (testkit.lab.hub) and any number
of machines. Each machine has its own OS disk (a qcow2 overlay over the built image,
which is never written), data disks that are plain files and can be moved to another
machine between boots, its serial console in a log file, and SSH from the host on a
127.0.0.1 port (QEMU user networking with restrict=on: the guest reaches nothing).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas_services import proc
from atlas_services.errors import AtlasError
from testkit.lab import accel, hub
from testkit.lab.pace import PACE
from testkit.net import free_port

log = logging.getLogger("lab")

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
OS_DISK_SIZE = "8G"
# Guest ports the host reaches through QEMU's restricted user network (on 127.0.0.1).
FORWARDED = {"ssh": 22, "smtp": 25, "http": 80, "https": 443, "imap": 143, "smb": 445,
             "postgresql": 5432}
LAB_FILE = "lab.json"
BUSINESS_INTERFACE = "enp0s16"  # the segment NIC's name inside a lab machine
PROGRESS_EVERY = 10.0
# Two TCG guests already share this kind of machine's two cores; a third starves them all
# (boots 2-3x slower, timers late). The slots are host-wide: each QEMU holds an flock on
# one slot file for as long as it runs, whichever process (a test run, ci/lab) started it.
GUEST_SLOTS = 2
SLOT_DIR = Path("/run/atlas-lab")
# Base for a command run inside a guest (seconds on the reference machine; see pace).
COMMAND_BASE_S = 300.0


@dataclass(frozen=True)
class BuiltImage:
    """The outputs of build.py, as its manifest.json names them."""

    image: Path
    kernel: Path
    initrd: Path
    cmdline: str
    manifest: dict[str, Any]

    @classmethod
    def load(cls, output_dir: Path) -> BuiltImage:
        manifest_file = output_dir / "manifest.json"
        try:
            manifest = json.loads(manifest_file.read_text())
        except FileNotFoundError:
            raise AtlasError(f"no built image in {output_dir}", "run ./build.py first") from None
        return cls(image=output_dir / manifest["image"], kernel=output_dir / manifest["kernel"],
                   initrd=output_dir / manifest["initrd"],
                   cmdline=manifest["kernel_command_line"], manifest=manifest)


def pid_alive(pid: int) -> bool:
    """A process exists and is not a zombie (a lab left running by an earlier command)."""
    if pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def end_process(pid: int, grace: float = 5) -> None:
    """SIGTERM a process group we did not spawn in this process, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if not pid_alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def take_guest_slot(holder: str) -> int:
    """Lock a free guest slot and return the locked file's descriptor (hand it to QEMU, so
    the slot is held exactly as long as the guest runs). Refuses a third guest."""
    SLOT_DIR.mkdir(parents=True, exist_ok=True)
    holders = []
    for number in range(GUEST_SLOTS):
        slot = SLOT_DIR / f"guest-{number}"
        fd = os.open(slot, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holders.append(slot.read_text(errors="replace").strip() or "?")
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, holder.encode())
        return fd
    raise AtlasError(f"cannot start {holder}: {GUEST_SLOTS} lab guests already run on this host "
                     f"({'; '.join(holders)}), and a third would starve them of its cores",
                     "stop one first (ci/lab down, or wait for the running tests to finish)")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Machine:
    lab: Lab
    name: str
    index: int
    disks: list[Path] = field(default_factory=list)
    memory_mb: int = 2048
    cpus: int = 2
    boot: str = "direct"  # or "uefi"
    cmdline_extra: str = ""  # appended to the kernel command line (direct boot only)
    ports: dict[str, int] = field(default_factory=dict)  # service → host port on 127.0.0.1
    pid: int = 0
    qemu: subprocess.Popen[bytes] | None = None
    booted_at: float = 0.0
    boot_state: str = ""  # systemctl is-system-running once startup finished
    boot_seconds: float = 0.0  # host time from QEMU's start to that moment

    @property
    def directory(self) -> Path:
        return self.lab.workdir / self.name

    @property
    def serial_log(self) -> Path:
        return self.directory / "serial.log"

    @property
    def ssh_port(self) -> int:
        return self.ports.get("ssh", 0)

    @property
    def segment_mac(self) -> str:
        return f"52:54:00:a7:00:{self.index:02x}"

    def _os_disk(self) -> Path:
        overlay = self.directory / "os.qcow2"
        if not overlay.exists():
            proc.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                      "-b", self.lab.image.image, overlay, OS_DISK_SIZE])
        return overlay

    def _boot_args(self) -> list[str]:
        if self.boot == "uefi":
            variables = self.directory / "efivars.fd"
            if not variables.exists():
                shutil.copyfile(OVMF_VARS, variables)
            return ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                    "-drive", f"if=pflash,format=raw,file={variables}"]
        return ["-kernel", str(self.lab.image.kernel), "-initrd", str(self.lab.image.initrd),
                "-append", f"{self.lab.image.cmdline} {self.cmdline_extra}".strip()]

    def qemu_argv(self) -> list[str]:
        key = base64.b64encode(self.lab.public_key().encode()).decode()
        argv = [
            "qemu-system-x86_64", "-name", self.name, "-machine", "q35",
            *accel.accelerator(self.lab.image.kernel),
            "-smp", str(self.cpus), "-m", str(self.memory_mb),
            "-nodefaults", "-display", "none", "-serial", f"file:{self.serial_log}",
            "-rtc", "base=utc", "-device", "virtio-rng-pci",
            "-drive", f"if=none,id=os,file={self._os_disk()},format=qcow2,discard=unmap",
            "-device", "virtio-blk-pci,drive=os",
            # The private segment: frames go only to the lab's hub.
            "-netdev", f"dgram,id=seg,local.type=unix,local.path={self.lab.segment / (self.name + '.sock')},"
                       f"remote.type=unix,remote.path={self.lab.segment / hub.HUB_SOCKET}",
            # Fixed PCI slots give fixed interface names in the guest: enp0s16 on the
            # segment (the business network), enp0s17 for the host's way in.
            "-device", f"virtio-net-pci,netdev=seg,mac={self.segment_mac},addr=0x10",
            # The host's way in: forwarded SSH on loopback; restrict=on keeps the guest in.
            "-netdev", "user,id=mgmt,restrict=on," + ",".join(
                f"hostfwd=tcp:127.0.0.1:{self.ports[name]}-:{guest}"
                for name, guest in FORWARDED.items()),
            "-device", f"virtio-net-pci,netdev=mgmt,mac=52:54:00:a7:ff:{self.index:02x},addr=0x11",
            "-smbios", f"type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root={key}",
            *self._boot_args(),
        ]
        for number, disk in enumerate(self.disks):
            argv += ["-drive", f"if=none,id=data{number},file={disk},format=raw,cache=none",
                     "-device", f"virtio-blk-pci,drive=data{number},serial={disk.stem}"]
        return argv

    def start(self) -> None:
        if self.running():
            raise AtlasError(f"{self.name} is already running")
        # First of all: a third guest is refused before anything is made for it.
        slot = take_guest_slot(f"{self.name} of {self.lab.workdir}")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.lab.ensure_segment()
            (self.lab.segment / f"{self.name}.sock").unlink(missing_ok=True)
            self.ports = {name: free_port() for name in FORWARDED}
            self.serial_log.write_text("")
            log.info("lab: starting %s (disks: %s)", self.name,
                     ", ".join(d.name for d in self.disks) or "none")
            self.qemu = proc.spawn(self.qemu_argv(), log_file=self.directory / "qemu.log",
                                   die_with_parent=self.lab.die_with_parent, pass_fds=(slot,))
        finally:
            os.close(slot)  # QEMU holds the slot now; it is free again when QEMU exits
        self.pid = self.qemu.pid
        self.booted_at = time.monotonic()
        self.lab.save()

    def running(self) -> bool:
        if self.qemu is not None:
            return self.qemu.poll() is None
        return pid_alive(self.pid)

    def wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    def _check_alive(self) -> None:
        if not self.running():
            raise AtlasError(f"{self.name}'s QEMU exited; last console lines:\n"
                             f"{tail(self.serial_log)}\n{tail(self.directory / 'qemu.log', 5)}")

    def ssh_argv(self, command: str) -> list[str]:
        return ["ssh", "-i", str(self.lab.key), "-p", str(self.ssh_port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=6",
                "root@127.0.0.1", command]

    def ssh(self, command: str, *, check: bool = True, timeout: float | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside the machine as root (within `timeout` s, by default a
        limit sized from this run's pace)."""
        self._check_alive()
        return proc.run(self.ssh_argv(command), ok_codes=(0,) if check else proc.ANY_EXIT,
                        input=input,
                        timeout=timeout if timeout is not None else PACE.limit(COMMAND_BASE_S))

    def diagnose(self) -> str:
        """What an operator would look at first: the console's last lines and atlas status."""
        parts = [f"last console lines of {self.name}:\n{tail(self.serial_log, 25)}"]
        if not self.running():
            return "\n".join([*parts, f"{self.name}'s QEMU has exited:\n"
                               f"{tail(self.directory / 'qemu.log', 5)}"])
        try:
            status = proc.run(self.ssh_argv("atlas status; systemctl list-jobs --no-pager | head -n 15"),
                              ok_codes=proc.ANY_EXIT, timeout=60)
            parts.append(f"atlas status on {self.name}:\n{status.stdout}{status.stderr}".rstrip())
        except proc.CommandFailed as err:
            parts.append(f"atlas status on {self.name}: no answer over SSH ({err})")
        return "\n".join(parts)

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float) -> float:
        """Poll `ready()` until true, printing progress; returns seconds since boot.

        A command inside `ready` that does not finish in its own time (an SSH login on a
        guest still starting) counts as "not yet". Giving up says what was awaited, for how
        long, and what the guest's console and `atlas status` say."""
        started = time.monotonic()
        deadline = started + timeout
        last_report = started
        last_error = ""
        # A machine started by an earlier command (ci/lab) has no boot time here.
        since = self.booted_at or started
        while True:
            self._check_alive()
            try:
                if ready():
                    elapsed = time.monotonic() - since
                    log.info("lab: %s %s after %.1f s", self.name, what, elapsed)
                    return elapsed
            except proc.CommandFailed as err:
                last_error = str(err)
            now = time.monotonic()
            if now > deadline:
                raise AtlasError(f"{self.name}: not {what} after waiting {now - started:.0f} s "
                                 f"(limit {timeout:.0f} s, sized from this run's pace)"
                                 + (f"; last error: {last_error}" if last_error else "")
                                 + "\n" + self.diagnose())
            if now - last_report >= PROGRESS_EVERY:
                last_report = now
                log.info("lab: waiting for %s to be %s (%.0f s of at most %.0f s)", self.name,
                         what, now - started, timeout)
            time.sleep(1)

    def wait_ssh(self, timeout: float | None = None) -> float:
        def answers() -> bool:
            return self.ssh("true", check=False, timeout=30).returncode == 0
        return self.wait_for("answering SSH", answers, timeout or PACE.boot_limit())

    def wait_booted(self, timeout: float | None = None) -> str:
        """Wait until systemd has finished starting up; returns is-system-running's state.
        The boot's duration paces every later wait of this run."""
        limit = timeout or PACE.boot_limit()
        self.wait_ssh(limit)
        state = ""

        def settled() -> bool:
            nonlocal state
            state = self.ssh("systemctl is-system-running", check=False, timeout=60).stdout.strip()
            return state not in ("initializing", "starting", "")
        self.boot_seconds = self.wait_for("done booting", settled, limit)
        self.boot_state = state
        if self.booted_at:
            PACE.record_boot(self.boot_seconds)
        self.lab.save()
        return state

    def shutdown(self, timeout: float = 180) -> None:
        """Power off cleanly from inside; kill QEMU if the guest does not stop in time."""
        if not self.running():
            return
        if INTERRUPTED.is_set():
            self.kill()
            return
        log.info("lab: powering off %s", self.name)
        try:
            proc.run(self.ssh_argv("systemctl poweroff"), ok_codes=proc.ANY_EXIT, timeout=60)
        except proc.CommandFailed as err:
            log.warning("lab: %s did not take the poweroff request (%s)", self.name, err)
        if not self.wait_exit(timeout):
            log.warning("lab: %s did not power off within %.0f s, killing it", self.name, timeout)
            self.kill()
        self.pid = 0
        self.lab.save()

    def kill(self) -> None:
        """End QEMU now (it quits on SIGTERM; the guest is not asked)."""
        if self.qemu is not None:
            proc.terminate(self.qemu, grace=3)
        else:
            end_process(self.pid, grace=3)
        self.pid = 0

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "disks": [str(d) for d in self.disks], "pid": self.pid,
                "ports": self.ports, "boot": self.boot, "memory_mb": self.memory_mb,
                "cpus": self.cpus, "boot_seconds": self.boot_seconds}


# Set once the run is being interrupted: guests are killed, not powered off.
INTERRUPTED = threading.Event()
# Every lab this process made, so that an interrupted run can end all their QEMUs and hubs.
_LABS: weakref.WeakSet[Lab] = weakref.WeakSet()


def kill_everything() -> None:
    """End every guest and hub this process started, at once (Ctrl-C, SIGTERM)."""
    INTERRUPTED.set()
    for lab in list(_LABS):
        lab.close()


class Lab:
    """Machines on one private segment, under one work directory."""

    def __init__(self, workdir: Path, image: BuiltImage, *, die_with_parent: bool = True) -> None:
        """die_with_parent: QEMU and the hub are killed when this process dies (tests);
        a command that leaves a lab running for later commands passes False."""
        self.workdir = workdir
        self.image = image
        self.die_with_parent = die_with_parent
        self.machines: dict[str, Machine] = {}
        self.hub: subprocess.Popen[bytes] | None = None
        self.hub_pid = 0
        workdir.mkdir(parents=True, exist_ok=True)
        _LABS.add(self)
        self.key = workdir / "id_ed25519"
        if not self.key.exists():
            proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "atlas-lab",
                      "-f", self.key])

    @property
    def segment(self) -> Path:
        return self.workdir / "segment"

    def public_key(self) -> str:
        return self.key.with_suffix(".pub").read_text()

    def save(self) -> None:
        """Record the lab so that a later command (ci/lab status, down) can find it."""
        state = {"image_dir": str(self.image.image.parent), "hub_pid": self.hub_pid,
                 "machines": {name: m.to_json() for name, m in self.machines.items()}}
        (self.workdir / LAB_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, workdir: Path) -> Lab:
        """The lab an earlier command left in workdir (its QEMUs keep running)."""
        try:
            state = json.loads((workdir / LAB_FILE).read_text())
        except FileNotFoundError:
            raise AtlasError(f"no lab in {workdir}", "start one with 'ci/lab up'") from None
        lab = cls(workdir, BuiltImage.load(Path(state["image_dir"])), die_with_parent=False)
        lab.hub_pid = state["hub_pid"]
        for name, data in state["machines"].items():
            lab.machines[name] = Machine(lab, name, data["index"],
                                         [Path(d) for d in data["disks"]],
                                         memory_mb=data["memory_mb"], cpus=data["cpus"],
                                         boot=data["boot"], ports=data["ports"], pid=data["pid"],
                                         boot_seconds=data.get("boot_seconds", 0.0))
            # The boots of the command that started them pace this command's waits.
            PACE.record_boot(lab.machines[name].boot_seconds)
        return lab

    def ensure_segment(self) -> None:
        if (self.hub is not None and self.hub.poll() is None) or (
                self.hub is None and pid_alive(self.hub_pid)):
            return
        self.segment.mkdir(exist_ok=True)
        repo = Path(__file__).resolve().parents[2]
        self.hub = proc.spawn([sys.executable, "-m", "testkit.lab.hub", self.segment],
                              log_file=self.workdir / "hub.log",
                              env={"PYTHONPATH": str(repo)},
                              die_with_parent=self.die_with_parent)
        self.hub_pid = self.hub.pid
        deadline = time.monotonic() + 10
        while not (self.segment / hub.HUB_SOCKET).exists():
            if time.monotonic() > deadline or self.hub.poll() is not None:
                raise AtlasError(f"the lab's segment hub did not start: {tail(self.workdir / 'hub.log')}")
            time.sleep(0.05)

    def disk(self, name: str, size: str = "2G") -> Path:
        """A data disk: a sparse raw file that any machine of the lab can attach."""
        path = self.workdir / "disks" / f"{name}.img"
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            proc.run(["truncate", "-s", size, path])
        return path

    def machine(self, name: str, disks: list[Path] | None = None, **options: Any) -> Machine:
        if name in self.machines:
            raise AtlasError(f"the lab already has a machine called {name}")
        machine = Machine(self, name, len(self.machines) + 1, list(disks or []), **options)
        self.machines[name] = machine
        return machine

    def close(self) -> None:
        """Kill every QEMU and the hub. Safe to call more than once."""
        for machine in self.machines.values():
            machine.kill()
        if self.hub is not None:
            proc.terminate(self.hub, grace=1)
            self.hub = None
        else:
            end_process(self.hub_pid, grace=2)
        self.hub_pid = 0

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

