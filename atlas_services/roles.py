"""The one role type, from detection to every reader of /run/atlas/role.json: what each
role starts (its target), which server it talks to (its peer), and which verbs it answers
through the door (peer/)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Role(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    STANDBY = "standby"  # no data set: nothing to serve
    REFUSED = "refused"  # a data set is here but must not be used; standby with a reason

    @property
    def has_dataset(self) -> bool:
        """The data set is mounted and the business services run (primary or secondary)."""
        return self in DATASET_ROLES

    @property
    def target(self) -> str:
        """The systemd target this role starts."""
        return f"atlas-{self}.target" if self.has_dataset else "atlas-standby.target"

    @property
    def peer(self) -> Role | None:
        """The other server of the pair: the one this role lets in through its door."""
        return _PEERS.get(self)

    @property
    def serves(self) -> frozenset[str]:
        """The door's verbs this role answers (names only: peer/protocol owns the verbs)."""
        return _SERVES.get(self, frozenset({"hello"}))


# The roles a data set can carry (volume.json, cluster.json), in that order.
DATASET_ROLES = (Role.PRIMARY, Role.SECONDARY)
_PEERS = {Role.PRIMARY: Role.SECONDARY, Role.SECONDARY: Role.PRIMARY}
# The primary serves what a sync reads; the secondary answers the primary's questions
# (`atlas failover prepare`, `atlas update`). Anything else (standby, refused) only says hello.
_SERVES = {
    Role.PRIMARY: frozenset({"hello", "list", "manifest", "results", "send-config", "send-module"}),
    Role.SECONDARY: frozenset({"hello", "results", "pull", "trial"}),
}


class NoRole(StrEnum):
    """Why there is no role to read."""

    UNKNOWN = "unknown"  # no role.json: role detection has not run on this boot
    UNREADABLE = "unreadable"  # role.json is there but cannot be read or names no role

    @property
    def has_dataset(self) -> bool:
        return False

    @property
    def serves(self) -> frozenset[str]:
        return frozenset({"hello"})


@dataclass(frozen=True)
class RoleRecord:
    """/run/atlas/role.json, the record of the role this boot took (atlas-role.service)."""

    role: Role | NoRole
    data: Mapping[str, Any] = field(default_factory=dict)  # the whole record; {} without one

    @property
    def reason(self) -> str:
        return str(self.data.get("reason", ""))

    @property
    def hostname(self) -> str | None:
        value = self.data.get("hostname")
        return value if isinstance(value, str) else None

    @property
    def devices(self) -> list[str]:
        """The data set's member devices, as detection found them."""
        dataset = self.data.get("dataset")
        devices = dataset.get("devices") if isinstance(dataset, dict) else None
        return [str(d) for d in devices] if isinstance(devices, list) else []


def read_role(role_file: Path) -> RoleRecord:
    """The one reader of role.json, for every command that asks "what am I?"."""
    try:
        data = json.loads(role_file.read_text())
    except FileNotFoundError:
        return RoleRecord(NoRole.UNKNOWN)
    except (OSError, ValueError):
        return RoleRecord(NoRole.UNREADABLE)
    if not isinstance(data, dict):
        return RoleRecord(NoRole.UNKNOWN)
    value = data.get("role")
    if not isinstance(value, str):
        return RoleRecord(NoRole.UNKNOWN, data)
    try:
        return RoleRecord(Role(value), data)
    except ValueError:
        return RoleRecord(NoRole.UNREADABLE, data)
