"""The configuration store: a working tree, and numbered read-only generations of it (btrfs).

Layout under the store root (itself a subvolume, /var/lib/atlas/config on the box):

    work/                   writable subvolume: the tree the administrator edits
                            (atlas.json + templates/, see atlas_services.render)
    generations/N/          read-only snapshot of work at commit N, with its metadata in
                            N/.atlas-generation.json (message, time, parent, who)
    generations/.staging-*  an unfinished generation; never read, removed by the next change
    .lock                   held by every change

A generation becomes visible only by the rename of a finished, read-only snapshot, so a
change killed at any point leaves either the old or the new history, never half of one.
History is never rewritten: rollback makes a new generation equal to an old one.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas_services import clock, fsutil, paths, proc
from atlas_services.errors import AtlasError, Refused
from atlas_services.settings import Settings
from atlas_services.store import subvol, tree

logger = logging.getLogger(__name__)

META_FILE = ".atlas-generation.json"
META_FORMAT = 1
SETTINGS_NAME = "atlas.json"
TEMPLATES_NAME = "templates"
_NUMBER = re.compile(r"[1-9][0-9]*")


def crashpoint(name: str) -> None:
    """Fault injection for the kill -9 tests: die here, as a power cut would, when asked."""
    if os.environ.get("ATLAS_CRASHPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def who_am_i() -> str:
    """The person behind a change: the sudo caller if any, else the login name."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


@dataclass(frozen=True)
class Generation:
    number: int
    message: str
    time: str
    who: str
    parent: int | None
    id: str  # unique across servers: tells two histories apart that share a number
    rollback_of: int | None = None

    @classmethod
    def from_json(cls, data: Any, source: str) -> Generation:
        if not isinstance(data, dict) or data.get("format") != META_FORMAT:
            raise AtlasError(f"{source}: not generation metadata of format {META_FORMAT}")
        try:
            gen = cls(number=data["number"], message=data["message"], time=data["time"],
                      who=data["who"], parent=data["parent"], id=data["id"],
                      rollback_of=data.get("rollback_of"))
        except KeyError as err:
            raise AtlasError(f"{source}: missing field {err}") from None
        ints = (gen.number, *(x for x in (gen.parent, gen.rollback_of) if x is not None))
        if not all(type(x) is int for x in ints) or not all(
                isinstance(s, str) for s in (gen.message, gen.time, gen.who, gen.id)):
            raise AtlasError(f"{source}: a field has the wrong type")
        return gen

    def to_json(self) -> dict[str, Any]:
        return {"format": META_FORMAT, "number": self.number, "message": self.message,
                "time": self.time, "who": self.who, "parent": self.parent, "id": self.id,
                "rollback_of": self.rollback_of}


def check_settings(root: Path) -> None:
    """Refuse a tree whose atlas.json is not valid settings (a typo never gets committed)."""
    path = root / SETTINGS_NAME
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise Refused(f"{SETTINGS_NAME} is not valid JSON: {err}", f"fix {path}") from None
    Settings.from_json(data, SETTINGS_NAME)


class ConfigStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.generations_dir = root / "generations"
        self.lock_file = root / ".lock"

    # ------------------------------------------------------------ reading

    def exists(self) -> bool:
        return self.generations_dir.is_dir()

    def require(self) -> None:
        subvol.require_btrfs(self.root, "the configuration store")
        if not self.exists():
            raise Refused(f"no configuration store at {self.root}",
                          "create it with 'atlas config init'")

    def generations(self) -> list[int]:
        """Numbers of the finished generations, oldest first."""
        return sorted(int(n) for n in subvol.finished_names(self.generations_dir, _NUMBER))

    def newest(self) -> int | None:
        numbers = self.generations()
        return numbers[-1] if numbers else None

    def path(self, gen: int) -> Path:
        """The read-only tree of generation `gen`; refuses a number that does not exist."""
        path = self.generations_dir / str(gen)
        if gen < 1 or not subvol.is_finished(path):
            newest = self.newest()
            raise Refused(f"generation {gen} does not exist",
                          f"generations are 1 to {newest}" if newest else "nothing is committed yet")
        return path

    def info(self, gen: int) -> Generation:
        path = self.path(gen) / META_FILE
        try:
            return Generation.from_json(json.loads(path.read_text()), str(path))
        except (OSError, ValueError) as err:
            raise AtlasError(f"metadata of generation {gen} is unreadable: {err}") from None

    def log(self, limit: int | None = None) -> list[Generation]:
        """Generations, newest first."""
        numbers = self.generations()[::-1]
        return [self.info(n) for n in (numbers[:limit] if limit else numbers)]

    def uncommitted(self) -> list[tree.Change]:
        """How the working tree differs from the newest generation."""
        newest = self.newest()
        if newest is None or not self.work.is_dir():
            return []
        return tree.compare(self.path(newest), self.work, ignore=[META_FILE])

    def diff(self, old: int, new: int | None) -> list[tree.Change]:
        """Changes from generation `old` to `new` (None: the working tree)."""
        return tree.compare(self.path(old), self.path(new) if new is not None else self.work,
                            ignore=[META_FILE])

    def tree_of(self, gen: int | None) -> Path:
        return self.path(gen) if gen is not None else self.work

    # ------------------------------------------------------------ changing

    def _prepare(self) -> None:
        subvol.ensure(self.root, "the configuration store")
        self.generations_dir.mkdir(exist_ok=True)

    def _clean(self) -> None:
        subvol.remove_staging(self.generations_dir, _NUMBER)
        subvol.remove_staging(self.root)

    def init(self, default_tree: Path) -> Generation | None:
        """Create the store from the image's default tree. Idempotent: an existing store is
        left as it is (a missing working tree is recreated from the newest generation)."""
        if not default_tree.is_dir():
            raise Refused(f"default configuration tree {default_tree} does not exist")
        check_settings(default_tree)
        self._prepare()
        with fsutil.locked(self.lock_file):
            self._clean()
            newest = self.newest()
            if not self.work.exists():
                staging = self.root / f"{subvol.STAGING_PREFIX}work"
                if newest is not None:
                    self._work_from(newest, staging)
                else:
                    subvol.create(staging)
                    shutil.copytree(default_tree, staging, symlinks=True, dirs_exist_ok=True)
                crashpoint("init-work")
                staging.rename(self.work)
            if newest is not None:
                return None
            return self._commit_locked("initial configuration from the image", who_am_i(),
                                       source=self.work)

    def commit(self, message: str, who: str | None = None, *, allow_empty: bool = False) -> Generation:
        """Snapshot the working tree as the next generation. Refuses when nothing changed."""
        if not message.strip():
            raise Refused("a commit needs a message", "add -m 'what and why'")
        self.require()
        if not self.work.is_dir():
            raise Refused(f"the working tree {self.work} is missing", "run 'atlas config init'")
        with fsutil.locked(self.lock_file):
            self._clean()
            if self.newest() is not None and not allow_empty and not self.uncommitted():
                raise Refused("nothing to commit: the working tree equals generation "
                              f"{self.newest()}", f"edit files under {self.work} first")
            check_settings(self.work)
            return self._commit_locked(message, who or who_am_i(), source=self.work)

    def _commit_locked(self, message: str, who: str, *, source: Path,
                       rollback_of: int | None = None) -> Generation:
        parent = self.newest()
        number = (parent or 0) + 1
        gen = Generation(number=number, message=message.strip(), time=clock.now(), who=who,
                         parent=parent, id=uuid.uuid4().hex, rollback_of=rollback_of)
        staging = self.generations_dir / f"{subvol.STAGING_PREFIX}{number}"
        subvol.snapshot(source, staging, read_only=False)
        crashpoint("commit-snapshot")
        fsutil.write_atomic(staging / META_FILE, json.dumps(gen.to_json(), indent=2) + "\n")
        crashpoint("commit-meta")
        subvol.set_read_only(staging)
        crashpoint("commit-readonly")
        staging.rename(self.generations_dir / str(number))
        crashpoint("commit-rename")
        subvol.sync(self.root)
        logger.info("committed generation %d: %s", number, gen.message)
        return gen

    def _work_from(self, gen: int, target: Path) -> None:
        subvol.snapshot(self.path(gen), target, read_only=False)
        (target / META_FILE).unlink(missing_ok=True)

    def rollback(self, gen: int, who: str | None = None, *, discard: bool = False) -> Generation | None:
        """Make a new generation equal to `gen` and reset the working tree to it.

        Returns None (and changes nothing) when the newest generation already equals `gen`.
        Refuses when the working tree has uncommitted changes, unless `discard`.
        """
        self.require()
        with fsutil.locked(self.lock_file):
            self._clean()
            source = self.path(gen)
            newest = self.newest()
            pending = self.uncommitted() if self.work.is_dir() else []
            if pending and not discard:
                raise Refused(f"the working tree has {len(pending)} uncommitted change(s)",
                              "commit them first, or add --discard to drop them")
            assert newest is not None
            same = not tree.compare(source, self.path(newest), ignore=[META_FILE])
            result = None
            if not same:
                result = self._commit_locked(f"rollback to generation {gen}", who or who_am_i(),
                                             source=source, rollback_of=gen)
            if pending or not same or not self.work.is_dir():
                self._reset_work(self.newest() or gen)
            return result

    def _reset_work(self, gen: int) -> None:
        """Replace the working tree by a writable copy of generation `gen`, atomically."""
        staging = self.root / f"{subvol.STAGING_PREFIX}work"
        subvol.delete(staging)
        self._work_from(gen, staging)
        if self.work.exists():
            fsutil.exchange(staging, self.work)
            subvol.delete(staging)  # now the old working tree
        else:
            staging.rename(self.work)
        subvol.sync(self.root)


# ---------------------------------------------------------------- the copy on the data set


def dataset_config_dir(dataset_root: Path) -> Path:
    return dataset_root / paths.DATASET_META / paths.DATASET_CONFIG


def _numbered(directory: Path) -> list[int]:
    return sorted(int(n) for n in subvol.finished_names(directory, _NUMBER))


def _send_receive(source: Path, parent: Path | None, workdir: Path, receive_into: Path) -> None:
    """Copy read-only subvolume `source` into directory `receive_into` through a stream file;
    incremental against `parent` when one is given, else (or if that fails) in full.

    The copy keeps its name and becomes read-only only when complete (btrfs receive), so
    an interrupted copy is a writable subvolume that readers skip and `remove_staging` drops.
    (A finished read-only subvolume cannot be moved to another directory: its '..' is in it.)
    """
    with tempfile.TemporaryDirectory(prefix=subvol.STAGING_PREFIX, dir=workdir) as tmp:
        stream = Path(tmp) / "stream"
        if parent is not None:
            try:
                subvol.send_to_file(source, stream, parent)
                subvol.receive_from_file(stream, receive_into)
                return
            except proc.CommandFailed as err:
                logger.info("incremental copy of %s failed (%s); sending it in full", source, err)
                if not subvol.is_finished(receive_into / source.name):
                    subvol.delete(receive_into / source.name)
        subvol.send_to_file(source, stream)
        subvol.receive_from_file(stream, receive_into)


def copy_generation_to_dataset(store: ConfigStore, dataset_root: Path, gen: int) -> bool:
    """Store generation `gen` on the data set (btrfs send/receive), unless it is there already.

    Called on the primary after each commit. Returns whether a copy was made. A copy
    interrupted at any point leaves only a staging name, removed by the next call.
    """
    source = store.path(gen)
    dest = dataset_config_dir(dataset_root)
    subvol.require_btrfs(dataset_root, "the data set")
    dest.mkdir(parents=True, exist_ok=True)
    if subvol.is_finished(dest / str(gen)):
        return False
    with fsutil.locked(dest / ".lock"):
        subvol.remove_staging(dest, _NUMBER)
        if subvol.is_finished(dest / str(gen)):
            return False
        on_dataset = set(_numbered(dest))
        parents = [n for n in store.generations() if n < gen and n in on_dataset]
        # send -p names the parent on the sending side; receive finds its copy by UUID.
        _send_receive(source, store.path(parents[-1]) if parents else None, dest, dest)
        subvol.sync(dest)
    logger.info("generation %d copied to the data set", gen)
    return True


def copy_missing_to_dataset(store: ConfigStore, dataset_root: Path) -> list[int]:
    """Copy every generation the data set lacks (so a copy that failed once is made by the
    next commit). Returns the generations copied."""
    on_dataset = set(_numbered(dataset_config_dir(dataset_root)))
    return [gen for gen in store.generations()
            if gen not in on_dataset and copy_generation_to_dataset(store, dataset_root, gen)]


def adopt_newer_from_dataset(store: ConfigStore, dataset_root: Path) -> int | None:
    """At boot as primary: take every generation the data set carries that is newer than the
    OS disk's newest, and reset the working tree to the newest. Returns the newest adopted
    generation, or None when the OS disk was up to date (or the data set carries none)."""
    source_dir = dataset_config_dir(dataset_root)
    local_newest = store.newest() or 0
    newer = [n for n in _numbered(source_dir) if n > local_newest]
    if not newer:
        return None
    store._prepare()
    with fsutil.locked(store.lock_file):
        store._clean()
        for gen in newer:
            if gen in store.generations():
                continue
            common = [n for n in store.generations() if subvol.is_finished(source_dir / str(n))]
            parent = source_dir / str(common[-1]) if common else None
            _send_receive(source_dir / str(gen), parent, store.root, store.generations_dir)
        subvol.sync(store.root)
        _adopt_work(store, local_newest, newer[-1])
    logger.info("adopted configuration generations %s from the data set", ", ".join(map(str, newer)))
    return newer[-1]


def _adopt_work(store: ConfigStore, old_newest: int, new_newest: int) -> None:
    """Point the working tree at the adopted generation, keeping unsaved edits aside."""
    if store.work.is_dir() and old_newest:
        pending = tree.compare(store.path(old_newest), store.work, ignore=[META_FILE])
        if pending:
            kept = store.root / f"work.unsaved-before-{new_newest}"
            subvol.delete(kept)
            subvol.snapshot(store.work, kept, read_only=True)
            logger.warning("the working tree had %d uncommitted change(s); kept them in %s",
                        len(pending), kept)
    store._reset_work(new_newest)
