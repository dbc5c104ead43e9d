"""The `atlas` command: argument parsing and the one error handler."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from atlas_services import __version__, cluster, dataset, errors, log, role, status
from atlas_services.store import cli as store_cli
from atlas_services.sync import cli as sync_cli

# Each module that owns a verb registers its own subcommand.
COMMAND_MODULES = (status, role, cluster, dataset, store_cli, sync_cli)

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
  atlas sync status
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas",
        description="ATLAS high-availability appliance: on-box control.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"atlas {__version__}")
    parser.add_argument("--debug", action="store_true", help="show commands run and tracebacks")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    log.setup("atlas", debug=args.debug)
    result: int = args.func(args)
    return result


def entry() -> int:
    return errors.run_main("atlas", main, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(entry())
