"""The environment manifest: what a server runs (packages, kernel, ATLAS modules, hardware),
collected on each side and compared by drift.py.

Everything is read below a system root (default /): dpkg's database through
`dpkg-query --admindir`, the kernel and hardware from proc/ and sys/ under that root, so the
same code describes a running server or a mounted image.
"""

from __future__ import annotations

import hashlib
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas_services import __version__, clock, osinfo, proc
from atlas_services.paths import Layout
from atlas_services.peer.failures import Kind, SyncError
from atlas_services.store import bundle
from atlas_services.store.modules import ModuleStore

FORMAT = 1
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?")
_DEBIAN_VERSION = re.compile(r"[0-9A-Za-z.+~:-]{1,128}")
_TEXT = re.compile(r"[\x20-\x7e]{0,256}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _bad(what: str) -> SyncError:
    return SyncError(Kind.BAD_REPLY, f"environment manifest: {what}")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _TEXT.fullmatch(value):
        raise _bad(f"{what} must be printable text")
    return value


def _int(value: Any, what: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if type(value) is not int or value < 0:
        raise _bad(f"{what} must be a non-negative integer")
    return int(value)


def _object(value: Any, what: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        raise _bad(f"{what} must have exactly {', '.join(sorted(keys))}")
    return value


@dataclass(frozen=True)
class Nic:
    name: str
    mac: str
    driver: str
    speed_mbps: int | None  # None while the link is down

    @classmethod
    def from_json(cls, data: Any) -> Nic:
        d = _object(data, "a NIC", {"name", "mac", "driver", "speed_mbps"})
        return cls(_text(d["name"], "NIC name"), _text(d["mac"], "NIC mac"),
                   _text(d["driver"], "NIC driver"), _int(d["speed_mbps"], "NIC speed", optional=True))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "mac": self.mac, "driver": self.driver, "speed_mbps": self.speed_mbps}


@dataclass(frozen=True)
class Disk:
    name: str
    size_bytes: int
    model: str
    rotational: bool

    @classmethod
    def from_json(cls, data: Any) -> Disk:
        d = _object(data, "a disk", {"name", "size_bytes", "model", "rotational"})
        if type(d["rotational"]) is not bool:
            raise _bad("disk rotational must be true or false")
        return cls(_text(d["name"], "disk name"), _int(d["size_bytes"], "disk size") or 0,
                   _text(d["model"], "disk model"), d["rotational"])

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size_bytes": self.size_bytes, "model": self.model,
                "rotational": self.rotational}


@dataclass(frozen=True)
class Hardware:
    arch: str
    cpu_model: str
    cpu_count: int
    memory_bytes: int
    nics: tuple[Nic, ...]
    disks: tuple[Disk, ...]

    @classmethod
    def from_json(cls, data: Any) -> Hardware:
        d = _object(data, "hardware", {"arch", "cpu_model", "cpu_count", "memory_bytes", "nics", "disks"})
        if not isinstance(d["nics"], list) or not isinstance(d["disks"], list):
            raise _bad("nics and disks must be lists")
        return cls(_text(d["arch"], "arch"), _text(d["cpu_model"], "CPU model"),
                   _int(d["cpu_count"], "CPU count") or 0, _int(d["memory_bytes"], "memory") or 0,
                   tuple(Nic.from_json(n) for n in d["nics"]),
                   tuple(Disk.from_json(x) for x in d["disks"]))

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch, "cpu_model": self.cpu_model, "cpu_count": self.cpu_count,
                "memory_bytes": self.memory_bytes, "nics": [n.to_json() for n in self.nics],
                "disks": [d.to_json() for d in self.disks]}


@dataclass(frozen=True)
class ModuleFacts:
    versions: dict[str, str]  # version → sha256 of its manifest.json
    selected: str | None

    @classmethod
    def from_json(cls, data: Any, name: str) -> ModuleFacts:
        d = _object(data, f"module {name}", {"versions", "selected"})
        versions = d["versions"]
        if not isinstance(versions, dict) or not all(
                isinstance(v, str) and bundle.VERSION_PATTERN.fullmatch(v)
                and isinstance(h, str) and _SHA256.fullmatch(h) for v, h in versions.items()):
            raise _bad(f"module {name}: versions must map versions to sha256 digests")
        selected = d["selected"]
        if selected is not None and selected not in versions:
            raise _bad(f"module {name}: the selected version is not installed")
        return cls(dict(versions), selected)

    def to_json(self) -> dict[str, Any]:
        return {"versions": dict(self.versions), "selected": self.selected}


@dataclass(frozen=True)
class EnvManifest:
    hostname: str
    image_version: str
    atlas_version: str
    kernel_release: str
    kernel_version: str
    packages: dict[str, str]  # name (with :arch for foreign architectures) → version
    modules: dict[str, ModuleFacts]
    hardware: Hardware
    collected: str  # ISO 8601, UTC

    FIELDS = ("format", "hostname", "image_version", "atlas_version", "kernel_release",
              "kernel_version", "packages", "modules", "hardware", "collected")

    @classmethod
    def from_json(cls, data: Any) -> EnvManifest:
        d = _object(data, "the manifest", set(cls.FIELDS))
        if d["format"] != FORMAT:
            raise _bad(f"format {d['format']!r} is not {FORMAT}")
        packages = d["packages"]
        if not isinstance(packages, dict) or not all(
                isinstance(k, str) and _PACKAGE.fullmatch(k) and isinstance(v, str)
                and _DEBIAN_VERSION.fullmatch(v) for k, v in packages.items()):
            raise _bad("packages must map package names to Debian versions")
        modules = d["modules"]
        if not isinstance(modules, dict) or not all(
                isinstance(k, str) and bundle.NAME_PATTERN.fullmatch(k) for k in modules):
            raise _bad("modules must be keyed by module names")
        return cls(
            hostname=_text(d["hostname"], "hostname"), image_version=_text(d["image_version"], "image"),
            atlas_version=_text(d["atlas_version"], "atlas version"),
            kernel_release=_text(d["kernel_release"], "kernel release"),
            kernel_version=_text(d["kernel_version"], "kernel version"),
            packages=dict(packages),
            modules={k: ModuleFacts.from_json(v, k) for k, v in modules.items()},
            hardware=Hardware.from_json(d["hardware"]), collected=_text(d["collected"], "time"))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "hostname": self.hostname, "image_version": self.image_version,
                "atlas_version": self.atlas_version, "kernel_release": self.kernel_release,
                "kernel_version": self.kernel_version, "packages": dict(sorted(self.packages.items())),
                "modules": {k: v.to_json() for k, v in sorted(self.modules.items())},
                "hardware": self.hardware.to_json(), "collected": self.collected}


# ---------------------------------------------------------------- collecting


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return default


def _printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:256]


def packages(system_root: Path) -> dict[str, str]:
    """Installed packages and their versions, from dpkg's database under system_root."""
    result = proc.run(["dpkg-query", f"--admindir={Layout(system_root).dpkg_admindir}", "-W",
                       "-f", "${binary:Package}\t${Version}\t${db:Status-Abbrev}\n"],
                      hint="dpkg-query is part of dpkg")
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, _, rest = line.partition("\t")
        version, _, status = rest.partition("\t")
        # "ii": installed; half-configured or removed-with-config packages do not count.
        if status.strip() == "ii" and _PACKAGE.fullmatch(name) and _DEBIAN_VERSION.fullmatch(version):
            found[name] = version
    return found


def _cpuinfo(system_root: Path) -> tuple[str, int]:
    model, count = "", 0
    for line in _read(system_root / "proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "processor":
            count += 1
        elif key.strip() == "model name" and not model:
            model = value.strip()
    return _printable(model or "unknown"), count


def _memory(system_root: Path) -> int:
    for line in _read(system_root / "proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return 0


def _nics(system_root: Path) -> tuple[Nic, ...]:
    """Physical network interfaces: those backed by a device (no lo, bridges, veths)."""
    net = system_root / "sys/class/net"
    nics = []
    for entry in sorted(net.iterdir()) if net.is_dir() else []:
        device = entry / "device"
        if not device.exists():
            continue
        driver_link = device / "driver"
        driver = driver_link.readlink().name if driver_link.is_symlink() else ""
        speed = _read(entry / "speed", "-1")
        nics.append(Nic(_printable(entry.name), _printable(_read(entry / "address")), _printable(driver),
                        int(speed) if speed.isdigit() else None))
    return tuple(nics)


def _disks(system_root: Path) -> tuple[Disk, ...]:
    """Whole disks backed by a device (no loop, ram, zram or device-mapper nodes)."""
    block = system_root / "sys/block"
    disks = []
    for entry in sorted(block.iterdir()) if block.is_dir() else []:
        if not (entry / "device").exists():
            continue
        sectors = _read(entry / "size", "0")
        disks.append(Disk(_printable(entry.name), int(sectors) * 512 if sectors.isdigit() else 0,
                          _printable(_read(entry / "device/model")),
                          _read(entry / "queue/rotational") == "1"))
    return tuple(disks)


def hardware(system_root: Path) -> Hardware:
    cpu_model, cpu_count = _cpuinfo(system_root)
    return Hardware(arch=platform.machine(), cpu_model=cpu_model, cpu_count=cpu_count,
                    memory_bytes=_memory(system_root), nics=_nics(system_root), disks=_disks(system_root))


def modules(store: ModuleStore) -> dict[str, ModuleFacts]:
    facts = {}
    for module in store.modules():
        versions = {v: hashlib.sha256((store.path(module, v) / bundle.MANIFEST_NAME).read_bytes()).hexdigest()
                    for v in store.versions(module)}
        if versions:
            facts[module] = ModuleFacts(versions, store.selected(module))
    return facts


def collect(module_store: ModuleStore, layout: Layout = Layout()) -> EnvManifest:
    """What this server runs, read below the layout's root (a running server or a mounted image)."""
    system_root = layout.root
    release = osinfo.os_release(layout)
    return EnvManifest(
        hostname=_printable(osinfo.hostname()),
        image_version=_printable(release.get("IMAGE_VERSION", "")),
        atlas_version=__version__,
        kernel_release=_printable(_read(system_root / "proc/sys/kernel/osrelease", "unknown")),
        kernel_version=_printable(_read(system_root / "proc/sys/kernel/version")),
        packages=packages(system_root),
        modules=modules(module_store),
        hardware=hardware(system_root),
        collected=clock.now(),
    )
