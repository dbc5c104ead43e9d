"""btrfs subvolume operations for the stores (btrfsutil), and send/receive (btrfs CLI)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any, ClassVar

from atlas_services import proc
from atlas_services.errors import AtlasError, Refused

logger = logging.getLogger(__name__)

BTRFS_SUPER_MAGIC = 0x9123683E
# A version is built under a staging name and renamed into place when complete, so a
# name with this prefix (or a temp file of fsutil's) is never a finished version.
STAGING_PREFIX = ".staging-"
TEMP_MARK = ".tmp-"
# Copying a version through a stream file (the data set's config copies): local, small.
STREAM_TIMEOUT_S = 600


def _btrfsutil() -> Any:
    try:
        import btrfsutil
    except ImportError:
        raise AtlasError("python3-btrfsutil is not installed",
                         "it is the Debian package python3-btrfsutil: is the image complete?") from None
    return btrfsutil


class _StatFs(ctypes.Structure):
    # struct statfs on 64-bit Linux: f_type comes first; the rest is room enough.
    _fields_: ClassVar = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]


def fs_type(path: Path) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    buf = _StatFs()
    if libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return int(buf.f_type) & 0xFFFFFFFF


def is_btrfs(path: Path) -> bool:
    """Whether path (or its nearest existing parent) lives on btrfs."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return fs_type(probe) == BTRFS_SUPER_MAGIC


def require_btrfs(path: Path, what: str) -> None:
    if not is_btrfs(path):
        raise Refused(f"{what} {path} is not on btrfs",
                      "the versioned store needs a btrfs file system (the image's root is one)")


def is_subvolume(path: Path) -> bool:
    return bool(path.is_dir() and not path.is_symlink() and _btrfsutil().is_subvolume(str(path)))


def create(path: Path) -> None:
    _btrfsutil().create_subvolume(str(path))


def ensure(path: Path, what: str) -> None:
    """Make `path` a subvolume unless it is one; refuse a plain directory in its place."""
    require_btrfs(path.parent, what)
    if path.exists() or path.is_symlink():
        if not is_subvolume(path):
            raise Refused(f"{what} {path} exists but is not a btrfs subvolume",
                          "move it aside; the store creates its own subvolume there")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    create(path)


def snapshot(source: Path, target: Path, *, read_only: bool) -> None:
    _btrfsutil().create_snapshot(str(source), str(target), read_only=read_only)


def set_read_only(path: Path, read_only: bool = True) -> None:
    _btrfsutil().set_subvolume_read_only(str(path), read_only)


def is_read_only(path: Path) -> bool:
    return bool(_btrfsutil().get_subvolume_read_only(str(path)))


def delete(path: Path) -> None:
    """Delete a subvolume (read-only or not, with subvolumes nested in it)."""
    if not path.exists() and not path.is_symlink():
        return
    if is_subvolume(path):
        _btrfsutil().delete_subvolume(str(path), recursive=True)
    elif path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def sync(path: Path) -> None:
    """Commit the file system's transaction so a new subvolume survives a power loss."""
    _btrfsutil().sync(str(path))


def uuid(path: Path) -> str:
    info = _btrfsutil().subvolume_info(str(path))
    return bytes(info.uuid).hex()


def stream_identity(path: Path) -> str:
    """The UUID a `btrfs send` of this subvolume carries and `btrfs receive` finds parents by:
    its received UUID when it was itself received, else its own. Two copies with the same
    identity hold the same version, so either can be the parent of an incremental stream."""
    info = _btrfsutil().subvolume_info(str(path))
    received = bytes(info.received_uuid)
    return (received if any(received) else bytes(info.uuid)).hex()


def send_to_file(subvolume: Path, stream: Path, parent: Path | None = None) -> None:
    """Write a `btrfs send` stream of a read-only subvolume (incremental against `parent`)."""
    argv: list[str | os.PathLike[str]] = ["btrfs", "send", "-q", "-f", stream]
    if parent is not None:
        argv += ["-p", parent]
    proc.run([*argv, subvolume], timeout=STREAM_TIMEOUT_S, hint="btrfs-progs must be installed")


def receive_from_file(stream: Path, directory: Path) -> None:
    """`btrfs receive` a stream into directory (the subvolume keeps its sent name)."""
    proc.run(["btrfs", "receive", "-q", "-f", stream, directory], timeout=STREAM_TIMEOUT_S,
             hint="btrfs-progs must be installed")


_SUBVOLUME_ROOT_INO = 256  # every btrfs subvolume's root directory has this inode number


def is_finished(path: Path) -> bool:
    """Whether path is a finished version: a read-only subvolume. Ours are renamed into place
    only once read-only; `btrfs receive` sets read-only only when a stream is complete."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return st.st_ino == _SUBVOLUME_ROOT_INO and stat.S_ISDIR(st.st_mode) and is_read_only(path)


def finished_names(directory: Path, pattern: re.Pattern[str]) -> list[str]:
    """Names in directory that match pattern and are finished versions."""
    if not directory.is_dir():
        return []
    return [entry.name for entry in directory.iterdir()
            if pattern.fullmatch(entry.name) and is_finished(entry)]


def remove_staging(directory: Path, versions: re.Pattern[str] | None = None) -> list[str]:
    """Delete what an interrupted change left in a store directory: staging names, temp
    files, and (given the pattern of version names) versions whose receive never finished."""
    removed: list[str] = []
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        unfinished = (versions is not None and versions.fullmatch(entry.name) is not None
                      and not entry.is_symlink() and not is_finished(entry))
        if unfinished or entry.name.startswith(STAGING_PREFIX) or (
                entry.name.startswith(".") and TEMP_MARK in entry.name):
            delete(entry)
            removed.append(entry.name)
    if removed:
        logger.info("removed leftovers of an interrupted change in %s: %s", directory, ", ".join(removed))
    return removed
