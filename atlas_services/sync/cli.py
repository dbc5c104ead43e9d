"""`atlas sync --now | status` on the secondary."""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from atlas_services import clock, settings
from atlas_services.errors import EXIT_FAILED, EXIT_OK, AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.peer.failures import SyncError
from atlas_services.roles import Role, read_role
from atlas_services.sync import drift, state

# The puller's machinery (runner, client, transfer) loads only for `atlas sync`: the
# primary's forced command, run for every request, stays small and starts fast.
if TYPE_CHECKING:
    from atlas_services.peer import client
    from atlas_services.sync import session

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

logger = logging.getLogger(__name__)

SYNC_EPILOG = """\
The secondary pulls from the primary over SSH with the cluster's sync key (from the data
set), the primary's host key pinned; atlas-sync.timer runs it on the secondary every
sync_interval_s seconds (atlas.json, default 300) after the previous sync ended.
exit codes: 0 ok, 1 the sync failed (the status says why; the last good state is kept),
            2 refused (e.g. this server is not the secondary).
examples:
  atlas sync --now
  atlas sync --now --check          # what a sync would fetch, and the drift; changes nothing
  atlas sync status
  atlas sync status --json
"""



# ---------------------------------------------------------------- the status text


def _ago(when: str | None, at: datetime) -> str:
    if when is None:
        return "never"
    return f"{when} ({clock.span(at - clock.parse_time(when), days=True)} ago)"


def _generations(numbers: tuple[int, ...]) -> str:
    if not numbers:
        return "none"
    return f"newest {numbers[-1]} ({len(numbers)} generation{'s' if len(numbers) != 1 else ''})"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _stale_after_s(layout: Layout) -> int:
    """The freshness threshold in force; a damaged atlas.json must not hide the status."""
    try:
        return settings.load(layout).sync_stale_after_s
    except AtlasError:
        return settings.Settings().sync_stale_after_s


def format_status(s: state.SyncState, at: datetime, stale_after_s: int) -> str:
    headline = (f" — last success {_ago(s.last_success, at)}" if s.status != "never"
                else ": this server has not synchronized yet")
    fresh = state.freshness(s, at, stale_after_s)
    rows = [("sync", s.status + headline),
            ("fresh", f"{fresh.status}: {fresh.message}"),
            ("last try", _ago(s.last_attempt, at)
             + (f", took {s.duration_s:.1f} s" if s.last_attempt else ""))]
    if s.error_kind or s.last_error:
        rows.append(("error", f"[{s.error_kind}] {s.last_error}"))
    if s.peer:
        rows.append(("primary", s.peer))
    rows.append(("config", f"primary {_generations(s.primary_generations)}; secondary "
                 f"{_generations(s.secondary_generations)}; applied {s.applied_generation or '-'}"))
    for name in sorted(s.primary_modules.keys() | s.secondary_modules.keys()):
        theirs, ours = s.primary_modules.get(name), s.secondary_modules.get(name)
        rows.append(("module", f"{name}: selected {theirs.selected if theirs else '-'} on the primary, "
                     f"{ours.selected if ours else '-'} here"))
    rows.append(("transfer", f"{s.transfer.streams} stream(s), {_size(s.transfer.bytes)} in "
                 f"{s.transfer.seconds:.1f} s"))
    counts = drift.summary(list(s.drift))
    rows.append(("drift", ", ".join(f"{n} {c}" for c, n in counts.items() if n) or "not checked yet"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    marks = {drift.DriftClass.INCOMPATIBLE: "!", drift.DriftClass.COMPATIBLE: "~"}
    for item in sorted(s.drift, key=lambda d: d.klass is not drift.DriftClass.INCOMPATIBLE):
        if item.klass in marks:
            lines.append(f"  {marks[item.klass]} {item.klass:<12} {item.item}: {item.reason}")
    lines += [f"  note: {note}" for note in s.notes]
    return "\n".join(lines)


# ---------------------------------------------------------------- atlas sync


def _target(args: argparse.Namespace) -> client.Target:
    address, port = None, 22
    if args.primary:
        address, sep, port_text = args.primary.rpartition(":")
        if not sep:
            address, port_text = args.primary, "22"
        if not port_text.isdigit() or not 0 < int(port_text) < 65536 or not address:
            raise Refused(f"--primary {args.primary!r} is not ADDRESS[:PORT]")
        port = int(port_text)
    from atlas_services.peer import client

    return client.target_from_dataset(args.layout, address=address, port=port)


def sync_command(args: argparse.Namespace) -> int:
    if args.verb == "status":
        return status_command(args)
    if not args.now:
        raise Refused("say what to do: 'atlas sync --now' or 'atlas sync status'")
    layout = args.layout
    role = read_role(layout.role_file).role
    if role is not Role.SECONDARY:
        raise Refused(f"this server is {role}, not the secondary: the Synchronizer pulls on the secondary"
                      if isinstance(role, Role) else
                      f"this server's role is {role} ({layout.role_file}): the Synchronizer runs on "
                      "the secondary")
    from atlas_services.sync import session

    try:
        target = _target(args)
    except SyncError as err:
        if not args.check:
            session.record_failure(layout, err)
        raise
    if args.check:
        report = session.check(target, layout)
        if args.json:
            print(json.dumps(report.to_json(), indent=2))
        else:
            _print_check(report)
        return EXIT_OK
    result = session.run(target, layout)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_status(result, clock.utcnow(), _stale_after_s(layout)))
    return EXIT_OK if result.status == "ok" else EXIT_FAILED


def _print_check(report: session.CheckReport) -> None:
    fetch = ", ".join(f"{f.number}" + (f" (on {f.parent})" if f.parent else " (full)")
                      for f in report.config.fetch)
    print(f"generations to fetch: {fetch or 'none'}")
    if report.config.superseded:
        print(f"generations superseded: {', '.join(map(str, report.config.superseded))}")
    print("module versions to fetch: "
          + (", ".join(f"{m.module} {m.version}" for m in report.modules) or "none"))
    selections = ", ".join(f"{s.module} {s.version}" for s in report.selections)
    print(f"selections to make: {selections or 'none'}")
    for item in report.drift:
        print(f"  {item.klass:<12} {item.item}: {item.reason}")


def _still_running(lock_file: Path) -> bool:
    """Whether a sync holds the lock now (a record saying "running" without one was killed)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def status_command(args: argparse.Namespace) -> int:
    layout = args.layout
    current = state.read(layout.sync_state)
    if args.json:
        print(json.dumps(current.to_json(), indent=2))
        return EXIT_OK
    if current.status == "running" and not _still_running(layout.sync_lock):
        current = replace(current, status="interrupted",
                          notes=("the last sync was killed before it finished; the next one cleans up "
                                 "after it", *current.notes))
    print(format_status(current, clock.utcnow(), _stale_after_s(layout)))
    return EXIT_OK


# ---------------------------------------------------------------- registration


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "sync", help="pull the primary's configuration, modules and manifest (on the secondary)",
        description="The Sentry Synchronizer: keep this secondary tracking the primary.",
        epilog=SYNC_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--now", action="store_true", help="sync now")
    parser.add_argument("--check", action="store_true",
                        help="with --now: only compare and show what a sync would do")
    parser.add_argument("--primary", metavar="ADDRESS[:PORT]",
                        help="connect here instead of the primary's address (its host key stays pinned)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=sync_command, verb=None)
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", dest="verb")
    status = verbs.add_parser("status", help="last attempt and success, generations, drift")
    # SUPPRESS: `atlas sync --json status` keeps --json.
    status.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print machine-readable JSON")
