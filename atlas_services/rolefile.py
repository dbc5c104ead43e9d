"""Reading /run/atlas/role.json, the record of the role this boot took (written by
atlas-role.service). One reader for every command that asks "what am I?"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from atlas_services import paths

UNKNOWN = "unknown"  # no role.json: role detection has not run on this boot
UNREADABLE = "unreadable"


def read(role_file: Path = paths.ROLE_FILE) -> dict[str, Any]:
    """The whole record; {} when there is none or it cannot be read."""
    try:
        data = json.loads(role_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def current(role_file: Path = paths.ROLE_FILE) -> str:
    """primary, secondary, standby, refused — or unknown / unreadable."""
    try:
        data = json.loads(role_file.read_text())
    except FileNotFoundError:
        return UNKNOWN
    except (OSError, ValueError):
        return UNREADABLE
    role = data.get("role") if isinstance(data, dict) else None
    return role if isinstance(role, str) else UNKNOWN
