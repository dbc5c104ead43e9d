"""The module store: several versions of each ATLAS module side by side, one selected.

Layout under the store root (itself a subvolume, /var/lib/atlas/modules on the box):

    <module>/<version>/         read-only subvolume: manifest.json, signature, payload/
    <module>/selected -> V      symlink, switched by rename (readers never see it missing)
    <module>/previous -> V      the version selected before, for one-command rollback
    <module>/.staging-<V>       an install in progress; never read, removed by the next change
    .lock                       held by every change

A version is visible only once renamed into place, read-only and checked; `atlas` (the
launcher) runs `<store>/atlas_services/selected/payload`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas_services import fsutil
from atlas_services.errors import AtlasError, Refused
from atlas_services.store import bundle, subvol
from atlas_services.store.config import crashpoint

logger = logging.getLogger(__name__)

SELECTED = "selected"
PREVIOUS = "previous"


def version_key(version: str) -> list[tuple[int, int | str]]:
    """Sort key: numeric parts as numbers, so 0.10.0 comes after 0.9.1."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+~-]", version)]


@dataclass(frozen=True)
class VersionInfo:
    module: str
    version: str
    selected: bool
    previous: bool
    formats: bundle.Formats

    def to_json(self) -> dict[str, Any]:
        return {"module": self.module, "version": self.version, "selected": self.selected,
                "previous": self.previous, "formats": self.formats.to_json()}


def read_formats_file(path: Path) -> dict[str, int]:
    """Formats recorded on disk by the code that writes them ({"config": 1, "state": 2})."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise AtlasError(f"{path} is unreadable: {err}") from None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in data.items()):
        raise AtlasError(f"{path} must map format names to integers")
    return dict(data)


def record_format(kind: str, version: int, path: Path) -> None:
    """Record that state/config of `kind` is now written in format `version`."""
    formats = read_formats_file(path)
    formats[kind] = version
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.write_atomic(path, json.dumps(formats, indent=2, sort_keys=True) + "\n")


def formats_on_disk(recorded: Mapping[str, int], selected: bundle.Formats | None) -> dict[str, int]:
    """What is on disk: the recorded formats; for a kind not recorded, what the selected
    version writes (it may have written it already). A pure decision."""
    on_disk = dict(selected.writes) if selected is not None else {}
    on_disk.update(recorded)
    return on_disk


def loaded_from(store_root: Path, file: Path) -> tuple[str, str] | None:
    """(module, version) when `file` lies in an installed version's payload under the store
    (what the launcher put on sys.path), else None (the image's own copy, a checkout)."""
    try:
        parts = file.resolve().relative_to(store_root.resolve()).parts
    except (ValueError, OSError):
        return None
    if len(parts) < 4 or parts[2] != bundle.PAYLOAD:
        return None
    if not bundle.NAME_PATTERN.fullmatch(parts[0]) or not bundle.VERSION_PATTERN.fullmatch(parts[1]):
        return None
    return parts[0], parts[1]


class ModuleStore:
    def __init__(self, root: Path, formats_file: Path) -> None:
        self.root = root
        self.formats_file = formats_file
        self.lock_file = root / ".lock"

    # ------------------------------------------------------------ reading

    def modules(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and bundle.NAME_PATTERN.fullmatch(p.name))

    def versions(self, module: str) -> list[str]:
        """Installed (finished) versions of a module, oldest first."""
        return sorted(subvol.finished_names(self.root / module, bundle.VERSION_PATTERN), key=version_key)

    def path(self, module: str, version: str) -> Path:
        if not bundle.NAME_PATTERN.fullmatch(module):
            raise Refused(f"{module!r} is not a module name", "see 'atlas module list'")
        path = self.root / module / version
        if not bundle.VERSION_PATTERN.fullmatch(version) or not subvol.is_finished(path):
            installed = self.versions(module) if bundle.NAME_PATTERN.fullmatch(module) else []
            raise Refused(f"{module} {version} is not installed",
                          f"installed: {', '.join(installed)}" if installed else "see 'atlas module list'")
        return path

    def _link(self, module: str, name: str) -> str | None:
        try:
            target = (self.root / module / name).readlink().name
        except (FileNotFoundError, OSError):
            return None
        return target if subvol.is_finished(self.root / module / target) else None

    def selected(self, module: str) -> str | None:
        return self._link(module, SELECTED)

    def previous(self, module: str) -> str | None:
        return self._link(module, PREVIOUS)

    def versions_in_use(self, running_file: Path) -> dict[str, str]:
        """The version of each module this process runs with: the selected one, except for the
        module `running_file` (a file of the running code) belongs to, whose version is the
        one it was loaded from — or none, when it runs from outside the store (the launcher
        fell back to the image's own copy)."""
        in_use = {m: v for m in self.modules() if (v := self.selected(m)) is not None}
        running = loaded_from(self.root, running_file)
        package = running_file.resolve().parent.name
        if running is not None:
            in_use[running[0]] = running[1]
        else:
            in_use.pop(package, None)
        return in_use

    def manifest(self, module: str, version: str) -> bundle.Manifest:
        path = self.path(module, version) / bundle.MANIFEST_NAME
        return bundle.Manifest.from_json(json.loads(path.read_text()), str(path))

    def installed(self) -> list[VersionInfo]:
        rows: list[VersionInfo] = []
        for module in self.modules():
            selected, previous = self.selected(module), self.previous(module)
            for version in self.versions(module):
                rows.append(VersionInfo(module, version, version == selected, version == previous,
                                        self.manifest(module, version).formats))
        return rows

    # ------------------------------------------------------------ changing

    def _prepare(self) -> None:
        subvol.ensure(self.root, "the module store")

    def install(self, bundle_file: Path, signature: Path | None,
                vendor_key: Path) -> bundle.Manifest:
        """Check a bundle completely, extract it into a staging subvolume, verify it, make it
        read-only and rename it into place. Refuses a version already installed."""
        subvol.require_btrfs(self.root, "the module store")
        verified = bundle.read_bundle(bundle_file, signature, vendor_key)
        manifest = verified.manifest
        module_dir = self.root / manifest.name
        if subvol.is_finished(module_dir / manifest.version):
            raise Refused(f"{manifest.name} {manifest.version} is already installed")
        self._prepare()
        module_dir.mkdir(exist_ok=True)
        with fsutil.locked(self.lock_file):
            subvol.remove_staging(module_dir, bundle.VERSION_PATTERN)
            if subvol.is_finished(module_dir / manifest.version):
                raise Refused(f"{manifest.name} {manifest.version} is already installed")
            staging = module_dir / f"{subvol.STAGING_PREFIX}{manifest.version}"
            subvol.create(staging)
            crashpoint("install-created")
            bundle.extract(verified, staging)
            crashpoint("install-extracted")
            bundle.verify_tree(staging, manifest)
            # Every file on disk before the version becomes read-only and visible: a power
            # cut after the rename must not leave a listed version with empty files.
            subvol.sync(staging)
            subvol.set_read_only(staging)
            crashpoint("install-readonly")
            staging.rename(module_dir / manifest.version)
            subvol.sync(self.root)
        logger.info("installed %s %s", manifest.name, manifest.version)
        return manifest

    def check_selectable(self, module: str, version: str) -> None:
        """Refuse a version that cannot read the formats on disk."""
        current = self.selected(module)
        selected_formats = self.manifest(module, current).formats if current else None
        on_disk = formats_on_disk(read_formats_file(self.formats_file), selected_formats)
        unreadable = self.manifest(module, version).formats.unreadable(on_disk)
        if unreadable:
            raise Refused(f"{module} {version} cannot read the format(s) on disk: {', '.join(unreadable)}",
                          "select a version that reads them")

    def select(self, module: str, version: str) -> bool:
        """Make `version` the selected one (the old selection becomes `previous`).
        Returns False when it already was selected."""
        self.path(module, version)
        with fsutil.locked(self.lock_file):
            current = self.selected(module)
            if current == version:
                return False
            self.check_selectable(module, version)
            module_dir = self.root / module
            if current is not None:
                fsutil.switch_symlink(module_dir / PREVIOUS, current)
            crashpoint("select-previous")
            fsutil.switch_symlink(module_dir / SELECTED, version)
        logger.info("selected %s %s (was %s)", module, version, current or "none")
        return True

    def rollback(self, module: str) -> str:
        """Select the previous version again; returns it."""
        if not bundle.NAME_PATTERN.fullmatch(module):
            raise Refused(f"{module!r} is not a module name", "see 'atlas module list'")
        previous = self.previous(module)
        if previous is None:
            raise Refused(f"{module} has no previous version to roll back to")
        self.select(module, previous)
        return previous

    def remove(self, module: str, version: str) -> None:
        """Delete an installed version; refused for the selected one."""
        path = self.path(module, version)
        with fsutil.locked(self.lock_file):
            if self.selected(module) == version:
                raise Refused(f"{module} {version} is the selected version",
                              "select another version first")
            if self.previous(module) == version:
                (self.root / module / PREVIOUS).unlink()
            subvol.delete(path)
            subvol.sync(self.root)
        logger.info("removed %s %s", module, version)

    def seed(self, bundles_dir: Path, vendor_key: Path) -> list[str]:
        """First boot: install the image's own bundles not yet installed, and select each
        module that has no selection. Idempotent. Returns what it installed."""
        installed: list[str] = []
        for bundle_file in sorted(bundles_dir.glob(f"*{bundle.SUFFIX}")):
            verified = bundle.read_bundle(bundle_file, None, vendor_key)
            name, version = verified.manifest.name, verified.manifest.version
            if version not in self.versions(name):
                self.install(bundle_file, None, vendor_key)
                installed.append(f"{name} {version}")
            if self.selected(name) is None:
                self.select(name, version)
        return installed
