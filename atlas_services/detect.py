"""Role detection: probe the facts (disks, data sets, the network), then decide — the
decision itself is a pure function of those facts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from atlas_services import blockdev, dataset, proc, volume
from atlas_services.errors import AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.roles import Role
from atlas_services.settings import Settings
from atlas_services.volume import Volume, VolumeError, VolumeProblem

logger = logging.getLogger(__name__)


class Reason(StrEnum):
    """Why: a stable code for scripts and the journal, beside the human sentence."""

    OK = "ok"
    DEGRADED = "degraded"
    NO_DATASET = "no-dataset"
    TWO_DATASETS = "two-datasets"
    FOREIGN_CLUSTER = "foreign-cluster"
    VOLUME_MISSING = "volume-missing"
    VOLUME_UNREADABLE = "volume-unreadable"
    VOLUME_INVALID = "volume-invalid"
    VOLUME_NEWER_FORMAT = "volume-newer-format"
    RAID_BELOW_POLICY = "raid-below-policy"
    ADDRESS_IN_USE = "address-in-use"
    ERROR = "error"  # taking the role failed on this server; see the journal


VOLUME_REASONS = {
    VolumeProblem.MISSING: Reason.VOLUME_MISSING,
    VolumeProblem.UNREADABLE: Reason.VOLUME_UNREADABLE,
    VolumeProblem.INVALID: Reason.VOLUME_INVALID,
    VolumeProblem.NEWER_FORMAT: Reason.VOLUME_NEWER_FORMAT,
}


@dataclass(frozen=True)
class DataSetFacts:
    """One btrfs file system labelled atlas-data, as found on this machine."""

    fsid: str
    devices: tuple[str, ...]  # members present
    expected_devices: int  # members the file system says it has
    volume: Volume | None
    problem: VolumeProblem | None = None
    problem_text: str = ""

    @property
    def missing_devices(self) -> int:
        return max(self.expected_devices - len(self.devices), 0)

    def to_json(self) -> dict[str, Any]:
        return {"fsid": self.fsid, "devices": list(self.devices),
                "expected_devices": self.expected_devices,
                "volume": self.volume.to_json() if self.volume else None,
                "problem": self.problem if self.problem else None,
                "problem_text": self.problem_text}


@dataclass(frozen=True)
class Facts:
    datasets: tuple[DataSetFacts, ...]
    known_cluster: str | None  # the cluster this OS disk has served before, if any
    address_in_use: bool | None = None  # None: not probed (yet)


@dataclass(frozen=True)
class Decision:
    role: Role
    reason: Reason
    message: str
    dataset: DataSetFacts | None = None
    degraded: bool = False

    @property
    def volume(self) -> Volume | None:
        return self.dataset.volume if self.dataset else None

    @property
    def target(self) -> str:
        return self.role.target

    def to_json(self) -> dict[str, Any]:
        vol = self.volume
        return {"role": self.role, "reason_code": self.reason,
                "reason": self.message, "degraded": self.degraded, "target": self.target,
                "cluster_id": vol.cluster_id if vol else None,
                "dataset_id": vol.dataset_id if vol else None,
                "generation": vol.generation if vol else None,
                "hostname": vol.identity.hostname if vol else None,
                "address": vol.identity.address if vol else None,
                "dataset": self.dataset.to_json() if self.dataset else None}


def _refuse(reason: Reason, message: str, ds: DataSetFacts | None = None) -> Decision:
    return Decision(Role.REFUSED, reason, message, ds)


def decide(facts: Facts, settings: Settings) -> Decision:
    """Which role this server takes, from the facts alone."""
    if not facts.datasets:
        return Decision(Role.STANDBY, Reason.NO_DATASET, "no data set found")
    if len(facts.datasets) > 1:
        names = "; ".join(", ".join(ds.devices) for ds in facts.datasets)
        return _refuse(Reason.TWO_DATASETS, f"{len(facts.datasets)} data sets present ({names}): "
                       "remove all but one")
    ds = facts.datasets[0]
    degraded = ds.missing_devices > 0
    if degraded:
        redundant = ds.expected_devices >= 2 and ds.missing_devices == 1
        if not (redundant and settings.allow_degraded_raid):
            return _refuse(Reason.RAID_BELOW_POLICY,
                           f"data set has {len(ds.devices)} of {ds.expected_devices} disks, "
                           "below what the RAID policy allows", ds)
    if ds.volume is None:
        problem = ds.problem or VolumeProblem.UNREADABLE
        return _refuse(VOLUME_REASONS[problem], ds.problem_text or "volume.json unusable", ds)
    vol = ds.volume
    if facts.known_cluster and vol.cluster_id != facts.known_cluster:
        return _refuse(Reason.FOREIGN_CLUSTER, f"data set belongs to cluster {vol.cluster_id}, "
                       f"this server to {facts.known_cluster}", ds)
    if facts.address_in_use:
        return _refuse(Reason.ADDRESS_IN_USE, f"address {vol.identity.ip} already answered on "
                       f"the network: another server holds the {vol.role} role", ds)
    if degraded:
        return Decision(vol.role, Reason.DEGRADED,
                        f"{vol.role} on a DEGRADED data set: {len(ds.devices)} of "
                        f"{ds.expected_devices} disks present — replace the missing disk", ds,
                        degraded=True)
    return Decision(vol.role, Reason.OK, f"{vol.role} data set {vol.dataset_id}", ds)


# ---------------------------------------------------------------- probing


def _expected_devices(device: str) -> int:
    """The member count the btrfs superblock records."""
    out = proc.run(["btrfs", "inspect-internal", "dump-super", device],
                   timeout=dataset.SCAN_TIMEOUT_S).stdout
    for line in out.splitlines():
        if line.startswith("num_devices"):
            return int(line.split()[1])
    raise Refused(f"{device}: no num_devices in the btrfs superblock")


def find_datasets(devices: Sequence[Path] | None = None) -> dict[str, list[str]]:
    """fsid → member devices of every btrfs file system labelled atlas-data."""
    found: dict[str, list[str]] = {}
    candidates = list(devices) if devices is not None else blockdev.kernel_devices()
    for probe in blockdev.probe_all(candidates):
        if probe.fstype == "btrfs" and probe.label == volume.LABEL and probe.uuid:
            found.setdefault(probe.uuid, []).append(str(probe.device))
    return found


def read_dataset(fsid: str, members: list[str], layout: Layout = Layout()) -> DataSetFacts:
    expected = _expected_devices(members[0])
    facts = DataSetFacts(fsid=fsid, devices=tuple(members), expected_devices=expected,
                         volume=None)
    try:
        with dataset.mounted([Path(m) for m in members], readonly=True,
                             degraded=len(members) < expected, layout=layout) as root:
            return replace(facts, volume=volume.read(root))
    except VolumeError as err:
        return replace(facts, problem=err.problem, problem_text=str(err))
    except AtlasError as err:  # refused, or the mount itself failed
        return replace(facts, problem=VolumeProblem.UNREADABLE, problem_text=str(err))


def probe_facts(known_cluster: str | None, devices: Sequence[Path] | None = None,
                layout: Layout = Layout()) -> Facts:
    datasets = tuple(read_dataset(fsid, members, layout)
                     for fsid, members in sorted(find_datasets(devices).items()))
    return Facts(datasets=datasets, known_cluster=known_cluster)


def address_answered(interface: str, address: str, seconds: int = 1) -> bool:
    """IPv4 duplicate-address detection (RFC 5227 probe) on the business interface."""
    proc.run(["ip", "link", "set", "dev", interface, "up"], ok_codes=proc.ANY_EXIT, timeout=10)
    result = proc.run(["arping", "-D", "-q", "-I", interface, "-c", str(seconds), "-w",
                       str(seconds + 1), address], ok_codes=proc.ANY_EXIT, timeout=seconds + 10)
    # arping -D: exit 0 when nobody answered, 1 when a reply came (address in use).
    if result.returncode == 0:
        return False
    if result.returncode == 1 and not result.stderr.strip():
        return True
    logger.warning("duplicate-address probe on %s failed: %s", interface,
                result.stderr.strip() or f"arping exit {result.returncode}")
    return False
