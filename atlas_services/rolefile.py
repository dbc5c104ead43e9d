"""Reading /run/atlas/role.json, the record of the role this boot took (written by
atlas-role.service). One reader for every command that asks "what am I?"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from atlas_services import paths

UNKNOWN = "unknown"  # no role.json: role detection has not run on this boot
UNREADABLE = "unreadable"


def record(role_file: Path = paths.ROLE_FILE) -> tuple[str, dict[str, Any]]:
    """(role, whole record). The role is primary, secondary, standby, refused — or
    UNKNOWN / UNREADABLE; the record is {} when there is none or it cannot be read."""
    try:
        data = json.loads(role_file.read_text())
    except FileNotFoundError:
        return UNKNOWN, {}
    except (OSError, ValueError):
        return UNREADABLE, {}
    if not isinstance(data, dict):
        return UNKNOWN, {}
    role = data.get("role")
    return (role if isinstance(role, str) else UNKNOWN), data


def read(role_file: Path = paths.ROLE_FILE) -> dict[str, Any]:
    """The whole record; {} when there is none or it cannot be read."""
    return record(role_file)[1]


def current(role_file: Path = paths.ROLE_FILE) -> str:
    """primary, secondary, standby, refused — or UNKNOWN / UNREADABLE."""
    return record(role_file)[0]
