"""Every path ATLAS uses on the box, in one place (FHS: code /usr, defaults /usr/lib/atlas,
admin config /etc/atlas, state /var/lib/atlas, runtime /run/atlas)."""

from __future__ import annotations

from pathlib import Path

OS_RELEASE = Path("/usr/lib/os-release")
DEFAULTS_DIR = Path("/usr/lib/atlas")
CONFIG_DIR = Path("/etc/atlas")
STATE_DIR = Path("/var/lib/atlas")
RUN_DIR = Path("/run/atlas")
ROLE_FILE = RUN_DIR / "role.json"
