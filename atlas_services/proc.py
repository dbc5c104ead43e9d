"""The one way ATLAS runs another program: argument lists, clean environment, one error report."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Callable, Container, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from atlas_services.errors import AtlasError

logger = logging.getLogger(__name__)

Argv = Sequence[str | os.PathLike[str]]

# Every program ATLAS waits for is killed after this long unless the caller gives its own
# limit: a hung mount, checker or systemctl ends in CommandFailed ("did not finish within
# N s"), which the caller records, instead of in a unit's timeout with nothing said. Only
# an explicit `timeout=None` (the image build's mkosi) waits without limit.
DEFAULT_TIMEOUT_S = 120.0

# Passed through from the caller's environment; everything else is dropped so a
# child behaves the same from a shell, a unit or a test.
_KEPT_VARIABLES = ("PATH", "HOME", "TERM", "TMPDIR", "SOURCE_DATE_EPOCH", "SSH_AUTH_SOCK")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in _KEPT_VARIABLES if k in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["LANG"] = "C.UTF-8"
    env.update(extra or {})
    return env


class CommandFailed(AtlasError):
    """A program ATLAS ran did not succeed; says how (not found, signal, exit code)."""

    def __init__(self, argv: Argv, how: str, output: str = "", hint: str | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.output = output
        self.returncode: int | None = None
        detail = output.strip().splitlines()[-1] if output.strip() else ""
        what = f"{self.argv[0]} {how}" + (f": {detail}" if detail else "")
        super().__init__(what, hint)


def _failure(argv: Argv, returncode: int, output: str, hint: str | None) -> CommandFailed:
    if returncode < 0:
        how = f"was killed by signal {signal.Signals(-returncode).name}"
    else:
        how = f"failed with exit code {returncode}"
    err = CommandFailed(argv, how, output, hint)
    err.returncode = returncode
    return err


# The Debian package each program ATLAS runs comes from: a program missing on the box means
# the image lacks that package (on a build or test host, ci/setup installs them).
PACKAGES = {
    "arping": "iputils-arping", "blkid": "util-linux", "btrfs": "btrfs-progs",
    "dpkg-query": "dpkg", "doveconf": "dovecot-core", "dovecot": "dovecot-core", "ip": "iproute2",
    "losetup": "mount", "mdir": "mtools", "mkfs.btrfs": "btrfs-progs", "mkosi": "mkosi",
    "mount": "mount", "networkctl": "systemd", "nginx": "nginx", "pdbedit": "samba-common-bin",
    "postconf": "postfix", "postmap": "postfix", "setpriv": "util-linux", "sfdisk": "fdisk",
    "smbclient": "smbclient", "smbpasswd": "samba-common-bin", "ssh": "openssh-client",
    "ssh-keygen": "openssh-client", "sshd": "openssh-server", "systemctl": "systemd",
    "testparm": "samba-common-bin", "umount": "mount", "wipefs": "util-linux",
}


def missing_hint(program: str) -> str:
    """What to do when `program` is not on this system."""
    package = PACKAGES.get(Path(program).name)
    if package is None:
        return "it is not on this system: is the image complete?"
    return f"it comes with the Debian package {package}: is the image complete?"


def _not_found(argv: Argv, hint: str | None) -> CommandFailed:
    return CommandFailed(argv, "was not found", hint=hint or missing_hint(str(argv[0])))


class _AnyExit(Container[int]):
    def __contains__(self, code: object) -> bool:
        return True


# ok_codes for a program whose exit code is itself the answer (the caller reads it).
ANY_EXIT: Container[int] = _AnyExit()


def _popen(argv: Argv, shown: str, *, hint: str | None, env: Mapping[str, str] | None,
           **options: Any) -> subprocess.Popen[Any]:
    """The one place a program starts: logged under --debug, a clean environment, a missing
    program reported as such."""
    logger.debug("$ %s%s", shlex.join(str(a) for a in argv), shown)
    try:
        return subprocess.Popen([str(a) for a in argv], env=clean_env(env), **options)
    except FileNotFoundError:
        raise _not_found(argv, hint) from None


def _complete(argv: Argv, *, input: str | bytes | None, text: bool, stdout: int | None,
              env: Mapping[str, str] | None, cwd: Path | None, timeout: float | None,
              hint: str | None, ok_codes: Container[int]) -> subprocess.CompletedProcess[Any]:
    """Run a program to its end (killed after `timeout` s); an exit code outside `ok_codes`
    raises CommandFailed with the last line it printed on stderr."""
    child = _popen(argv, "" if stdout is None else f" >&{stdout}", hint=hint, env=env, cwd=cwd,
                   stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                   stdout=subprocess.PIPE if stdout is None else stdout, stderr=subprocess.PIPE,
                   text=text)
    with child:
        try:
            out, err = child.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise CommandFailed(argv, f"did not finish within {timeout:g} s", hint=hint) from None
        except BaseException:
            child.kill()
            raise
    result: subprocess.CompletedProcess[Any] = subprocess.CompletedProcess(
        [str(a) for a in argv], child.returncode, out, err)
    if child.returncode not in ok_codes:
        stderr = err if isinstance(err, str) else (err or b"").decode(errors="replace")
        stdout_text = out if isinstance(out, str) else ""
        raise _failure(argv, child.returncode, stderr or stdout_text, hint)
    return result


def run(
    argv: Argv,
    *,
    input: str | bytes | None = None,
    ok_codes: Container[int] = (0,),
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    hint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program to completion, capturing its output as text.

    stdin is /dev/null unless `input` is given. An exit code outside `ok_codes` raises
    CommandFailed carrying the last line the program printed on stderr; with ANY_EXIT the
    caller reads `returncode` itself.
    """
    data = input.decode() if isinstance(input, bytes) else input
    return _complete(argv, input=data, text=True, stdout=None, env=env, cwd=cwd, timeout=timeout,
                     hint=hint, ok_codes=ok_codes)


def run_bytes(
    argv: Argv,
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    hint: str | None = None,
) -> bytes:
    """Run a program whose stdout is binary (a stream, an archive) and return it."""
    result = _complete(argv, input=input, text=False, stdout=None, env=env, cwd=None,
                       timeout=timeout, hint=hint, ok_codes=(0,))
    out: bytes = result.stdout
    return out


def stream(
    argv: Argv,
    *,
    on_line: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    hint: str | None = None,
) -> None:
    """Run a long program, handing each line of its combined output to `on_line` as it comes."""
    child = _popen(argv, "", hint=hint, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert child.stdout is not None
    tail: list[str] = []
    try:
        for line in child.stdout:
            line = line.rstrip("\n")
            tail = [*tail[-19:], line]
            on_line(line)
    except BaseException:
        # Interrupted (Ctrl-C, a failing callback): never leave the child running.
        child.kill()
        child.wait()
        raise
    returncode = child.wait()
    if returncode != 0:
        raise _failure(argv, returncode, "\n".join(tail), hint)


def replace_with(argv: Argv, *, env: Mapping[str, str] | None = None,
                 hint: str | None = None) -> None:
    """Replace this process with a program that takes over its stdin, stdout and stderr (the
    peer door handing its SSH channel to a sandboxed copy of itself). Returns only if the
    program could not be started, by raising CommandFailed."""
    logger.debug("exec %s", shlex.join(str(a) for a in argv))
    try:
        os.execve(str(argv[0]), [str(a) for a in argv], clean_env(env))
    except FileNotFoundError:
        raise _not_found(argv, hint) from None
    except OSError as err:
        raise CommandFailed(argv, f"could not be started: {err.strerror}", hint=hint) from None


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel kills it when its parent dies,
    # so a test runner that is itself killed leaves nothing behind.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Argv,
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    hint: str | None = None,
    die_with_parent: bool = False,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start a program in the background, in its own process group, output to log_file.

    `pass_fds` stay open in the program (a lock it holds for as long as it lives, say).
    The caller owns the process and must end it with `terminate`.
    """
    with log_file.open("ab") as output:
        child: subprocess.Popen[bytes] = _popen(
            argv, " &", hint=hint, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True, pass_fds=tuple(pass_fds),
            preexec_fn=_die_with_parent if die_with_parent else None)
        return child


def terminate(child: subprocess.Popen[bytes], grace: float = 10) -> None:
    """End a spawned program and its process group: SIGTERM, then SIGKILL after `grace` s."""
    if child.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_to_fd(
    argv: Argv,
    *,
    stdout: int,
    env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    hint: str | None = None,
) -> None:
    """Run a program whose output goes straight to an open file descriptor (a btrfs stream
    to a peer, say) without passing through Python; stderr is kept for the error report."""
    _complete(argv, input=None, text=False, stdout=stdout, env=env, cwd=None, timeout=timeout,
              hint=hint, ok_codes=(0,))


class Started:
    """A program started with `start`: the caller feeds its stdin or reads its stdout, then
    calls `finish`. stderr goes to an unnamed temporary file, so a chatty child can never
    block on a full pipe nobody reads."""

    def __init__(self, argv: Argv, child: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
        self.argv = [str(a) for a in argv]
        self.child = child
        self._stderr = stderr

    @property
    def stdin(self) -> IO[bytes]:
        assert self.child.stdin is not None, "started without stdin=PIPE"
        return self.child.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self.child.stdout is not None, "started without stdout=PIPE"
        return self.child.stdout

    def finish(self, timeout: float | None = None) -> int:
        """Wait for the program (killing it after `timeout` s) and return its exit code."""
        for stream in (self.child.stdin, self.child.stdout):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            return self.child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.child.wait()

    def kill(self) -> None:
        if self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.kill()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        self.kill()
        self.finish()
        self._stderr.close()

    def failure(self, hint: str | None = None) -> CommandFailed:
        """The CommandFailed this program's exit would raise (after `finish`)."""
        return _failure(self.argv, self.child.returncode, self.stderr(), hint)


def start(
    argv: Argv,
    *,
    stdin: int | IO[bytes] | None = None,
    stdout: int | IO[bytes] | None = None,
    env: Mapping[str, str] | None = None,
    hint: str | None = None,
) -> Started:
    """Start a program whose stdin and/or stdout the caller connects (subprocess.PIPE, a file
    or another program's pipe); stdin defaults to /dev/null, stdout to a pipe."""
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (Started owns and closes it)
    try:
        child: subprocess.Popen[bytes] = _popen(
            argv, " |", hint=hint, env=env, stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE if stdout is None else stdout, stderr=stderr)
    except CommandFailed:
        stderr.close()
        raise
    return Started(argv, child, stderr)
