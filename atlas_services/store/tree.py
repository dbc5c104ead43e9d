"""Comparing two file trees (generations, the working tree): what was added, removed, changed."""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The tuple that tells an unchanged file without reading it: a btrfs snapshot keeps the
# inode number, size, mode and both times of every file it shares with its source, and any
# write changes ctime. Content is compared only when these differ.
Signature = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class Entry:
    kind: str  # "file" | "dir" | "link"
    mode: int
    signature: Signature
    target: str = ""  # for links


@dataclass(frozen=True)
class Change:
    path: str
    change: str  # "added" | "removed" | "modified"

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "change": self.change}


def scan(root: Path, ignore: Iterable[str] = ()) -> dict[str, Entry]:
    """Every entry below root by relative POSIX path (directories included)."""
    ignored = set(ignore)
    entries: dict[str, Entry] = {}

    def walk(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as listing:
            for item in listing:
                rel = f"{prefix}{item.name}"
                if rel in ignored:
                    continue
                st = item.stat(follow_symlinks=False)
                sig: Signature = (st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)
                if stat.S_ISLNK(st.st_mode):
                    entries[rel] = Entry("link", 0, sig, str(Path(item.path).readlink()))
                elif stat.S_ISDIR(st.st_mode):
                    entries[rel] = Entry("dir", stat.S_IMODE(st.st_mode), sig)
                    walk(Path(item.path), rel + "/")
                else:
                    entries[rel] = Entry("file", stat.S_IMODE(st.st_mode), sig)

    walk(root, "")
    return entries


def _same_content(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(1 << 16), fb.read(1 << 16)
            if ca != cb:
                return False
            if not ca:
                return True


def _modified(a: Entry, b: Entry, old: Path, new: Path) -> bool:
    if a.kind != b.kind or a.mode != b.mode or a.target != b.target:
        return True
    if a.kind != "file" or a.signature == b.signature:
        return False
    return a.signature[1] != b.signature[1] or not _same_content(old, new)


def compare(old_root: Path, new_root: Path, ignore: Iterable[str] = ()) -> list[Change]:
    """What changed from old_root to new_root, sorted by path."""
    old, new = scan(old_root, ignore), scan(new_root, ignore)
    changes: list[Change] = []
    for rel in sorted(old.keys() | new.keys()):
        a, b = old.get(rel), new.get(rel)
        if a is None:
            changes.append(Change(rel, "added"))
        elif b is None:
            changes.append(Change(rel, "removed"))
        elif _modified(a, b, old_root / rel, new_root / rel):
            changes.append(Change(rel, "modified"))
    # A new or removed directory is told by the files in it; only empty ones stand alone.
    return [c for c in changes if not _is_dir_with_listed_children(c, old, new, changes)]


def _is_dir_with_listed_children(change: Change, old: dict[str, Entry], new: dict[str, Entry],
                                 changes: list[Change]) -> bool:
    entry = new.get(change.path) or old.get(change.path)
    if entry is None or entry.kind != "dir" or change.change == "modified":
        return False
    prefix = change.path + "/"
    return any(c.path.startswith(prefix) for c in changes)


def unified(old_root: Path, new_root: Path, change: Change, old_label: str, new_label: str) -> str:
    """A unified diff of one changed file (or one line saying why there is none)."""
    def lines(root: Path) -> list[str] | None:
        path = root / change.path
        if path.is_symlink():
            return [f"-> {path.readlink()}\n"]
        if not path.is_file():
            return []
        try:
            return path.read_text().splitlines(keepends=True)
        except UnicodeDecodeError:
            return None

    old = lines(old_root) if change.change != "added" else []
    new = lines(new_root) if change.change != "removed" else []
    if old is None or new is None:
        return f"Binary file {change.path} {change.change}\n"
    text = "".join(difflib.unified_diff(old, new, f"{old_label}/{change.path}",
                                        f"{new_label}/{change.path}"))
    if not text:  # same text, different mode
        return f"mode of {change.path} changed\n"
    return text if text.endswith("\n") else text + "\n\\ No newline at end of file\n"
