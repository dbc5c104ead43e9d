"""`atlas update stage | status | promote | rollback | abort`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas_services.errors import EXIT_OK

if TYPE_CHECKING:

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

EPILOG = """\
An update lands on the secondary first: `stage` installs a signed bundle on the primary
without selecting it, the secondary selects it at its next sync (`atlas sync --now` there
to start at once) and its Verifier exercises it; `promote` selects it on the primary only
after the secondary ran it green for promote_green_cycles consecutive cycles (atlas.json,
default 3). `rollback` undoes the newest step on both servers (the secondary follows at
its next sync); `abort` drops a staged version from the secondary.
exit codes: 0 done, 1 failed, 2 refused (nothing changed; the message says why).
examples:
  atlas update stage atlas_services-0.2.0.atlas     (on the primary; BUNDLE.sig beside it)
  atlas update status
  atlas update status --json
  atlas update promote
  atlas update rollback
  atlas update abort atlas_services
"""


def _print(args: argparse.Namespace, data: dict[str, Any], text: str, started: float) -> None:
    if args.json:
        print(json.dumps({**data, "seconds": round(time.monotonic() - started, 3)}, indent=2))
    else:
        print(text)


def stage_command(args: argparse.Namespace) -> int:
    from atlas_services.update import primary

    started = time.monotonic()
    result = primary.stage(args.layout, args.bundle, args.signature, one_way=args.one_way,
                           secondary=args.secondary)
    u = result.update
    text = [f"{u.module} {u.version} staged for a trial on the secondary "
            f"({'installed' if result.installed else 'already installed'} here, not selected; "
            f"the primary keeps {u.from_version or 'nothing'})",
            "the secondary selects it at its next sync ('atlas sync --now' there starts it now)"]
    text += [f"note: {n}" for n in result.notes]
    _print(args, result.to_json(), "\n".join(text), started)
    return EXIT_OK


def status_command(args: argparse.Namespace) -> int:
    from atlas_services.update import primary

    data = primary.status(args.layout, secondary=args.secondary)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(primary.format_status(data))
    return EXIT_OK


def promote_command(args: argparse.Namespace) -> int:
    from atlas_services.update import primary

    started = time.monotonic()
    result = primary.promote(args.layout, args.module, secondary=args.secondary)
    _print(args, result.to_json(), f"{result.module} {result.version} promoted: selected on the "
           f"primary (was {result.from_version or 'nothing'}); {result.reason}", started)
    return EXIT_OK


def rollback_command(args: argparse.Namespace) -> int:
    from atlas_services.update import primary

    started = time.monotonic()
    result = primary.rollback(args.layout, args.module)
    _print(args, result.to_json(), result.text, started)
    return EXIT_OK


def abort_command(args: argparse.Namespace) -> int:
    from atlas_services.update import primary

    started = time.monotonic()
    result = primary.abort(args.layout, args.module)
    _print(args, result.to_json(), result.text, started)
    return EXIT_OK


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "update", help="stage a module update on the secondary, promote it, roll it back",
        description="Updates that cannot break the primary: tried on the secondary first.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secondary", metavar="ADDRESS[:PORT]",
                        help="reach the secondary here instead of its role's address (its host key "
                             "stays pinned)")
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)

    p = verbs.add_parser("stage", help="check a signed bundle, install it unselected, try it on the "
                                       "secondary")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    p.add_argument("--signature", type=Path, default=None, metavar="SIG",
                   help="the detached signature (default: BUNDLE.sig)")
    p.add_argument("--one-way", action="store_true",
                   help="accept a version whose formats the current one cannot read (no rollback "
                        "once it ran)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=stage_command)

    p = verbs.add_parser("status", help="what is staged, green cycles on the secondary, what is required")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=status_command)

    for verb, func, text in (
            ("promote", promote_command, "select the staged version on the primary (once green enough)"),
            ("rollback", rollback_command, "undo the newest step: drop the trial, or reselect the "
                                           "previous version on the primary"),
            ("abort", abort_command, "drop the staged version from the secondary")):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("module", nargs="?", default=None, metavar="MODULE",
                       help="default: the staged module (rollback: else the last promoted one)")
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        p.set_defaults(func=func)
