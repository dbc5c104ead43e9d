"""Where a cycle goes: latest + bounded history on disk, journal and mail on change, textfile, page."""

from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from atlas_services import clock, fsutil, log, messages, paths, results
from atlas_services.errors import AtlasError
from atlas_services.paths import Layout
from atlas_services.results import Cycle, Status, StatusChange, changes
from atlas_services.verify import page, textfile

logger = logging.getLogger(__name__)

# Default history: a day of cycles at the default 2-minute period.
HISTORY_CYCLES = 720
# syslog priorities (the journal's PRIORITY=).
PRIORITY_ERR, PRIORITY_WARNING, PRIORITY_NOTICE = 3, 4, 5


# ---------------------------------------------------------------- on disk





def load_previous(path: Path) -> Cycle | None:
    """The last cycle for change detection; a damaged file counts as none (and is logged)."""
    try:
        return results.read_cycle(path)
    except AtlasError as err:
        logger.warning("ignoring the previous cycle: %s", err)
        return None


def save_latest(cycle: Cycle, layout: Layout) -> None:
    fsutil.write_atomic(layout.verify_latest, json.dumps(cycle.to_json(), indent=1) + "\n", 0o644)


def bounded_history(lines: Sequence[str], new: str, limit: int) -> list[str]:
    """The history's lines after adding `new`: the newest `limit` (pure)."""
    kept = [line for line in lines if line.strip()]
    return [*kept, new][-limit:] if limit > 0 else []


def append_history(cycle: Cycle, layout: Layout, limit: int) -> None:
    try:
        lines = layout.verify_history.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    new = json.dumps(cycle.to_json(), separators=(",", ":"))
    kept = bounded_history(lines, new, limit)
    fsutil.write_atomic(layout.verify_history, "".join(f"{line}\n" for line in kept), 0o644)


def load_history(layout: Layout, limit: int | None = None) -> list[Cycle]:
    """This server's recorded cycles, oldest first."""
    return results.read_history(layout.verify_history, limit)


# ---------------------------------------------------------------- journal


@dataclass(frozen=True)
class JournalEntry:
    message: str
    message_id: str
    priority: int
    fields: dict[str, str]


JournalSink = Callable[[JournalEntry], None]


def journal_entry(change: StatusChange) -> JournalEntry:
    """The one journal entry a state change makes (pure)."""
    r = change.result
    message_id, priority = {
        Status.OK: (messages.VERIFY_PROBE_RECOVERED, PRIORITY_NOTICE),
        Status.DEGRADED: (messages.VERIFY_PROBE_DEGRADED, PRIORITY_WARNING),
        Status.FAILED: (messages.VERIFY_PROBE_FAILED, PRIORITY_ERR),
    }[r.status]
    return JournalEntry(
        message=f"verify: {change.describe()}",
        message_id=message_id,
        priority=priority,
        fields={"ATLAS_PROBE": r.probe, "ATLAS_TARGET": r.target, "ATLAS_STATUS": r.status,
                "ATLAS_PREVIOUS_STATUS": change.previous, "ATLAS_ROLE": r.role,
                "ATLAS_HOST": r.host, "ATLAS_LATENCY_S": f"{r.latency_s:.3f}"},
    )


def send_to_journal(entry: JournalEntry) -> None:
    # log.event adds the ATLAS_ prefix itself.
    log.event(entry.message_id, entry.message, priority=entry.priority,
              **{name.removeprefix("ATLAS_").lower(): value for name, value in entry.fields.items()})


# ---------------------------------------------------------------- mail


class Notifier(Protocol):
    def notify(self, cycle: Cycle, changed: Sequence[StatusChange]) -> None: ...


def notification(cycle: Cycle, changed: Sequence[StatusChange], *, sender: str,
                 recipient: str) -> EmailMessage:
    """The administrator's mail for one cycle's changes (pure)."""
    worst_now = cycle.status.upper()
    bad = [c.probe for c in changed if not c.recovered]
    fixed = [c.probe for c in changed if c.recovered]
    parts = []
    if bad:
        parts.append(f"{', '.join(bad)} {'failing' if cycle.status is Status.FAILED else 'degraded'}")
    if fixed:
        parts.append(f"{', '.join(fixed)} recovered")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = f"[ATLAS {cycle.host} {cycle.role}] {worst_now}: {'; '.join(parts)}"
    lines = [f"The ATLAS verifier on {cycle.host} ({cycle.role}) saw a change at "
             f"{cycle.finished:%Y-%m-%d %H:%M:%S} UTC.", "", "Changed:"]
    lines += [f"  {c.describe()}" for c in changed]
    lines += ["", "All probes now:"]
    lines += [f"  {r.status:<9} {r.probe:<11} {r.message}" for r in cycle.results]
    lines += ["", "You get this mail once per change; nothing more while the state stays the same.",
              "Details: `atlas verify status` on the server, or its status page "
              f"({paths.STATUS_PAGE_URL})."]
    msg.set_content("\n".join(lines) + "\n")
    return msg


@dataclass(frozen=True)
class MailNotifier:
    """Mails the administrator through the box's own postfix (or any SMTP server given)."""

    recipient: str
    sender: str
    host: str = "localhost"
    port: int = 25
    timeout: float = 10.0

    def notify(self, cycle: Cycle, changed: Sequence[StatusChange]) -> None:
        msg = notification(cycle, changed, sender=self.sender, recipient=self.recipient)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.send_message(msg)


# ---------------------------------------------------------------- everything


@dataclass
class Publisher:
    """Publishes each cycle everywhere it goes; journal and mail only on a change."""

    layout: Layout = Layout()
    history_cycles: int = HISTORY_CYCLES
    journal: JournalSink = send_to_journal
    notifier: Notifier | None = None
    interval_s: int = 120
    now: Callable[[], dt.datetime] = clock.utcnow
    # The update staged or on trial, for the page: role → lines (see update.view).
    update_lines: Callable[[str], list[str]] | None = None

    def publish(self, cycle: Cycle) -> list[StatusChange]:
        self.layout.verify_dir.mkdir(parents=True, exist_ok=True)
        previous = load_previous(self.layout.verify_latest)
        changed = changes(previous, cycle)
        for change in changed:
            self.journal(journal_entry(change))
        save_latest(cycle, self.layout)
        append_history(cycle, self.layout, self.history_cycles)
        # The textfile and the page are views: one that cannot be written (no node-exporter
        # directory on a read-only /var/lib) must not cost the cycle its record or its mail.
        views: list[tuple[str, Callable[[], Path]]] = [
            ("Prometheus textfile", lambda: textfile.write_textfile(cycle, self.layout.textfile_dir)),
            ("status page", lambda: self.write_page(cycle)),
        ]
        for view, write in views:
            try:
                write()
            except OSError as err:
                logger.warning("could not write the %s: %s", view, err)
        if changed and self.notifier is not None:
            self._notify(cycle, changed)
        return changed

    def write_page(self, cycle: Cycle | None) -> Path:
        try:
            peer = results.read_cycle(self.layout.peer_results)
        except AtlasError as err:
            logger.warning("leaving the peer off the status page: %s", err)
            peer = None
        host = cycle.host if cycle else ""
        role = cycle.role if cycle else ""
        updates = self.update_lines(role) if self.update_lines is not None else []
        html = page.render_page(cycle, peer, host=host, role=role, now=self.now(),
                                interval_s=self.interval_s, updates=updates)
        return page.write_page(html, self.layout.status_page_dir)

    def _notify(self, cycle: Cycle, changed: Sequence[StatusChange]) -> None:
        assert self.notifier is not None
        try:
            self.notifier.notify(cycle, changed)
        except (OSError, smtplib.SMTPException) as err:
            # Mail may be the very thing that broke: the journal still has the change.
            self.journal(JournalEntry(
                message=f"verify: could not mail the administrator about {len(changed)} change(s): {err}",
                message_id=messages.VERIFY_NOTIFY_FAILED, priority=PRIORITY_WARNING,
                fields={"ATLAS_ROLE": cycle.role, "ATLAS_HOST": cycle.host}))


def summary_line(layout: Layout = Layout(), now: dt.datetime | None = None) -> str:
    """One line for `atlas status`: the last cycle's result and how long ago it ran."""
    latest = layout.verify_latest
    try:
        last = results.read_cycle(latest)
    except AtlasError as err:
        return f"unknown ({err.what})"
    if last is None:
        return "no verification cycle has run yet"
    return f"{last.summary()} ({clock.span((now or clock.utcnow()) - last.finished)} ago)"
