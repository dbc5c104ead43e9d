"""The data set's identity file, `/.atlas/volume.json`: format, validation, reading, writing.

The file says which role a set of disks is and carries that role's identity, so identity
follows the disks. Every read validates every field; a newer format is refused rather
than half-understood.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from atlas_services import fsutil, paths, untrusted
from atlas_services.errors import Refused
from atlas_services.roles import DATASET_ROLES, Role

FORMAT_VERSION = 1
LABEL = "atlas-data"
HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
INTERFACE = re.compile(r"[A-Za-z0-9_.:*-]{1,15}")


class VolumeProblem(StrEnum):
    """Why a volume.json could not be used; each is its own refusal reason."""

    MISSING = "missing"
    UNREADABLE = "unreadable"
    INVALID = "invalid"
    NEWER_FORMAT = "newer-format"


class VolumeError(Refused):
    def __init__(self, problem: VolumeProblem, what: str) -> None:
        super().__init__(what)
        self.problem = problem


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise VolumeError(VolumeProblem.INVALID, f"{where}: '{key}' is missing")
    value = data[key]
    if type(value) is not kind:
        raise VolumeError(VolumeProblem.INVALID,
                          f"{where}: '{key}' must be {kind.__name__}, not {type(value).__name__}")
    return value


def _uuid(value: str, key: str, where: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise VolumeError(VolumeProblem.INVALID, f"{where}: '{key}' is not a UUID") from None


def _no_extra(data: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise VolumeError(VolumeProblem.INVALID, f"{where}: unknown field(s) {', '.join(extra)}")


@dataclass(frozen=True)
class Identity:
    """Who a role is on the network: the same on whichever server holds its disks."""

    hostname: str
    address: str  # IPv4 with prefix, e.g. 192.168.1.10/24
    gateway: str  # "" for none
    dns: tuple[str, ...]
    interface: str  # the business NIC by name (glob allowed), e.g. eno1 or en*

    FIELDS = ("hostname", "address", "gateway", "dns", "interface")

    @property
    def ip(self) -> str:
        return str(ipaddress.IPv4Interface(self.address).ip)

    @property
    def prefix(self) -> int:
        return ipaddress.IPv4Interface(self.address).network.prefixlen

    @classmethod
    def from_json(cls, data: Any, where: str = "identity") -> Identity:
        if not isinstance(data, dict):
            raise VolumeError(VolumeProblem.INVALID, f"{where}: expected an object")
        _no_extra(data, set(cls.FIELDS), where)
        hostname = _require(data, "hostname", str, where)
        if not HOSTNAME.fullmatch(hostname):
            raise VolumeError(VolumeProblem.INVALID, f"{where}: hostname {hostname!r} is not a "
                              "valid host name (a-z, 0-9, '-', up to 63)")
        address = _require(data, "address", str, where)
        try:
            iface = ipaddress.IPv4Interface(address)
        except ValueError:
            raise VolumeError(VolumeProblem.INVALID,
                              f"{where}: address {address!r} is not IPv4/prefix") from None
        if "/" not in address:
            raise VolumeError(VolumeProblem.INVALID, f"{where}: address needs a prefix, e.g. /24")
        network = iface.network
        if network.prefixlen < 31 and iface.ip in (network.network_address,
                                                    network.broadcast_address):
            what = "network" if iface.ip == network.network_address else "broadcast"
            raise VolumeError(VolumeProblem.INVALID, f"{where}: address {address} is the {what} "
                              f"address of {network}, not a host's")
        if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified:
            raise VolumeError(VolumeProblem.INVALID,
                              f"{where}: address {address} cannot be a server's address")
        gateway = _require(data, "gateway", str, where)
        if gateway:
            try:
                gateway_ip = ipaddress.IPv4Address(gateway)
                if gateway_ip not in iface.network:
                    raise VolumeError(VolumeProblem.INVALID,
                                      f"{where}: gateway {gateway} is outside {iface.network}")
                if gateway_ip == iface.ip:
                    raise VolumeError(VolumeProblem.INVALID,
                                      f"{where}: gateway {gateway} is the server's own address")
            except ValueError:
                raise VolumeError(VolumeProblem.INVALID,
                                  f"{where}: gateway {gateway!r} is not IPv4") from None
        dns = _require(data, "dns", list, where)
        for server in dns:
            try:
                ipaddress.ip_address(server)
            except (ValueError, TypeError):
                raise VolumeError(VolumeProblem.INVALID,
                                  f"{where}: DNS server {server!r} is not an address") from None
        interface = _require(data, "interface", str, where)
        if not INTERFACE.fullmatch(interface):
            raise VolumeError(VolumeProblem.INVALID, f"{where}: interface {interface!r} is not "
                              "an interface name")
        return cls(hostname=hostname, address=str(iface), gateway=gateway, dns=tuple(dns),
                   interface=interface)

    def to_json(self) -> dict[str, Any]:
        return {"hostname": self.hostname, "address": self.address, "gateway": self.gateway,
                "dns": list(self.dns), "interface": self.interface}


@dataclass(frozen=True)
class Volume:
    """The contents of volume.json."""

    cluster_id: str
    dataset_id: str
    role: Role
    generation: int
    identity: Identity
    created: str  # ISO 8601, UTC
    format_version: int = FORMAT_VERSION

    FIELDS = ("format_version", "cluster_id", "dataset_id", "role", "generation", "identity",
              "created")

    @classmethod
    def from_json(cls, data: Any, where: str = "volume.json") -> Volume:
        if not isinstance(data, dict):
            raise VolumeError(VolumeProblem.INVALID, f"{where}: expected a JSON object")
        version = _require(data, "format_version", int, where)
        if version > FORMAT_VERSION:
            raise VolumeError(VolumeProblem.NEWER_FORMAT,
                              f"{where}: format {version} is newer than this ATLAS reads "
                              f"({FORMAT_VERSION})")
        if version < 1:
            raise VolumeError(VolumeProblem.INVALID, f"{where}: format {version} is not valid")
        _no_extra(data, set(cls.FIELDS), where)
        role = _require(data, "role", str, where)
        if role not in DATASET_ROLES:
            raise VolumeError(VolumeProblem.INVALID, f"{where}: role {role!r} is not one of "
                              f"{', '.join(DATASET_ROLES)}")
        generation = _require(data, "generation", int, where)
        if generation < 0:
            raise VolumeError(VolumeProblem.INVALID, f"{where}: generation is negative")
        created = _require(data, "created", str, where)
        try:
            datetime.fromisoformat(created)
        except ValueError:
            raise VolumeError(VolumeProblem.INVALID, f"{where}: created {created!r} is not an "
                              "ISO 8601 time") from None
        return cls(
            format_version=version,
            cluster_id=_uuid(_require(data, "cluster_id", str, where), "cluster_id", where),
            dataset_id=_uuid(_require(data, "dataset_id", str, where), "dataset_id", where),
            role=Role(role),
            generation=generation,
            identity=Identity.from_json(_require(data, "identity", dict, where),
                                        f"{where}: identity"),
            created=created,
        )

    def to_json(self) -> dict[str, Any]:
        return {"format_version": self.format_version, "cluster_id": self.cluster_id,
                "dataset_id": self.dataset_id, "role": self.role, "generation": self.generation,
                "identity": self.identity.to_json(), "created": self.created}

    def bumped(self) -> Volume:
        return replace(self, generation=self.generation + 1)


def meta_dir(dataset_root: Path) -> Path:
    return dataset_root / paths.DATASET_META


def volume_path(dataset_root: Path) -> Path:
    return meta_dir(dataset_root) / paths.VOLUME_FILE


def parse(text: str, where: str = "volume.json") -> Volume:
    try:
        data = untrusted.parse_json(text)
    except ValueError as err:
        raise VolumeError(VolumeProblem.UNREADABLE, f"{where} is not JSON: {err}") from None
    return Volume.from_json(data, where)


def read(dataset_root: Path) -> Volume:
    """Read and validate a mounted data set's volume.json: a regular file of at most 64 KiB
    reached through no symlink (a data set is untrusted: a FIFO or /dev/zero there must not
    hang or exhaust the box)."""
    path = volume_path(dataset_root)
    try:
        text = untrusted.read_text(path, below=dataset_root)
    except FileNotFoundError:
        raise VolumeError(VolumeProblem.MISSING, f"{path} does not exist") from None
    except (OSError, ValueError) as err:
        raise VolumeError(VolumeProblem.UNREADABLE,
                          f"{path} cannot be read: {untrusted.describe(err)}") from None
    return parse(text, str(path))


def write(dataset_root: Path, volume: Volume) -> None:
    text = json.dumps(volume.to_json(), indent=2, sort_keys=True) + "\n"
    fsutil.write_atomic(volume_path(dataset_root), text.encode(), mode=0o644)
