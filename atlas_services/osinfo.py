"""What the running system says about itself: image version, hostname."""

from __future__ import annotations

import socket

from atlas_services.paths import Layout


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5) text: KEY=VALUE lines, values optionally quoted."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        fields[key] = value
    return fields


def os_release(layout: Layout = Layout()) -> dict[str, str]:
    path = layout.os_release
    try:
        return parse_os_release(path.read_text())
    except OSError:
        return {}


def hostname() -> str:
    return socket.gethostname()
