"""The secondary's side of the wire: ssh to the primary with the cluster's sync key, the
primary's host key pinned, and every failure told apart.

ssh exits 255 when it could not reach or trust the primary (transport); anything else is
the exit code of `sync-serve` on the primary (2: it refused the request, 1: it failed).
The host key is checked against the data set's known_hosts only (the user's and the
system's known_hosts and ssh_config are not read), looked up under the primary's host name
(HostKeyAlias), so an address or port change never weakens the pin.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas_services import cluster, dataset, proc, untrusted
from atlas_services.errors import EXIT_REFUSED, Refused
from atlas_services.paths import Layout
from atlas_services.peer.failures import Kind, SyncError
from atlas_services.roles import Role

CONNECT_TIMEOUT_S = 10
# A peer that stops answering is given up after ServerAliveInterval × ServerAliveCountMax.
ALIVE_INTERVAL_S = 10
ALIVE_COUNT = 3
JSON_TIMEOUT_S = 120
TRANSPORT_EXIT = 255

_HOST_KEY_PATTERNS = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed",
                      "No ED25519 host key is known", "host key is known for", "Host key for")
_UNREACHABLE_PATTERNS = ("Connection refused", "Connection timed out", "No route to host",
                         "Network is unreachable", "Could not resolve", "Name or service not known",
                         "Operation timed out", "port 22: Connection")
_AUTH_PATTERNS = ("Permission denied",)


@dataclass(frozen=True)
class Target:
    """How to reach the primary: address and port, the name its host key is pinned under,
    the sync key, and the pinned known_hosts (both from the data set)."""

    address: str
    port: int
    host_key_alias: str
    identity_file: Path
    known_hosts: Path
    user: str = "root"
    role: Role = Role.PRIMARY  # the peer's role, for messages ("the secondary … is unreachable")

    def describe(self) -> str:
        port = f":{self.port}" if self.port != 22 else ""
        return f"{self.host_key_alias} ({self.address}{port})"


def target_from_dataset(layout: Layout = Layout(), *, address: str | None = None,
                        port: int = 22, role: Role = Role.PRIMARY) -> Target:
    """The primary (or, for `atlas failover prepare`, the secondary) as the data set
    describes it (cluster.json, secrets/). `address` overrides where to connect (the host
    key stays pinned to the role's name)."""
    data_root = layout.data_root
    try:
        peer = cluster.on_dataset(data_root).identities[role]
    except cluster.NoCluster as err:
        raise SyncError(Kind.SETUP, err.what,
                        "the Synchronizer runs on a secondary with its data set mounted") from None
    except Refused as err:
        raise SyncError(Kind.SETUP, err.what, err.hint) from None
    secrets = dataset.secrets(data_root)
    key, known_hosts = secrets / dataset.SYNC_KEY_NAME, secrets / dataset.KNOWN_HOSTS
    for needed in (key, known_hosts):
        # ssh reads these: a FIFO or a link to a device there would hang or mislead it.
        try:
            untrusted.require_regular(needed, below=data_root)
        except FileNotFoundError:
            raise SyncError(Kind.SETUP, f"the data set lacks {needed}",
                            "re-provision the data set from the cluster directory") from None
        except OSError as err:
            raise SyncError(Kind.SETUP, f"{needed} on the data set is unusable: "
                            f"{untrusted.describe(err)}",
                            "re-provision the data set from the cluster directory") from None
    return Target(address=address or peer.ip, port=port, host_key_alias=peer.hostname,
                  identity_file=key, known_hosts=known_hosts, role=role)


def ssh_argv(target: Target, request: Sequence[str], *, control: Path | None = None,
             master: bool = False) -> list[str]:
    """ssh to the target running `request` there; through the connection of the master at
    `control` if it is up (else ssh connects on its own), or as that master (`master`)."""
    options = {
        "BatchMode": "yes", "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": str(target.known_hosts), "GlobalKnownHostsFile": "/dev/null",
        "HostKeyAlias": target.host_key_alias, "CheckHostIP": "no", "UpdateHostKeys": "no",
        "IdentitiesOnly": "yes", "IdentityAgent": "none", "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no", "ClearAllForwardings": "yes", "RequestTTY": "no",
        "ConnectTimeout": str(CONNECT_TIMEOUT_S), "ServerAliveInterval": str(ALIVE_INTERVAL_S),
        "ServerAliveCountMax": str(ALIVE_COUNT), "LogLevel": "ERROR",
        "ControlMaster": "yes" if master else "no",
    }
    if control is not None:
        options |= {"ControlPath": str(control), "ControlPersist": "no"}
    argv = ["ssh", "-F", "/dev/null", "-T", "-x", "-a", "-i", str(target.identity_file),
            "-p", str(target.port), "-l", target.user]
    for key, value in options.items():
        argv += ["-o", f"{key}={value}"]
    if master:
        return [*argv, "-N", "--", target.address]
    # sshd joins the words with spaces into SSH_ORIGINAL_COMMAND; sync-serve parses that.
    return [*argv, "--", target.address, " ".join(request)]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def classify(target: Target, returncode: int, stderr: str, request: Sequence[str]) -> SyncError:
    """Turn a failed ssh run into a SyncError whose kind says what happened."""
    detail = _last_line(stderr)
    what = " ".join(request)
    if returncode == TRANSPORT_EXIT:
        if any(p in stderr for p in _HOST_KEY_PATTERNS):
            return SyncError(Kind.HOST_KEY, f"the host key of {target.describe()} is not the {target.role}'s "
                             "key pinned on the data set: possible impostor, sync refused",
                             f"if the {target.role}'s keys were really replaced, re-provision the data sets "
                             "from the cluster directory; otherwise find out who answers at that address")
        if any(p in stderr for p in _AUTH_PATTERNS):
            return SyncError(Kind.AUTH, f"the {target.role} {target.describe()} did not accept the cluster's "
                             f"sync key ({detail})",
                             f"is it running as {target.role} with this cluster's data set?")
        if any(p in stderr for p in _UNREACHABLE_PATTERNS) or not detail:
            return SyncError(Kind.UNREACHABLE, f"the {target.role} {target.describe()} is unreachable"
                             + (f" ({detail})" if detail else ""),
                             "check that it is powered on and on the network; the last good state is kept")
        return SyncError(Kind.TRANSPORT, f"the connection to the {target.role} {target.describe()} failed "
                         f"during '{what}': {detail}", "the next sync retries")
    if returncode == EXIT_REFUSED:
        return SyncError(Kind.REFUSED, f"the {target.role} refused '{what}': {detail}",
                         "the two servers may run different ATLAS versions")
    return SyncError(Kind.REMOTE_FAILED, f"the {target.role} failed '{what}' (exit {returncode}): {detail}",
                     f"see the {target.role}'s journal")


class Client:
    """Calls to sync-serve on the primary. With `multiplex`, the first call opens one
    authenticated connection (an ssh control master) that every later call of this sync
    shares: one key exchange per sync instead of one per call. `close()` ends it.

    The master's socket lives in `workdir` (emptied first: what a killed sync left there is
    cleared by the next), else in a new temporary directory."""

    def __init__(self, target: Target, *, multiplex: bool = True, workdir: Path | None = None) -> None:
        self.target = target
        self.multiplex = multiplex
        self._given_workdir = workdir
        self._workdir: Path | None = None
        self._master: subprocess.Popen[bytes] | None = None

    def _control(self) -> Path | None:
        if not self.multiplex:
            return None
        if self._master is None:
            self._start_master()
        return self._workdir / "control" if self._workdir else None

    def _start_master(self) -> None:
        if self._given_workdir is not None:
            shutil.rmtree(self._given_workdir, ignore_errors=True)
            self._given_workdir.mkdir(mode=0o700, parents=True)
            self._workdir = self._given_workdir
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix="atlas-sync-"))
        control, log_file = self._workdir / "control", self._workdir / "master.log"
        self._master = proc.spawn(ssh_argv(self.target, [], control=control, master=True),
                                  log_file=log_file, die_with_parent=True,
                                  hint="openssh-client is needed")
        deadline = time.monotonic() + CONNECT_TIMEOUT_S + 5
        while not control.exists():
            code = self._master.poll()
            if code is not None:
                raise classify(self.target, code, log_file.read_text(errors="replace"), ["connect"])
            if time.monotonic() > deadline:
                raise SyncError(Kind.UNREACHABLE, f"the {self.target.role} {self.target.describe()} did not "
                                f"complete the SSH handshake in {CONNECT_TIMEOUT_S + 5} s",
                                "check that it is powered on and on the network")
            time.sleep(0.02)

    def close(self) -> None:
        if self._master is not None:
            proc.terminate(self._master, grace=2)
            self._master = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call_json(self, *request: str) -> Any:
        """Run a JSON verb and return the parsed reply."""
        argv = ssh_argv(self.target, request, control=self._control())
        try:
            result = proc.run(argv, ok_codes=proc.ANY_EXIT, timeout=JSON_TIMEOUT_S,
                              hint="openssh-client is needed")
        except proc.CommandFailed as err:
            raise SyncError(Kind.UNREACHABLE, f"the {self.target.role} {self.target.describe()} did not "
                            f"answer '{' '.join(request)}' in time ({err})",
                            "the next sync retries") from None
        if result.returncode != 0:
            raise classify(self.target, result.returncode, result.stderr, request)
        try:
            return untrusted.parse_json(result.stdout)
        except ValueError:
            raise SyncError(Kind.BAD_REPLY, f"the {self.target.role}'s reply to '{' '.join(request)}' is "
                            f"not JSON ({result.stdout[:80]!r})") from None

    def open_stream(self, *request: str) -> proc.Started:
        """Start a streaming verb; the caller reads `.stdout` and then calls `finish`."""
        return proc.start(ssh_argv(self.target, request, control=self._control()),
                          hint="openssh-client is needed")

    def stream_error(self, started: proc.Started, request: Sequence[str]) -> SyncError | None:
        """After `finish`: the error a streaming call ended with, if any."""
        code = started.child.returncode
        if code == 0:
            return None
        if code is not None and code < 0:
            return SyncError(Kind.TRANSPORT, f"ssh was killed during '{' '.join(request)}'")
        return classify(self.target, code if code is not None else TRANSPORT_EXIT, started.stderr(), request)
