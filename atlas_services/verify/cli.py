"""`atlas verify`: run a cycle now, show the last one, or set up the verifier's accounts."""

from __future__ import annotations

import argparse
import json
from typing import Any

from atlas_services import osinfo, paths, results, settings
from atlas_services.errors import EXIT_FAILED, EXIT_OK, AtlasError, Refused
from atlas_services.results import Cycle, Status
from atlas_services.verify import cycle, environment

EPILOG = """\
exit codes: 0 every probe ok, 1 a probe is degraded or failed (or the cycle could not run),
2 usage error or refused (e.g. on a standby server).
examples:
  atlas verify --now              run every probe once, now, and report it
  atlas verify --now --json
  atlas verify status             the last cycle here, and the peer's if synced
  atlas verify status --json
  atlas verify setup              create or repair the verifier's accounts (idempotent)
"""


def format_cycle(c: Cycle, label: str = "") -> str:
    head = (f"{label or 'verify'}: {c.status.upper()} on {c.host} ({c.role}), "
            f"{len(c.results)} probes in {c.duration_s:.2f} s, finished {c.finished:%Y-%m-%d %H:%M:%S} UTC")
    width = max((len(r.probe) for r in c.results), default=5)
    rows = [f"  {r.status if r.ok else r.status.upper():<9} {r.probe:<{width}}  "
            f"{r.latency_s:6.2f} s  {r.message}" for r in c.results]
    return "\n".join([head, *rows])


def _exit(c: Cycle | None) -> int:
    return EXIT_OK if c is not None and c.status is Status.OK else EXIT_FAILED


def run_now(args: argparse.Namespace) -> int:
    layout = args.layout
    conf = settings.load(layout)
    targets = cycle.box_targets(conf, cycle.read_role(conf, layout), layout)
    result = cycle.run_once(targets, cycle.box_publisher(conf, layout))
    print(json.dumps(result.to_json(), indent=2) if args.json else format_cycle(result))
    return _exit(result)


def show_status(args: argparse.Namespace) -> int:
    layout = args.layout
    own = results.read_cycle(layout.verify_latest)
    peer = results.read_cycle(layout.peer_results)
    if args.json:
        out: dict[str, Any] = {"this": own.to_json() if own else None,
                               "peer": peer.to_json() if peer else None}
        print(json.dumps(out, indent=2))
    else:
        print(format_cycle(own, "this server") if own else "this server: no verification cycle has run yet")
        if peer:
            print(format_cycle(peer, "peer"))
        print(f"history: {layout.verify_history}; page: {paths.STATUS_PAGE_URL}")
    return _exit(own)


def setup(args: argparse.Namespace) -> int:
    hostname = osinfo.hostname()
    try:
        role = cycle.read_role(settings.load(args.layout), args.layout)
        domain, hostname = args.domain or role.domain, role.hostname
    except Refused:
        domain = args.domain
    data_root = args.layout.data_root
    env = environment.Environment(data_root=data_root, domain=domain or hostname,
                                  hostname=hostname)
    if not data_root.is_dir():
        raise AtlasError(f"no data set is mounted at {data_root}",
                         "the verifier's accounts live on the data set")
    done = environment.ensure(env)
    if args.json:
        print(json.dumps({"changed": done}, indent=2))
    else:
        print("\n".join(f"verify setup: {d}" for d in done) or "verify setup: nothing to do")
    return EXIT_OK


def dispatch(args: argparse.Namespace) -> int:
    if args.now:
        return run_now(args)
    raise Refused("say what to do: --now, status or setup", "see 'atlas verify --help'")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "verify", help="exercise every business service now, or show the last results",
        description="The Sentry Verifier: exercises web, mail, database and file services with real "
                    "clients, and checks RAID, free space, sync, clock and failed units.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--now", action="store_true", help="run one cycle now and report it")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=dispatch)
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    status = actions.add_parser("status", help="show the last cycle here and the peer's")
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    status.set_defaults(func=show_status)
    prepare = actions.add_parser("setup", help="create or repair the verifier's accounts (idempotent)")
    prepare.add_argument("--domain", help="the mail domain (default: the role's, else the host name)")
    prepare.add_argument("--json", action="store_true", help="print machine-readable JSON")
    prepare.set_defaults(func=setup)

