"""Installing an applied generation's files as one set: a journal of the pending work is
made durable before the first file is replaced, and the next apply (or the boot's) finishes
it or undoes it, so /etc never stays a mix of two generations.

    preparing   the journal names every new file's temp name and every old file's backup
                (a hard link beside it); a crash here leaves the old generation: undo
                removes the temps and backups
    installing  the commit point: every temp is complete and durable; a crash here is
                rolled forward (the remaining temps renamed into place, removals done,
                applied.json written); a failure in this process rolls back from the
                backups instead
    reloading   the files are in place and recorded; the units named are reloaded by the
                next apply if this one died before it did so

The journal and the lock live in /var/lib/atlas (Layout.apply_journal, .apply_lock); the
file names in the journal are relative to the target root and checked like any input.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from atlas_services import fsutil, untrusted
from atlas_services.errors import AtlasError
from atlas_services.store.config import crashpoint

logger = logging.getLogger(__name__)

JOURNAL_FORMAT = 1
NEW_SUFFIX = ".atlas-new"
OLD_SUFFIX = ".atlas-old"
PREPARING, INSTALLING, RELOADING = "preparing", "installing", "reloading"
_STATES = (PREPARING, INSTALLING, RELOADING)


def safe_target(path: str) -> PurePosixPath | None:
    """`path` as a file apply may write or remove: relative, below etc/, no '..' and no
    empty or '.' part. Anything else (from a damaged applied.json or journal) is None."""
    parts = path.split("/")
    if (not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or parts[0] != "etc" or len(parts) < 2):
        return None
    return PurePosixPath(path)


def _beside(rel: PurePosixPath, suffix: str) -> PurePosixPath:
    return rel.with_name(f".{rel.name}{suffix}")


@dataclass(frozen=True)
class Entry:
    path: PurePosixPath  # relative to the target root
    action: str  # "write" | "remove"
    sha256: str = ""  # of the new content ("write")
    backup: bool = False  # the old file is hard-linked beside it (to roll back)

    @property
    def temp(self) -> PurePosixPath:
        return _beside(self.path, NEW_SUFFIX)

    @property
    def old(self) -> PurePosixPath:
        return _beside(self.path, OLD_SUFFIX)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path.as_posix(), "action": self.action, "sha256": self.sha256,
                "backup": self.backup}


@dataclass(frozen=True)
class Journal:
    generation: int
    state: str
    entries: tuple[Entry, ...]
    units: tuple[str, ...]  # to reload once the files are in place
    record: Mapping[str, Any]  # applied.json as it is to be written

    def to_json(self) -> dict[str, Any]:
        return {"format": JOURNAL_FORMAT, "generation": self.generation, "state": self.state,
                "entries": [e.to_json() for e in self.entries], "units": list(self.units),
                "record": dict(self.record)}

    @classmethod
    def from_json(cls, data: Any) -> Journal:
        if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
            raise ValueError("not an apply journal of format 1")
        if data.get("state") not in _STATES or type(data.get("generation")) is not int:
            raise ValueError("bad state or generation")
        entries = []
        for raw in data.get("entries", []):
            path = safe_target(str(raw.get("path", ""))) if isinstance(raw, dict) else None
            if path is None or raw.get("action") not in ("write", "remove"):
                raise ValueError(f"bad entry {raw!r}")
            entries.append(Entry(path, raw["action"], str(raw.get("sha256", "")),
                                 bool(raw.get("backup"))))
        units = data.get("units", [])
        record = data.get("record", {})
        if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
            raise ValueError("bad units")
        if not isinstance(record, dict):
            raise ValueError("bad record")
        return cls(data["generation"], data["state"], tuple(entries), tuple(units), record)

    def at(self, state: str) -> Journal:
        return Journal(self.generation, state, self.entries, self.units, self.record)


def _save(journal_file: Path, journal: Journal) -> None:
    journal_file.parent.mkdir(parents=True, exist_ok=True)
    fsutil.write_atomic(journal_file, json.dumps(journal.to_json(), indent=1) + "\n", 0o600)


def load(journal_file: Path) -> Journal | None:
    try:
        return Journal.from_json(untrusted.load_json(journal_file, 16 * 2**20))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise AtlasError(f"the apply journal {journal_file} is damaged ({err})",
                         "check /etc against 'atlas config show', then remove the journal "
                         "and apply again") from None


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not weaken or widen what was asked
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_backup(path: Path, old: Path) -> bool:
    """Keep the current file under `old` (a hard link: no copy, same inode); False when
    there is no regular file to keep."""
    old.unlink(missing_ok=True)
    try:
        if not path.is_file() or path.is_symlink():
            return False
        os.link(path, old, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _fsync_dirs(root: Path, entries: Iterable[Entry]) -> None:
    for directory in sorted({(root / e.path).parent for e in entries}):
        if directory.is_dir():
            fsutil.fsync_dir(directory)


def _record(root: Path, applied_file: PurePosixPath, record: Mapping[str, Any]) -> None:
    path = root / applied_file
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.write_atomic(path, json.dumps(record, indent=2) + "\n")


def _drop_backups(root: Path, entries: Iterable[Entry]) -> None:
    for entry in entries:
        (root / entry.old).unlink(missing_ok=True)


def _undo_prepared(root: Path, entries: Iterable[Entry]) -> None:
    for entry in entries:
        (root / entry.temp).unlink(missing_ok=True)
        (root / entry.old).unlink(missing_ok=True)


def install(root: Path, journal_file: Path, applied_file: PurePosixPath, generation: int,
            files: Mapping[PurePosixPath, bytes], modes: Mapping[PurePosixPath, int],
            changed: Iterable[PurePosixPath], removed: Iterable[PurePosixPath],
            record: Mapping[str, Any], units: Iterable[str]) -> Journal:
    """Replace the changed files and remove the removed ones as one set; returns the
    journal in its `reloading` state (the caller reloads, then calls `finish`)."""
    entries = tuple([Entry(p, "write", hashlib.sha256(files[p]).hexdigest()) for p in changed]
                    + [Entry(p, "remove") for p in removed])
    journal = Journal(generation, PREPARING, entries, tuple(units), record)
    _save(journal_file, journal)
    crashpoint("apply-journal")
    prepared: list[Entry] = []
    try:
        for entry in entries:
            path = root / entry.path
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            if entry.action == "write":
                _write_new(root / entry.temp, files[entry.path], modes[entry.path])
            prepared.append(Entry(entry.path, entry.action, entry.sha256,
                                  _link_backup(path, root / entry.old)))
        _fsync_dirs(root, entries)
    except BaseException:
        # A full disk, a file that cannot be linked: nothing has been replaced yet.
        _undo_prepared(root, entries)
        journal_file.unlink(missing_ok=True)
        raise
    journal = Journal(generation, INSTALLING, tuple(prepared), tuple(units), record)
    _save(journal_file, journal)  # the commit point: from here a crash rolls forward
    crashpoint("apply-committed")
    done: list[Entry] = []
    current: Entry | None = None
    try:
        for entry in journal.entries:
            current = entry
            path = root / entry.path
            if entry.action == "write":
                (root / entry.temp).replace(path)
            else:
                path.unlink(missing_ok=True)
            done.append(entry)
            crashpoint("apply-midway")
        _fsync_dirs(root, journal.entries)
    except Exception as err:
        _roll_back(root, journal, done)
        journal_file.unlink(missing_ok=True)
        where = f" at /{current.path}" if current else ""
        raise AtlasError(f"installing generation {generation} failed{where}: {err}; "
                         "every file was put back as it was",
                         "fix the cause (permissions? a read-only /etc?) and apply again") from err
    _record(root, applied_file, record)
    crashpoint("apply-recorded")
    _drop_backups(root, journal.entries)
    journal = journal.at(RELOADING)
    _save(journal_file, journal)
    crashpoint("apply-installed")
    return journal


def _roll_back(root: Path, journal: Journal, done: Iterable[Entry]) -> None:
    """In this process, after a failure midway: every file as it was before."""
    for entry in done:
        path = root / entry.path
        if entry.backup:
            (root / entry.old).replace(path)
        elif entry.action == "write":
            path.unlink(missing_ok=True)
    _undo_prepared(root, journal.entries)
    _fsync_dirs(root, journal.entries)


def finish(journal_file: Path) -> None:
    journal_file.unlink(missing_ok=True)
    if journal_file.parent.is_dir():
        fsutil.fsync_dir(journal_file.parent)


def recover(root: Path, journal_file: Path, applied_file: PurePosixPath) -> Journal | None:
    """Finish or undo what an apply that died left: None when nothing was pending or it was
    undone (the old generation is whole), else the journal in its `reloading` state, whose
    units the caller reloads before calling `finish`."""
    journal = load(journal_file)
    if journal is None:
        return None
    if journal.state == PREPARING:
        logger.warning("an apply of generation %d died before replacing any file: undone",
                       journal.generation)
        _undo_prepared(root, journal.entries)
        finish(journal_file)
        return None
    if journal.state == INSTALLING:
        logger.warning("an apply of generation %d died while replacing files: finishing it",
                       journal.generation)
        for entry in journal.entries:
            path, temp = root / entry.path, root / entry.temp
            if entry.action == "remove":
                path.unlink(missing_ok=True)
            elif temp.exists() or temp.is_symlink():
                temp.replace(path)
            elif _sha256(path) != entry.sha256:
                raise AtlasError(f"the apply journal says /{entry.path} was installed, but it "
                                 "is not the file that was", "apply again to rewrite it")
        _fsync_dirs(root, journal.entries)
        _record(root, applied_file, journal.record)
        _drop_backups(root, journal.entries)
        journal = journal.at(RELOADING)
        _save(journal_file, journal)
    return journal


def _sha256(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ELOOP):
            return ""
        raise
    with os.fdopen(fd, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()
