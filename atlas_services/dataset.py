"""Data sets: provisioning a role's disks (`atlas disks init`) and mounting them.

A data set is a btrfs file system labelled `atlas-data` across 1–N disks (raid1 for two
or more), carrying `/.atlas/volume.json`, `/.atlas/cluster.json` (both roles' public
identities) and `/.atlas/secrets/` (0700): the role's SSH host keys, the known_hosts
entries of both roles, and the cluster's sync key pair.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from atlas_services import blockdev, cluster, fsutil, paths, proc, volume
from atlas_services.errors import Refused
from atlas_services.paths import Layout
from atlas_services.roles import DATASET_ROLES, Role
from atlas_services.volume import Volume

# Disks of one data set may differ this much in size; raid1 only uses the smallest.
SIZE_TOLERANCE = 0.10
KNOWN_HOSTS = "known_hosts"
# On the boot path (role detection mounts each data set found): a disk that stops answering
# ends in a refusal that says so, well inside atlas-role.service's own timeout.
SCAN_TIMEOUT_S = 30
MOUNT_TIMEOUT_S = 60
SYNC_KEY_NAME = "sync_ed25519"


def meta(root: Path) -> Path:
    return volume.meta_dir(root)


def secrets(root: Path) -> Path:
    return meta(root) / paths.SECRETS_DIR


@contextlib.contextmanager
def mounted(devices: Sequence[Path], *, readonly: bool, degraded: bool = False,
            where: Path | None = None, layout: Layout = Layout()) -> Iterator[Path]:
    """Mount a (possibly multi-device) btrfs data set; unmount when done.

    Read-only mounts also skip log replay, so looking at a data set never writes to it.
    """
    proc.run(["btrfs", "device", "scan", *devices], timeout=SCAN_TIMEOUT_S)
    # A data set is untrusted: device nodes and set-id programs on it mean nothing here.
    options = ["ro", "rescue=nologreplay"] if readonly else ["rw", "noatime"]
    options += ["nodev", "nosuid"]
    if degraded:
        options.append("degraded")
    with contextlib.ExitStack() as stack:
        if where is None:
            layout.run_dir.mkdir(parents=True, exist_ok=True)
            where = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="mnt-", dir=layout.run_dir)))
        proc.run(["mount", "-t", "btrfs", "-o", ",".join(options), devices[0], where],
                 timeout=MOUNT_TIMEOUT_S)
        try:
            yield where
        finally:
            proc.run(["umount", where], ok_codes=proc.ANY_EXIT, timeout=MOUNT_TIMEOUT_S)


def _existing_volume(device: Path) -> Volume | None:
    """The volume.json of the ATLAS data set a device belongs to, if it can be read."""
    try:
        with mounted([device], readonly=True, degraded=True) as root:
            return volume.read(root)
    except Refused:
        return None


@dataclass(frozen=True)
class Plan:
    """A checked provisioning request: nothing in it has touched a disk yet."""

    cluster: cluster.Cluster
    cluster_dir: Path
    role: Role
    devices: tuple[Path, ...]
    wipe: bool


def check_sizes(sizes: dict[Path, int]) -> None:
    largest, smallest = max(sizes.values()), min(sizes.values())
    if largest and (largest - smallest) / largest > SIZE_TOLERANCE:
        listing = ", ".join(f"{d} {s / 2**30:.1f} GiB" for d, s in sizes.items())
        raise Refused(f"the disks differ in size by more than {SIZE_TOLERANCE:.0%}: {listing}",
                      "use disks of the same size")


def plan(cluster_dir: Path, role: Role, devices: Sequence[Path], force: bool) -> Plan:
    """Every guard, before anything is written."""
    the_cluster = cluster.load(cluster_dir)
    if not devices:
        raise Refused("name at least one disk")
    resolved = [Path(d).resolve() for d in devices]
    if len(set(resolved)) != len(resolved):
        raise Refused("a disk is named twice")
    sizes = {d: blockdev.check_writable_disk(d) for d in resolved}
    check_sizes(sizes)
    wipe = False
    for device in resolved:
        found = blockdev.probe(device)
        if found.empty:
            continue
        if found.label == volume.LABEL:
            existing = _existing_volume(device)
            if existing and existing.cluster_id != the_cluster.cluster_id:
                raise Refused(f"{device} holds a data set of cluster {existing.cluster_id}, not "
                              f"{the_cluster.cluster_id}",
                              "if it really is to be reused, erase it first with wipefs -a")
        if not force:
            raise Refused(f"{device} holds {found.describe()}",
                          "add --force to erase it (everything on it is lost)")
        wipe = True
    return Plan(the_cluster, cluster_dir, role, tuple(resolved), wipe)


def _write_meta(root: Path, p: Plan) -> Volume:
    ident = p.cluster.identities[p.role]
    vol = Volume(cluster_id=p.cluster.cluster_id, dataset_id=str(uuid.uuid4()), role=p.role,
                 generation=0, identity=ident,
                 created=datetime.now(UTC).isoformat(timespec="seconds"))
    meta(root).mkdir(mode=0o755)
    fsutil.write_atomic(meta(root) / paths.CLUSTER_COPY,
                        (json.dumps(p.cluster.to_json(), indent=2) + "\n").encode())
    secret_dir = secrets(root)
    secret_dir.mkdir(mode=0o700)
    for key in cluster.host_key_files(p.cluster_dir, p.role):
        fsutil.write_atomic(secret_dir / key.name, key.read_bytes(), 0o600)
        pub = key.with_name(key.name + ".pub")
        fsutil.write_atomic(secret_dir / pub.name, pub.read_bytes(), 0o644)
    sync_key = p.cluster_dir / cluster.SYNC_KEY
    fsutil.write_atomic(secret_dir / SYNC_KEY_NAME, sync_key.read_bytes(), 0o600)
    fsutil.write_atomic(secret_dir / (SYNC_KEY_NAME + ".pub"),
                        sync_key.with_name(sync_key.name + ".pub").read_bytes(), 0o644)
    fsutil.write_atomic(secret_dir / KNOWN_HOSTS, known_hosts(p.cluster, p.cluster_dir).encode(),
                        0o644)
    volume.write(root, vol)
    return vol


def known_hosts(the_cluster: cluster.Cluster, cluster_dir: Path) -> str:
    """known_hosts lines pinning both roles' host keys to their names and addresses."""
    lines = []
    for role, ident in the_cluster.identities.items():
        for key in cluster.host_key_files(cluster_dir, role):
            kind, blob = key.with_name(key.name + ".pub").read_text().split()[:2]
            lines.append(f"{ident.hostname},{ident.ip} {kind} {blob}")
    return "\n".join(lines) + "\n"


def provision(p: Plan, layout: Layout = Layout()) -> Volume:
    if p.wipe:
        for device in p.devices:
            proc.run(["wipefs", "-a", "-q", device], timeout=60)
    profile = ["-d", "raid1", "-m", "raid1"] if len(p.devices) > 1 else ["-d", "single", "-m", "dup"]
    proc.run(["mkfs.btrfs", "-q", "-f", "-L", volume.LABEL, *profile, *p.devices], timeout=600)
    with mounted(list(p.devices), readonly=False, layout=layout) as root:
        vol = _write_meta(root, p)
        proc.run(["sync", "-f", root], timeout=600)
    return vol


def init_command(args: argparse.Namespace) -> int:
    the_plan = plan(args.cluster_dir or args.layout.cluster_dir, args.role, args.devices, args.force)
    vol = provision(the_plan, args.layout)
    kind = "raid1" if len(the_plan.devices) > 1 else "single disk"
    print(f"{args.role} data set {vol.dataset_id} ({kind}) on "
          f"{', '.join(str(d) for d in the_plan.devices)} for {vol.identity.hostname} "
          f"({vol.identity.address}), cluster {vol.cluster_id}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("disks", help="provision a role's data set on disks")
    verbs = parser.add_subparsers(metavar="VERB", required=True)
    init = verbs.add_parser(
        "init", help="make a data set for a role across the given disks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Create a btrfs data set (raid1 across two or more disks) for the "
                    "primary or the secondary role. Refuses disks that hold anything unless "
                    "--force, and always refuses mounted disks, the system disk, disks of "
                    f"sizes more than {SIZE_TOLERANCE:.0%} apart and another cluster's data set.",
        epilog="example:\n  atlas disks init --role primary /dev/sdb /dev/sdc")
    init.add_argument("--role", required=True, type=Role, choices=DATASET_ROLES)
    init.add_argument("--cluster-dir", type=Path, default=None,
                      help=f"the cluster made by 'atlas cluster init' (default {Layout().cluster_dir})")
    init.add_argument("--force", action="store_true", help="erase disks that hold data")
    init.add_argument("devices", nargs="+", type=Path, metavar="DEVICE")
    init.set_defaults(func=init_command)

