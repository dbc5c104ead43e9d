"""`atlas sync-serve`: the door both servers answer through, wired to the concerns that
answer it — the Synchronizer's listing, manifest and pull, the update's stage and trial.

peer/ owns the protocol and the serving; this command hands it the answers, so that the
door imports no concern and the Synchronizer and the update can both use the door.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from atlas_services.errors import AtlasError
from atlas_services.paths import Layout
from atlas_services.peer import server

SERVE_EPILOG = """\
Not for interactive use: sshd runs it on the primary for the sync key (forced command)
and it answers only: hello, list, manifest, results, send-config GEN [PARENT],
send-module NAME VERSION [PARENT] (on a secondary, for the primary: hello, results, pull,
trial); anything else is refused and logged.
"""


def _list(layout: Layout) -> Any:
    from atlas_services.store.config import ConfigStore
    from atlas_services.store.modules import ModuleStore
    from atlas_services.sync import listing

    return listing.list_stores(ConfigStore(layout.config_store),
                               ModuleStore(layout.module_store, layout.formats_file)).to_json()


def _manifest(layout: Layout) -> Any:
    from atlas_services.store.modules import ModuleStore
    from atlas_services.sync import manifest

    return manifest.collect(ModuleStore(layout.module_store, layout.formats_file), layout).to_json()


def _pull(layout: Layout) -> Any:
    """On the secondary: sync from the primary now (as the timer would) and report."""
    from atlas_services.peer import client
    from atlas_services.sync import session

    return session.run(client.target_from_dataset(layout), layout).to_json()


def _trial(layout: Layout) -> Any:
    """On the secondary: the update on trial here, with its green cycles so far."""
    from atlas_services.update import trial

    return trial.trial_reply(layout)


def _staged(layout: Layout) -> dict[str, Any]:
    """On the primary: the updates it stages for a trial on the secondary ({"staged": …}),
    or why they cannot be told ({"staged_error": …}: the secondary leaves its trials alone)."""
    from atlas_services.update import record

    try:
        return record.staged_reply(layout.update_record)
    except AtlasError as err:
        return {"staged_error": str(err)}


# Each is imported only for its own verb: the forced command runs for every request and
# must start fast.
ANSWERS = server.Answers(
    json={"list": _list, "manifest": _manifest, "pull": _pull, "trial": _trial},
    primary_hello=_staged)


def serve(command: str | None, layout: Layout, out: Any) -> int:
    """Answer one request with this server's answers (tests call it directly)."""
    return server.serve(command, layout, ANSWERS, out)


def serve_command(args: argparse.Namespace) -> int:
    server.journal_logging()
    return serve(os.environ.get("SSH_ORIGINAL_COMMAND"), args.layout, sys.stdout.buffer)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "sync-serve", help="(on the primary) answer the secondary's sync requests; sshd's forced command",
        epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=serve_command)
