"""`atlas status`: one screen that says what this server is and how it is doing."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from atlas_services import __version__, osinfo
from atlas_services.paths import Layout
from atlas_services.roles import NoRole, Role, read_role
from atlas_services.verify import report as verify_report


@dataclass(frozen=True)
class ServerStatus:
    hostname: str
    atlas_version: str
    image_id: str
    image_version: str
    role: str
    role_reason: str
    verify: str = ""  # the Verifier's last cycle, one line
    update: tuple[str, ...] = ()  # an update staged (primary) or on trial (secondary)

    def to_text(self) -> str:
        rows = [
            ("host", self.hostname),
            ("role", self.role + (f" ({self.role_reason})" if self.role_reason else "")),
            ("image", f"{self.image_id} {self.image_version}".strip()),
            ("atlas", self.atlas_version),
        ]
        if self.verify:
            rows.append(("verify", self.verify))
        rows += [("update", line) for line in self.update]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _role(layout: Layout) -> tuple[Role | NoRole, str]:
    record = read_role(layout.role_file)
    if record.role is NoRole.UNREADABLE:
        return NoRole.UNKNOWN, f"{layout.role_file} is unreadable"
    if record.role is NoRole.UNKNOWN:
        return NoRole.UNKNOWN, "role detection has not run on this boot"
    return record.role, record.reason


def collect(layout: Layout = Layout()) -> ServerStatus:
    release = osinfo.os_release(layout)
    role, reason = _role(layout)
    return ServerStatus(
        hostname=osinfo.hostname(),
        atlas_version=__version__,
        image_id=release.get("IMAGE_ID", ""),
        image_version=release.get("IMAGE_VERSION", "not an ATLAS image"),
        role=role,
        role_reason=reason,
        verify=verify_report.summary_line(layout),
        update=_update(role, layout),
    )


def _update(role: str, layout: Layout) -> tuple[str, ...]:
    from atlas_services import settings
    from atlas_services.errors import AtlasError
    from atlas_services.update import view

    try:
        required = settings.load(layout).promote_green_cycles
    except AtlasError:
        required = settings.Settings().promote_green_cycles
    return tuple(view.lines(role, required, layout))


def command(args: argparse.Namespace) -> int:
    status = collect(args.layout)
    print(json.dumps(asdict(status), indent=2) if args.json else status.to_text())
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "status",
        help="show what this server is and how it is doing",
        description="Show this server's role, image and ATLAS version.",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=command)
