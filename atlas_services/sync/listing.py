"""What a server's stores hold, as `sync-serve list` reports it and the secondary compares it:
configuration generations and module versions, each with the btrfs identity that tells
whether two servers hold the same copy (and so may use it as an incremental parent)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from atlas_services.peer.failures import Kind, SyncError
from atlas_services.store import bundle, subvol
from atlas_services.store.config import ConfigStore
from atlas_services.store.modules import ModuleStore

_ID = re.compile(r"[0-9a-f]{32}")
_UUID_HEX = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_GENERATION = 999_999_999


def _bad(what: str) -> SyncError:
    return SyncError(Kind.BAD_REPLY, f"store listing: {what}")


@dataclass(frozen=True)
class GenEntry:
    number: int
    id: str  # the generation's metadata id (unique across servers)
    identity: str  # subvol.stream_identity

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "id": self.id, "identity": self.identity}

    @classmethod
    def from_json(cls, data: Any) -> GenEntry:
        if not isinstance(data, dict) or set(data) != {"number", "id", "identity"}:
            raise _bad("a generation has exactly number, id and identity")
        number, gen_id, identity = data["number"], data["id"], data["identity"]
        if type(number) is not int or not 1 <= number <= MAX_GENERATION:
            raise _bad(f"generation number {number!r} is out of range")
        if not isinstance(gen_id, str) or not _ID.fullmatch(gen_id):
            raise _bad(f"generation {number}: id is not 32 hex digits")
        if not isinstance(identity, str) or not _UUID_HEX.fullmatch(identity):
            raise _bad(f"generation {number}: identity is not a UUID in hex")
        return cls(number, gen_id, identity)


@dataclass(frozen=True)
class VersionEntry:
    version: str
    identity: str
    manifest_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "identity": self.identity, "manifest_sha256": self.manifest_sha256}

    @classmethod
    def from_json(cls, data: Any, module: str) -> VersionEntry:
        if not isinstance(data, dict) or set(data) != {"version", "identity", "manifest_sha256"}:
            raise _bad(f"module {module}: a version has exactly version, identity, manifest_sha256")
        version, identity, digest = data["version"], data["identity"], data["manifest_sha256"]
        if not isinstance(version, str) or not bundle.VERSION_PATTERN.fullmatch(version):
            raise _bad(f"module {module}: {version!r} is not a version")
        if not isinstance(identity, str) or not _UUID_HEX.fullmatch(identity):
            raise _bad(f"module {module} {version}: identity is not a UUID in hex")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise _bad(f"module {module} {version}: manifest_sha256 is not a sha256")
        return cls(version, identity, digest)


@dataclass(frozen=True)
class ModuleEntry:
    versions: tuple[VersionEntry, ...]
    selected: str | None

    def version_names(self) -> list[str]:
        return [v.version for v in self.versions]

    def to_json(self) -> dict[str, Any]:
        return {"versions": [v.to_json() for v in self.versions], "selected": self.selected}

    @classmethod
    def from_json(cls, data: Any, module: str) -> ModuleEntry:
        if not isinstance(data, dict) or set(data) != {"versions", "selected"}:
            raise _bad(f"module {module} has exactly versions and selected")
        if not isinstance(data["versions"], list):
            raise _bad(f"module {module}: versions must be a list")
        versions = tuple(VersionEntry.from_json(v, module) for v in data["versions"])
        selected = data["selected"]
        if selected is not None and selected not in [v.version for v in versions]:
            raise _bad(f"module {module}: the selected version is not among its versions")
        return cls(versions, selected)


@dataclass(frozen=True)
class Listing:
    config: tuple[GenEntry, ...]  # oldest first
    modules: dict[str, ModuleEntry]

    def generation_numbers(self) -> list[int]:
        return [g.number for g in self.config]

    def to_json(self) -> dict[str, Any]:
        return {"config": [g.to_json() for g in self.config],
                "modules": {k: v.to_json() for k, v in sorted(self.modules.items())}}

    @classmethod
    def from_json(cls, data: Any) -> Listing:
        if not isinstance(data, dict) or set(data) != {"config", "modules"}:
            raise _bad("expected config and modules")
        if not isinstance(data["config"], list) or not isinstance(data["modules"], dict):
            raise _bad("config must be a list and modules an object")
        config = tuple(GenEntry.from_json(g) for g in data["config"])
        numbers = [g.number for g in config]
        if numbers != sorted(set(numbers)):
            raise _bad("generations must be listed once each, oldest first")
        modules = {}
        for name, entry in data["modules"].items():
            if not isinstance(name, str) or not bundle.NAME_PATTERN.fullmatch(name):
                raise _bad(f"{name!r} is not a module name")
            modules[name] = ModuleEntry.from_json(entry, name)
        return cls(config, modules)


def list_config(store: ConfigStore) -> tuple[GenEntry, ...]:
    if not store.exists():
        return ()
    return tuple(GenEntry(n, store.info(n).id, subvol.stream_identity(store.path(n)))
                 for n in store.generations())


def list_modules(store: ModuleStore) -> dict[str, ModuleEntry]:
    modules = {}
    for module in store.modules():
        versions = []
        for version in store.versions(module):
            path = store.path(module, version)
            digest = hashlib.sha256((path / bundle.MANIFEST_NAME).read_bytes()).hexdigest()
            versions.append(VersionEntry(version, subvol.stream_identity(path), digest))
        if versions:
            modules[module] = ModuleEntry(tuple(versions), store.selected(module))
    return modules


def list_stores(config: ConfigStore, modules: ModuleStore) -> Listing:
    return Listing(list_config(config), list_modules(modules))
