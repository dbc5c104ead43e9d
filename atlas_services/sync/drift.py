"""The drift report: how the secondary's environment differs from the primary's, each
difference classed equal / compatible / incompatible with its reason. A pure function of
the two manifests.

The question behind every class: *could the secondary take over the primary's data set
right now and run it as well?*

- incompatible — no, or not safely:
  * a package the primary has is missing on the secondary (what needs it would fail);
  * a package ATLAS or a business service runs on (CRITICAL_PACKAGES) at another upstream
    version (it may not read the primary's data or configuration);
  * the secondary's kernel is of an older series than the primary's (it may not mount a
    data set the newer kernel wrote);
  * the module version selected on the primary is missing on the secondary, the same
    version differs in content, or the selection differs (unless an update is staged on the
    secondary: that difference is intended);
  * another CPU architecture; less than half the primary's memory; no network interface
    that matches the primary role's interface name.
- compatible — yes, but the owner should know: other package version differences
  (Debian revisions: security updates; upstream versions of packages nothing relies on),
  packages only on the secondary, kernels of the same or a newer series, module versions
  only on one side that are not selected there, another CPU model or fewer cores, less
  (but not under half the) memory, other NICs or disks, another image version.
- equal — the same (memory within 2 %).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from atlas_services.sync.manifest import EnvManifest, ModuleFacts


class DriftClass(StrEnum):
    EQUAL = "equal"
    COMPATIBLE = "compatible"
    INCOMPATIBLE = "incompatible"


@dataclass(frozen=True)
class DriftItem:
    item: str  # what differs: "package nginx", "kernel", "module atlas_services 0.2.0", ...
    klass: DriftClass
    reason: str

    @classmethod
    def from_json(cls, data: Any) -> DriftItem:
        if not isinstance(data, dict) or set(data) != {"item", "class", "reason"}:
            raise ValueError("a drift item has exactly item, class and reason")
        if not isinstance(data["item"], str) or not isinstance(data["reason"], str):
            raise ValueError("a drift item's item and reason are text")
        return cls(data["item"], DriftClass(data["class"]), data["reason"])

    def to_json(self) -> dict[str, str]:
        return {"item": self.item, "class": self.klass, "reason": self.reason}


# Packages ATLAS and the business services run on (fnmatch patterns on the package name).
CRITICAL_PACKAGES = (
    "nginx", "nginx-*", "libnginx-*",
    "postfix", "postfix-*",
    "dovecot-*",
    "postgresql", "postgresql-*", "libpq5",
    "samba", "samba-*", "smbclient", "libsmbclient",
    "python3", "python3.*", "python3-*", "libpython3*",
    "openssh-server", "btrfs-progs", "systemd", "libc6", "openssl", "libssl*",
    "linux-image-*",
)
MEMORY_EQUAL_TOLERANCE = 0.02
MEMORY_MIN_FRACTION = 0.5

_EQUAL, _COMPATIBLE, _INCOMPATIBLE = DriftClass.EQUAL, DriftClass.COMPATIBLE, DriftClass.INCOMPATIBLE


def is_critical(package: str) -> bool:
    name = package.partition(":")[0]
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in CRITICAL_PACKAGES)


def upstream_version(version: str) -> str:
    """The epoch and upstream part of a Debian version: 1:2.3.4-5+deb12u1 → 1:2.3.4."""
    epoch, _, rest = version.rpartition(":")
    upstream = rest.rpartition("-")[0] if "-" in rest else rest
    return f"{epoch}:{upstream}" if epoch else upstream


def kernel_series(release: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match.group(1)), int(match.group(2))) if match else None


# ---------------------------------------------------------------- one category each


def compare_packages(primary: Mapping[str, str], secondary: Mapping[str, str]) -> list[DriftItem]:
    items = []
    for name in sorted(primary.keys() | secondary.keys()):
        theirs, ours = primary.get(name), secondary.get(name)
        if theirs == ours:
            continue
        item = f"package {name}"
        if ours is None:
            items.append(DriftItem(item, _INCOMPATIBLE, f"{theirs} on the primary, not installed on "
                                   "the secondary: what needs it would fail after failover"))
        elif theirs is None:
            items.append(DriftItem(item, _COMPATIBLE, f"{ours} on the secondary only"))
        elif upstream_version(theirs) == upstream_version(ours):
            items.append(DriftItem(item, _COMPATIBLE, f"{theirs} on the primary, {ours} on the "
                                   "secondary: the same upstream version (Debian revision only)"))
        elif is_critical(name):
            items.append(DriftItem(item, _INCOMPATIBLE, f"{theirs} on the primary, {ours} on the "
                                   "secondary: ATLAS or a business service runs on it, and another "
                                   "upstream version may not read the primary's data or configuration"))
        else:
            items.append(DriftItem(item, _COMPATIBLE, f"{theirs} on the primary, {ours} on the secondary"))
    if not items:
        return [DriftItem("packages", _EQUAL, f"{len(primary)} packages, the same versions")]
    return items


def compare_kernel(primary: str, secondary: str) -> DriftItem:
    if primary == secondary:
        return DriftItem("kernel", _EQUAL, primary)
    theirs, ours = kernel_series(primary), kernel_series(secondary)
    text = f"{primary} on the primary, {secondary} on the secondary"
    if theirs is None or ours is None:
        return DriftItem("kernel", _INCOMPATIBLE, f"{text}: cannot tell the kernel series apart")
    if ours < theirs:
        return DriftItem("kernel", _INCOMPATIBLE, f"{text}: an older kernel series may not mount a "
                         "data set the primary's kernel wrote")
    return DriftItem("kernel", _COMPATIBLE, f"{text}: {'the same' if ours == theirs else 'a newer'} "
                     "kernel series")


def compare_modules(primary: Mapping[str, ModuleFacts], secondary: Mapping[str, ModuleFacts],
                    staged: Mapping[str, str]) -> list[DriftItem]:
    items = []
    for module in sorted(primary.keys() | secondary.keys()):
        theirs = primary.get(module, ModuleFacts({}, None))
        ours = secondary.get(module, ModuleFacts({}, None))
        for version in sorted(theirs.versions.keys() | ours.versions.keys()):
            item = f"module {module} {version}"
            if version not in ours.versions:
                if version == theirs.selected:
                    items.append(DriftItem(item, _INCOMPATIBLE, "selected on the primary, not installed "
                                           "on the secondary"))
                else:
                    items.append(DriftItem(item, _COMPATIBLE, "installed on the primary only (not "
                                           "selected there): rolling back to it after failover would "
                                           "not be possible"))
            elif version not in theirs.versions:
                items.append(DriftItem(item, _COMPATIBLE, "installed on the secondary only"))
            elif theirs.versions[version] != ours.versions[version]:
                items.append(DriftItem(item, _INCOMPATIBLE, "the same version with different contents "
                                       "on the two servers"))
        if theirs.selected == ours.selected:
            continue
        item = f"selection {module}"
        text = f"{theirs.selected or 'nothing'} on the primary, {ours.selected or 'nothing'} on the secondary"
        if module in staged and ours.selected == staged[module]:
            items.append(DriftItem(item, _COMPATIBLE, f"{text}: an update is staged on the secondary"))
        else:
            items.append(DriftItem(item, _INCOMPATIBLE, text))
    if not items:
        count = sum(len(f.versions) for f in primary.values())
        return [DriftItem("modules", _EQUAL, f"{count} module version(s), the same selections")]
    return items


def _memory(primary: int, secondary: int) -> DriftItem:
    gib = 2**30
    text = f"{primary / gib:.1f} GiB on the primary, {secondary / gib:.1f} GiB on the secondary"
    if primary and abs(primary - secondary) <= primary * MEMORY_EQUAL_TOLERANCE:
        return DriftItem("memory", _EQUAL, text)
    if secondary < primary * MEMORY_MIN_FRACTION:
        return DriftItem("memory", _INCOMPATIBLE, f"{text}: less than half; the services may not fit")
    return DriftItem("memory", _COMPATIBLE, text)


def compare_hardware(primary: EnvManifest, secondary: EnvManifest,
                     interface_pattern: str | None) -> list[DriftItem]:
    theirs, ours = primary.hardware, secondary.hardware
    items = []
    if theirs.arch != ours.arch:
        items.append(DriftItem("architecture", _INCOMPATIBLE, f"{theirs.arch} on the primary, "
                               f"{ours.arch} on the secondary"))
    cpu_text = (f"{theirs.cpu_model} ×{theirs.cpu_count} on the primary, "
                f"{ours.cpu_model} ×{ours.cpu_count} on the secondary")
    if (theirs.cpu_model, theirs.cpu_count) == (ours.cpu_model, ours.cpu_count):
        items.append(DriftItem("cpu", _EQUAL, f"{ours.cpu_model} ×{ours.cpu_count}"))
    elif ours.cpu_count < theirs.cpu_count:
        items.append(DriftItem("cpu", _COMPATIBLE, f"{cpu_text}: fewer cores, slower after failover"))
    else:
        items.append(DriftItem("cpu", _COMPATIBLE, cpu_text))
    items.append(_memory(theirs.memory_bytes, ours.memory_bytes))
    our_nics = {n.name: n for n in ours.nics}
    nic_text = (f"{', '.join(f'{n.name} ({n.driver})' for n in theirs.nics) or 'none'} on the primary; "
                f"{', '.join(f'{n.name} ({n.driver})' for n in ours.nics) or 'none'} on the secondary")
    if interface_pattern and not any(fnmatch.fnmatchcase(name, interface_pattern) for name in our_nics):
        items.append(DriftItem("nics", _INCOMPATIBLE, f"no interface on the secondary matches the "
                               f"primary role's {interface_pattern!r}: its address could not be "
                               f"configured after failover ({nic_text})"))
    elif [(n.name, n.driver) for n in theirs.nics] == [(n.name, n.driver) for n in ours.nics]:
        items.append(DriftItem("nics", _EQUAL, nic_text.partition(" on the primary")[0]))
    else:
        items.append(DriftItem("nics", _COMPATIBLE, nic_text))

    def disks(m: EnvManifest) -> list[str]:
        return [f"{d.name} {d.size_bytes / 1e9:.0f} GB {d.model or '?'}{' (HDD)' if d.rotational else ''}"
                for d in m.hardware.disks]
    if disks(primary) == disks(secondary):
        items.append(DriftItem("disks", _EQUAL, ", ".join(disks(secondary)) or "none"))
    else:
        items.append(DriftItem("disks", _COMPATIBLE, f"{', '.join(disks(primary)) or 'none'} on the "
                               f"primary; {', '.join(disks(secondary)) or 'none'} on the secondary"))
    return items


def compare(primary: EnvManifest, secondary: EnvManifest, *, staged: Mapping[str, str] | None = None,
            interface_pattern: str | None = None) -> list[DriftItem]:
    """Every difference (and one `equal` line per category without any), category by
    category. `staged`: module → version staged on the secondary (updates); the primary
    role's `interface_pattern` is checked against the secondary's NICs."""
    items: list[DriftItem] = []
    if primary.image_version != secondary.image_version:
        items.append(DriftItem("image", _COMPATIBLE, f"{primary.image_version or 'unknown'} on the "
                               f"primary, {secondary.image_version or 'unknown'} on the secondary"))
    else:
        items.append(DriftItem("image", _EQUAL, primary.image_version or "not an ATLAS image"))
    items.extend(compare_packages(primary.packages, secondary.packages))
    items.append(compare_kernel(primary.kernel_release, secondary.kernel_release))
    items.extend(compare_modules(primary.modules, secondary.modules, staged or {}))
    items.extend(compare_hardware(primary, secondary, interface_pattern))
    return items


def summary(items: list[DriftItem]) -> dict[str, int]:
    counts: dict[str, int] = {c: 0 for c in DriftClass}
    for item in items:
        counts[item.klass] += 1
    return counts
