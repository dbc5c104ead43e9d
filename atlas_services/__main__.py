"""The `atlas` command: argument parsing and the one error handler."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from atlas_services import __version__, errors, log
from atlas_services.paths import Layout

# Each module that owns a verb registers its own subcommand(s). Only the module of the
# verb being run is imported: the boot-time role service and timers start faster.
COMMANDS = {
    "status": "atlas_services.status",
    "role": "atlas_services.role",
    "cluster": "atlas_services.cluster",
    "disks": "atlas_services.dataset",
    "config": "atlas_services.store.cli",
    "module": "atlas_services.store.cli",
    "verify": "atlas_services.verify.cli",
    "failover": "atlas_services.failover",
    "sync": "atlas_services.sync.cli",
    "sync-serve": "atlas_services.door",
    "update": "atlas_services.update.cli",
}

EPILOG = """\
exit codes: 0 ok, 1 a check or operation failed, 2 usage error or refused input.
examples:
  atlas status
  atlas status --json
  atlas role detect
  atlas cluster init --help
  atlas disks init --role primary /dev/sdb /dev/sdc
  atlas config log
  atlas module list
  atlas verify --now
  atlas sync status
  atlas update status
"""


def _modules_for(argv: Sequence[str]) -> list[str]:
    """The command module the first verb names, or all of them (help, typos)."""
    words = [a for i, a in enumerate(argv) if i == 0 or argv[i - 1] != "--root"]
    verb = next((a for a in words if not a.startswith("-")), None)
    if verb in COMMANDS and not {"-h", "--help"} & set(argv[: argv.index(verb)]):
        return [COMMANDS[verb]]
    return list(dict.fromkeys(COMMANDS.values()))


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas",
        description="ATLAS high-availability appliance: on-box control.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"atlas {__version__}")
    parser.add_argument("--debug", action="store_true", help="show commands run and tracebacks")
    # Where the box's tree is: "/" on the box; tests and benchmarks run ATLAS on a tree of
    # their own below a directory (paths.Layout.under).
    parser.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in _modules_for(argv):
        importlib.import_module(name).register(commands)
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser(argv).parse_args(argv)
    log.setup("atlas", debug=args.debug)
    args.layout = Layout(args.root)
    result: int = args.func(args)
    return result


def entry() -> int:
    return errors.run_main("atlas", main, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(entry())
