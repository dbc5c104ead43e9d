"""Modules with an update staged on this server (design §7): the Synchronizer leaves their
selection alone instead of mirroring the primary's.

The marker is one file per module in /var/lib/atlas/sync/staged/, holding the staged
version. `atlas update stage` (the updates issue) writes it with `mark_staged` when it
selects a new version on the secondary, and `clear_staged` removes it on promote or
rollback; from then on the primary's selection is mirrored again.
"""

from __future__ import annotations

from pathlib import Path

from atlas_services import fsutil, paths
from atlas_services.errors import Refused
from atlas_services.store import bundle


def staged_modules(directory: Path = paths.SYNC_STAGED) -> dict[str, str]:
    """module → staged version, for every valid marker."""
    if not directory.is_dir():
        return {}
    found = {}
    for marker in sorted(directory.iterdir()):
        if not bundle.NAME_PATTERN.fullmatch(marker.name) or not marker.is_file():
            continue
        version = marker.read_text().strip()
        if bundle.VERSION_PATTERN.fullmatch(version):
            found[marker.name] = version
    return found


def mark_staged(module: str, version: str, directory: Path = paths.SYNC_STAGED) -> None:
    if not bundle.NAME_PATTERN.fullmatch(module) or not bundle.VERSION_PATTERN.fullmatch(version):
        raise Refused(f"{module} {version} is not a module name and version")
    fsutil.write_atomic(directory / module, f"{version}\n")


def clear_staged(module: str, directory: Path = paths.SYNC_STAGED) -> None:
    if not bundle.NAME_PATTERN.fullmatch(module):
        raise Refused(f"{module!r} is not a module name")
    (directory / module).unlink(missing_ok=True)
