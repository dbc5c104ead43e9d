"""Reading what a data set or a peer says: no symlink followed, nothing but regular files,
never more than a cap, and JSON that cannot blow the parser's stack.

A data set travels between machines and anyone may have written it: a `volume.json` that
is a FIFO would hang role detection, one that links to /dev/zero would eat the memory, a
JSON document nested ten thousand deep raises RecursionError inside `json.loads`. Every
reader of such a file goes through here and gets an OSError or a ValueError it already
handles as "unreadable".
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

# Small files the box reads from a data set or a peer (volume.json, cluster.json, keys).
SMALL = 64 * 2**10

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(relative: str | os.PathLike[str]) -> list[str]:
    parts = [p for p in PurePosixPath(os.fspath(relative)).parts if p not in ("", ".")]
    if not parts or parts[0] == "/" or ".." in parts:
        raise OSError(errno.EINVAL, "not a plain relative path", os.fspath(relative))
    return parts


def open_dir_beneath(base: Path, relative: str | os.PathLike[str]) -> int:
    """An fd of the directory `base/relative`, reached without following any symlink below
    `base` (a link anywhere on the way is ELOOP, a non-directory ENOTDIR)."""
    fd = os.open(base, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for part in _parts(relative) if os.fspath(relative) not in ("", ".") else []:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_beneath(base: Path, relative: str | os.PathLike[str], flags: int = os.O_RDONLY,
                 mode: int = 0o600) -> int:
    """Open `base/relative` without following a symlink anywhere below `base`."""
    parts = _parts(relative)
    parent = open_dir_beneath(base, "/".join(parts[:-1]) or ".")
    try:
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY, mode,
                       dir_fd=parent)
    finally:
        os.close(parent)


def _open(path: Path, below: Path | None) -> int:
    # O_NONBLOCK: opening a FIFO for reading must not wait for a writer; it is refused next.
    flags = os.O_RDONLY | os.O_NONBLOCK
    if below is None:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    return open_beneath(below, path.relative_to(below), flags)


def read_bytes(path: Path, limit: int = SMALL, *, below: Path | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. With `below`, no component of
    `path` under `below` may be a symlink; without, only the last one may not.

    Raises OSError: ELOOP for a symlink, EINVAL for a FIFO, device, socket or directory,
    EFBIG for a file above the cap (found before reading it).
    """
    fd = _open(path, below)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while being read
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: Path, limit: int = SMALL, *, below: Path | None = None) -> str:
    """`read_bytes` decoded as UTF-8 (a ValueError when it is not)."""
    return read_bytes(path, limit, below=below).decode()


def parse_json(text: str | bytes) -> Any:
    """json.loads, with a document nested too deep for the parser reported as a ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def load_json(path: Path, limit: int = SMALL, *, below: Path | None = None) -> Any:
    """A capped regular file parsed as JSON: OSError (cannot be read) or ValueError (not JSON)."""
    return parse_json(read_bytes(path, limit, below=below))


def require_regular(path: Path, limit: int = SMALL, *, below: Path | None = None) -> None:
    """Check that another program may be handed `path` (ssh's key or known_hosts, say): a
    regular file, no symlink, within the cap. Raises OSError like `read_bytes`."""
    read_bytes(path, limit, below=below)


def describe(err: OSError | ValueError) -> str:
    """A short reason for an unreadable file, for a one-line message."""
    if isinstance(err, OSError):
        if err.errno == errno.ELOOP:
            return "it is a symbolic link (not followed)"
        if err.errno == errno.ENOTDIR:
            return "a directory on its path is not a directory (a symbolic link?)"
        return err.strerror or str(err)
    return str(err)
