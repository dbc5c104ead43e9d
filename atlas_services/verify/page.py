"""The read-only status page: this server's last cycle and the peer's, green or red at a glance."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from atlas_services import clock, fsutil
from atlas_services.results import Cycle, Status, worst

TEMPLATE = "status.html.j2"
PAGE = "index.html"
# A cycle older than this many periods means the timer stopped: the page says so.
STALE_PERIODS = 3


@dataclass(frozen=True)
class ServerView:
    label: str
    cycle: Cycle | None
    status: str
    finished: str
    age: str
    stale: bool
    missing: str


def _view(label: str, cycle: Cycle | None, now: dt.datetime, interval_s: int, missing: str) -> ServerView:
    if cycle is None:
        return ServerView(label, None, "unknown", "", "", False, missing)
    age = now - cycle.finished
    stale = age.total_seconds() > STALE_PERIODS * interval_s
    status = Status.FAILED if stale else cycle.status
    return ServerView(label, cycle, status, f"{cycle.finished:%Y-%m-%d %H:%M:%S}", clock.span(age), stale, "")


def render_page(own: Cycle | None, peer: Cycle | None, *, host: str, role: str,
                now: dt.datetime, interval_s: int, updates: Sequence[str] = ()) -> str:
    """The HTML page (pure): one section per server, the worst status in the banner, and
    the update staged or on trial (`updates`, one line each)."""
    servers = [_view(f"this server ({role})", own, now, interval_s, "no verification cycle has run yet")]
    if peer is not None:
        servers.append(_view(f"peer ({peer.role})", peer, now, interval_s, ""))
    known = [Status(s.status) for s in servers if s.status != "unknown"]
    overall = worst(known) if known else "unknown"
    headline = {"ok": "All services verified", "degraded": "Services degraded",
                "failed": "SERVICES FAILING", "unknown": "Not verified yet"}[overall]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template(TEMPLATE).render(
        servers=servers, overall=overall, headline=headline, title=f"ATLAS {host} ({role})",
        now=f"{now:%Y-%m-%d %H:%M:%S}", updates=list(updates))


def write_page(html: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # nginx's workers read it
    target = directory / PAGE
    fsutil.write_atomic(target, html, 0o644)
    return target
