"""The secondary's trial markers: modules with an update on trial on this secondary (design
§7). The Synchronizer leaves their selection alone instead of mirroring the primary's.

The marker is one file per module in /var/lib/atlas/sync/staged/ (Layout.trial_marks):

    0.2.0                          the staged version (first line)
    stage 3f2a…                    the primary's id of this stage
    since 2026-11-25T12:00:00Z     when this server selected it (the trial's start)

A sync writes it (`mark`) when the primary's hello stages a version this
server holds, and removes it (`clear`) when the primary no longer does (promoted,
rolled back, aborted); from then on the primary's selection is mirrored again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from atlas_services import fsutil
from atlas_services.errors import Refused
from atlas_services.store import bundle

STAGE_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Mark:
    version: str
    stage_id: str | None = None
    since: str | None = None  # ISO 8601, UTC


def _parse(text: str) -> Mark | None:
    lines = text.splitlines()
    if not lines or not bundle.VERSION_PATTERN.fullmatch(lines[0].strip()):
        return None
    extra = {}
    for line in lines[1:]:
        key, _, value = line.strip().partition(" ")
        extra[key] = value.strip()
    stage_id = extra.get("stage")
    return Mark(lines[0].strip(),
                stage_id if stage_id and STAGE_ID_PATTERN.fullmatch(stage_id) else None,
                extra.get("since") or None)


def read_marks(directory: Path) -> dict[str, Mark]:
    """module → its mark, for every valid marker."""
    if not directory.is_dir():
        return {}
    found = {}
    for marker in sorted(directory.iterdir()):
        if not bundle.NAME_PATTERN.fullmatch(marker.name) or not marker.is_file():
            continue
        mark = _parse(marker.read_text())
        if mark is not None:
            found[marker.name] = mark
    return found


def staged_versions(directory: Path) -> dict[str, str]:
    """module → staged version, for every valid marker."""
    return {module: mark.version for module, mark in read_marks(directory).items()}


def mark(module: str, version: str, directory: Path, *,
                stage_id: str | None = None, since: str | None = None) -> None:
    if not bundle.NAME_PATTERN.fullmatch(module) or not bundle.VERSION_PATTERN.fullmatch(version):
        raise Refused(f"{module} {version} is not a module name and version")
    if stage_id is not None and not STAGE_ID_PATTERN.fullmatch(stage_id):
        raise Refused(f"{stage_id!r} is not a stage id")
    lines = [version]
    if stage_id:
        lines.append(f"stage {stage_id}")
    if since:
        lines.append(f"since {since}")
    fsutil.write_atomic(directory / module, "\n".join(lines) + "\n")


def clear(module: str, directory: Path) -> None:
    if not bundle.NAME_PATTERN.fullmatch(module):
        raise Refused(f"{module!r} is not a module name")
    (directory / module).unlink(missing_ok=True)
