"""`atlas cluster init|show`: a cluster's identity and its keys, made once, fresh.

The cluster directory (default /etc/atlas/cluster, mode 0700) holds everything both data
sets are provisioned from:

    cluster.json                 cluster id, domain, the primary's and secondary's identity
    primary/ssh_host_*_key[.pub] the primary role's SSH host keys
    secondary/ssh_host_*_key[.pub]
    sync/id_ed25519[.pub]        the cluster's sync key pair (the Synchronizer's login)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas_services import fsutil, paths, proc, untrusted
from atlas_services.errors import Refused
from atlas_services.paths import Layout
from atlas_services.roles import DATASET_ROLES, Role
from atlas_services.volume import Identity, VolumeError

CLUSTER_FILE = "cluster.json"
HOST_KEY_TYPES = ("ed25519", "rsa")
SYNC_KEY = "sync/id_ed25519"
# A DNS domain (RFC 1123 labels, lower case): it is written into the postfix, nginx and
# dovecot configurations, so nothing else — no space, no newline, no quote — may pass.
DOMAIN = re.compile(r"(?=.{1,253}$)((?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)")


def check_domain(domain: str, where: str) -> str:
    if domain and not DOMAIN.fullmatch(domain):
        raise Refused(f"{where}: domain {domain!r} is not a DNS domain (lower-case labels of "
                      "a-z, 0-9 and '-', separated by dots, e.g. shop.example)")
    return domain


@dataclass(frozen=True)
class Cluster:
    cluster_id: str
    domain: str
    identities: dict[Role, Identity]

    @classmethod
    def from_json(cls, data: Any, where: str = CLUSTER_FILE) -> Cluster:
        if not isinstance(data, dict) or set(data) != {"cluster_id", "domain", "roles"}:
            raise Refused(f"{where}: expected cluster_id, domain and roles")
        try:
            cluster_id = str(uuid.UUID(str(data["cluster_id"])))
        except ValueError:
            raise Refused(f"{where}: cluster_id is not a UUID") from None
        roles = data["roles"]
        if not isinstance(roles, dict) or set(roles) != set(DATASET_ROLES):
            raise Refused(f"{where}: roles must name exactly {' and '.join(DATASET_ROLES)}")
        if not isinstance(data["domain"], str):
            raise Refused(f"{where}: domain must be a string")
        check_domain(data["domain"], where)
        try:
            identities = {role: Identity.from_json(roles[role], f"{where}: {role}")
                          for role in DATASET_ROLES}
        except VolumeError as err:
            raise Refused(str(err)) from None
        cluster = cls(cluster_id=cluster_id, domain=data["domain"], identities=identities)
        cluster.check()
        return cluster

    def check(self) -> None:
        primary, secondary = self.identities[Role.PRIMARY], self.identities[Role.SECONDARY]
        if primary.hostname == secondary.hostname:
            raise Refused("the primary and the secondary need different host names")
        if primary.ip == secondary.ip:
            raise Refused("the primary and the secondary need different addresses")
        # The secondary pulls from the primary's address: on different subnets each needs a
        # gateway, or the two can never reach each other.
        networks = {role: ipaddress.IPv4Interface(ident.address).network
                    for role, ident in self.identities.items()}
        if networks[Role.PRIMARY] != networks[Role.SECONDARY]:
            without = [role for role, ident in self.identities.items() if not ident.gateway]
            if without:
                raise Refused(f"the primary ({networks[Role.PRIMARY]}) and the secondary "
                              f"({networks[Role.SECONDARY]}) are on different subnets and the "
                              f"{' and the '.join(without)} has no gateway: they could never sync",
                              "put both on one subnet, or give each a --gateway")

    def to_json(self) -> dict[str, Any]:
        return {"cluster_id": self.cluster_id, "domain": self.domain,
                "roles": {role: ident.to_json() for role, ident in self.identities.items()}}


def load(directory: Path) -> Cluster:
    path = directory / CLUSTER_FILE
    try:
        data = untrusted.load_json(path)
    except FileNotFoundError:
        raise Refused(f"no cluster in {directory}", "create one with 'atlas cluster init'") from None
    except (OSError, ValueError) as err:
        raise Refused(f"{path} is unreadable: {untrusted.describe(err)}") from None
    cluster = Cluster.from_json(data, str(path))
    missing = [str(p) for p in key_files(directory) if not p.exists()]
    if missing:
        raise Refused(f"the cluster in {directory} lacks key files: {', '.join(missing)}")
    return cluster


class NoCluster(Refused):
    """No cluster.json where a data set should carry one (no data set mounted there)."""


def on_dataset(data_root: Path) -> Cluster:
    """The cluster as a mounted data set carries it (/.atlas/cluster.json): the one reader
    of that file, for everything that needs the peer's or its own identity."""
    path = data_root / paths.DATASET_META / paths.CLUSTER_COPY
    try:
        data = untrusted.load_json(path, below=data_root)
    except FileNotFoundError:
        raise NoCluster(f"no data set with {paths.CLUSTER_COPY} at {data_root}") from None
    except (OSError, ValueError) as err:
        raise Refused(f"{path} is unreadable: {untrusted.describe(err)}") from None
    return Cluster.from_json(data, str(path))


def find_on_dataset(data_root: Path) -> Cluster | None:
    """The data set's cluster, or None where there is none that can be read."""
    try:
        return on_dataset(data_root)
    except Refused:
        return None


def host_key_files(directory: Path, role: Role) -> list[Path]:
    return [directory / role / f"ssh_host_{kind}_key" for kind in HOST_KEY_TYPES]


def key_files(directory: Path) -> list[Path]:
    keys = [k for role in DATASET_ROLES for k in host_key_files(directory, role)]
    keys.append(directory / SYNC_KEY)
    return keys + [k.with_name(k.name + ".pub") for k in keys]


def _keygen(path: Path, kind: str, comment: str) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    proc.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", path])


def create(cluster: Cluster, directory: Path, force: bool = False) -> None:
    """Write the cluster file and fresh keys; the directory appears complete or not at all."""
    if (directory / CLUSTER_FILE).exists() and not force:
        raise Refused(f"{directory} already holds a cluster",
                      "use it, or add --force to replace it (the old keys are lost)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cluster-", dir=directory.parent))
    try:
        staging.chmod(0o700)
        for role in DATASET_ROLES:
            for kind in HOST_KEY_TYPES:
                _keygen(staging / role / f"ssh_host_{kind}_key", kind,
                        f"{cluster.identities[role].hostname} ({role})")
        _keygen(staging / SYNC_KEY, "ed25519", f"atlas-sync@{cluster.cluster_id}")
        fsutil.write_atomic(staging / CLUSTER_FILE,
                            (json.dumps(cluster.to_json(), indent=2) + "\n").encode(), 0o600)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _identity(args: argparse.Namespace, role: Role) -> dict[str, Any]:
    return {"hostname": getattr(args, f"{role}_hostname"),
            "address": getattr(args, f"{role}_address"),
            "gateway": args.gateway, "dns": args.dns, "interface": args.interface}


def init_command(args: argparse.Namespace) -> int:
    cluster = Cluster.from_json({
        "cluster_id": str(uuid.uuid4()), "domain": args.domain,
        "roles": {role: _identity(args, role) for role in DATASET_ROLES}}, "cluster")
    directory = args.dir or args.layout.cluster_dir
    create(cluster, directory, args.force)
    print(f"cluster {cluster.cluster_id} created in {directory}")
    print("next: provision each server's disks with 'atlas disks init --role primary|secondary DEV...'")
    return 0


def show_command(args: argparse.Namespace) -> int:
    cluster = load(args.dir or args.layout.cluster_dir)
    if args.json:
        print(json.dumps(cluster.to_json(), indent=2))
        return 0
    print(f"cluster  {cluster.cluster_id}  domain {cluster.domain or '-'}")
    for role, ident in cluster.identities.items():
        print(f"{role:9} {ident.hostname}  {ident.address}  gw {ident.gateway or '-'}  "
              f"dns {','.join(ident.dns) or '-'}  on {ident.interface}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("cluster", help="create or show the cluster's identity and keys")
    verbs = parser.add_subparsers(metavar="VERB", required=True)
    init = verbs.add_parser(
        "init", help="create a new cluster: identities of both roles and fresh keys",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  atlas cluster init --domain shop.example --interface eno1 \\\n"
               "      --primary-hostname shop1 --primary-address 192.168.1.10/24 \\\n"
               "      --secondary-hostname shop2 --secondary-address 192.168.1.11/24 \\\n"
               "      --gateway 192.168.1.1 --dns 192.168.1.1")
    for role in DATASET_ROLES:
        init.add_argument(f"--{role}-hostname", required=True, metavar="NAME")
        init.add_argument(f"--{role}-address", required=True, metavar="IP/PREFIX")
    init.add_argument("--gateway", default="", metavar="IP")
    init.add_argument("--dns", action="append", default=[], metavar="IP",
                      help="a DNS server (repeat for more)")
    init.add_argument("--interface", required=True, metavar="NAME",
                      help="the business network interface on both servers (e.g. eno1)")
    init.add_argument("--domain", default="", help="mail and web domain")
    init.add_argument("--dir", type=Path, default=None,
                      help=f"where to keep the cluster (default {Layout().cluster_dir})")
    init.add_argument("--force", action="store_true", help="replace an existing cluster")
    init.set_defaults(func=init_command)
    show = verbs.add_parser("show", help="show the cluster's identities")
    show.add_argument("--dir", type=Path, default=None)
    show.add_argument("--json", action="store_true", help="print machine-readable JSON")
    show.set_defaults(func=show_command)
