"""Moving a version between servers: the primary's `btrfs send` stream, read from ssh and fed
to `btrfs receive` on the secondary, straight into the store directory.

Only a complete stream becomes a version: `btrfs receive` creates the subvolume writable and
makes it read-only only after the stream's end command (a stream cut anywhere, even between
two commands, or with a bad checksum leaves it writable), and the stores count only
read-only subvolumes as versions. Whatever a failed receive left is deleted at once, and by
the next change to the store if the process was killed first. The receive runs chrooted
into the store directory (-C), so no stream can write outside it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from atlas_services import proc
from atlas_services.peer.client import Client
from atlas_services.peer.failures import Kind, SyncError
from atlas_services.store import subvol
from atlas_services.store.config import crashpoint

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
# After a receive that saw the stream end early, how long ssh may take to report why.
SSH_EXIT_GRACE_S = 10
# The stream has ended: btrfs receive only finishes writing it (a hung one is killed).
RECEIVE_FINISH_TIMEOUT_S = 300


@dataclass(frozen=True)
class Received:
    name: str
    bytes: int
    seconds: float
    incremental: bool


def receive_kind(stderr: str) -> Kind:
    """What a failed `btrfs receive` says happened."""
    text = stderr.lower()
    if "no space left" in text or "enospc" in text or "quota exceeded" in text:
        return Kind.DISK_FULL
    if "cannot find parent subvolume" in text or "could not find parent" in text:
        return Kind.UNKNOWN_PARENT
    if any(s in text for s in ("unexpected eof", "short read", "crc32 mismatch", "invalid",
                               "empty stream", "bad magic", "unknown command", "unsupported")):
        return Kind.CORRUPT_STREAM
    return Kind.RECEIVE_FAILED


_MESSAGES = {
    Kind.DISK_FULL: ("the secondary's disk is full", "free space under /var/lib/atlas; the last good "
                     "state is kept and the next sync completes"),
    Kind.UNKNOWN_PARENT: ("the stream is incremental against a version this server does not hold",
                          "the sync falls back to a full stream"),
    Kind.CORRUPT_STREAM: ("the stream is truncated or corrupt", "the last good state is kept; the next "
                          "sync fetches it again"),
    Kind.RECEIVE_FAILED: ("btrfs receive failed", "see the journal; the last good state is kept"),
}


def _names(directory: Path) -> set[str]:
    return {entry.name for entry in directory.iterdir()}


def _leftovers(directory: Path, before: set[str]) -> list[Path]:
    return [directory / n for n in sorted(_names(directory) - before)]


def _discard(paths: list[Path]) -> None:
    for path in paths:
        try:
            subvol.delete(path)
        except OSError as err:  # e.g. still busy: the next change to the store removes it
            logger.warning("could not remove %s after a failed receive: %s", path, err)


def receive(source: IO[bytes], directory: Path, name: str, what: str) -> int:
    """Feed the btrfs stream read from `source` to `btrfs receive` in `directory`; it must
    create exactly `name`, complete and read-only. Returns the stream's size in bytes.
    On failure nothing new is left in `directory` and SyncError says why."""
    before = _names(directory)
    if name in before:
        raise SyncError(Kind.RECEIVE_FAILED, f"{directory / name} exists already")
    receiver = proc.start(["btrfs", "receive", "-q", "-C", directory], stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, hint="btrfs-progs must be installed")
    total = 0
    try:
        fd = source.fileno()
        while chunk := os.read(fd, CHUNK):
            try:
                receiver.stdin.write(chunk)
            except BrokenPipeError:
                break  # receive gave up; its exit code and stderr say why
            total += len(chunk)
            crashpoint("sync-receive")
        with contextlib.suppress(BrokenPipeError):
            receiver.stdin.close()
        code = receiver.finish(timeout=RECEIVE_FINISH_TIMEOUT_S)
        stderr = receiver.stderr()
    finally:
        receiver.close()
    made = directory / name
    if code == 0 and subvol.is_finished(made) and _names(directory) - before == {name}:
        return total
    _discard(_leftovers(directory, before))
    if code == 0:
        raise SyncError(Kind.CORRUPT_STREAM, f"{what}: the stream did not make {name} in {directory}")
    kind = receive_kind(stderr)
    text, hint = _MESSAGES[kind]
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {code}"
    raise SyncError(kind, f"{what}: {text} ({detail})", hint)


def fetch(client: Client, request: list[str], directory: Path, name: str, *, incremental: bool) -> Received:
    """Run a streaming verb on the primary and receive its stream into `directory/name`.

    A transport failure (ssh) is reported as such even when the cut stream made the
    receive fail too; a receive failure of its own (disk full, unknown parent) stops ssh.
    """
    what = " ".join(request)
    start = time.monotonic()
    stream = client.open_stream(*request)
    try:
        try:
            size = receive(stream.stdout, directory, name, what)
        except SyncError as err:
            if err.kind is Kind.CORRUPT_STREAM:
                stream.finish(timeout=SSH_EXIT_GRACE_S)  # a cut connection explains a cut stream
                ssh_error = client.stream_error(stream, request)
                if ssh_error is not None:
                    raise ssh_error from None
            raise
        stream.finish(timeout=SSH_EXIT_GRACE_S)
        ssh_error = client.stream_error(stream, request)
        if ssh_error is not None:
            # The stream was complete (receive checked its end): the version is good.
            logger.warning("%s: the stream was complete, but ssh then reported: %s", what, ssh_error)
    finally:
        stream.close()
    return Received(name, size, time.monotonic() - start, incremental)
