"""A cluster for tests and the lab (`atlas cluster init` without the command line): shop1 and
shop2 of shop.test, with fresh keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from atlas_services import cluster
from atlas_services.roles import DATASET_ROLES

HOSTNAMES = ("shop1", "shop2")
ADDRESSES = ("10.77.0.10/24", "10.77.0.11/24")
DOMAIN = "shop.test"


def make_cluster(directory: Path, *, interface: str = "*", gateway: str = "10.77.0.1",
                 dns: Sequence[str] = ("10.77.0.1",), force: bool = False) -> cluster.Cluster:
    """Create a cluster (identities of both roles and fresh keys) in `directory`."""
    roles = {role: {"hostname": hostname, "address": address, "gateway": gateway, "dns": list(dns),
                    "interface": interface}
             for role, hostname, address in zip(DATASET_ROLES, HOSTNAMES, ADDRESSES,
                                                strict=True)}
    the_cluster = cluster.Cluster.from_json(
        {"cluster_id": str(uuid.uuid4()), "domain": DOMAIN, "roles": roles})
    cluster.create(the_cluster, directory, force=force)
    return the_cluster
