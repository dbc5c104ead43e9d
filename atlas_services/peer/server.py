"""`atlas sync-serve`: the forced command both servers run for the cluster's sync key.

sshd runs it for every connection made with the sync key (authorized_keys:
`restrict,from=…,command="/usr/bin/atlas sync-serve"`), whatever the client asked for; the
request is parsed by peer/protocol.py, never by a shell. The primary serves the reads a
sync needs; a secondary answers the primary's `atlas failover prepare` and `atlas update`
through the same door, with fewer verbs (Role.serves). No verb writes anything the client
names. A request outside the role's verbs is refused (exit 2) and logged.

What each verb answers is handed in (`Answers`): the door itself knows the stores it streams
and the files it reads, not what a sync or an update does with them. Where the stores are
comes from this command's own layout (the forced command line), never from the client.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from atlas_services import __version__, cluster, log, messages, osinfo, proc, untrusted
from atlas_services.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.peer.protocol import (
    MAX_REQUEST,
    PROTOCOL,
    STREAM_VERBS,
    VERBS,
    Request,
    RequestRefused,
    parse_request,
)
from atlas_services.roles import NoRole, Role, read_role
from atlas_services.store.config import ConfigStore
from atlas_services.store.modules import ModuleStore

logger = logging.getLogger(__name__)

MAX_RESULTS_BYTES = 4 * 2**20
# A stream the secondary stops reading is ended; a sync is itself ended after 30 min.
SEND_TIMEOUT_S = 30 * 60

JsonAnswer = Callable[[Layout], Any]


@dataclass(frozen=True)
class Answers:
    """What the concerns answer through the door (door.py wires them): JSON verbs by name,
    and what the primary adds to its hello (the updates it stages)."""

    json: Mapping[str, JsonAnswer] = field(default_factory=dict)
    primary_hello: Callable[[Layout], dict[str, Any]] = field(default=lambda layout: dict[str, Any]())


def hello(layout: Layout, answers: Answers) -> dict[str, Any]:
    role = read_role(layout.role_file).role
    the_cluster = cluster.find_on_dataset(layout.data_root)
    reply = {"protocol": PROTOCOL, "atlas_version": __version__, "verbs": list(VERBS),
             "hostname": osinfo.hostname(), "role": role,
             "cluster_id": the_cluster.cluster_id if the_cluster else None}
    if role is Role.PRIMARY:
        # What the secondary should try; in the hello, every sync learns it without another
        # round trip, and a secondary that predates updates ignores it.
        reply.update(answers.primary_hello(layout))
    return reply


def results(layout: Layout) -> dict[str, Any]:
    """The Verifier's latest cycle, as this server wrote it."""
    try:
        raw = untrusted.read_bytes(layout.verify_latest, MAX_RESULTS_BYTES)
    except FileNotFoundError:
        return {"available": False, "results": None}
    except OSError as err:
        raise AtlasError(f"{layout.verify_latest} is unreadable: {untrusted.describe(err)}") from None
    try:
        data = untrusted.parse_json(raw)
    except ValueError:
        raise AtlasError(f"{layout.verify_latest} is not JSON (being rewritten?)") from None
    return {"available": True, "results": data}


def _send(subvolume: Path, parent: Path | None, out: int) -> None:
    argv: list[str | os.PathLike[str]] = ["btrfs", "send", "-q"]
    if parent is not None:
        argv += ["-p", parent]
    proc.run_to_fd([*argv, subvolume], stdout=out, timeout=SEND_TIMEOUT_S,
                   hint="btrfs-progs must be installed")


def send_config(layout: Layout, args: tuple[str, ...], out: int) -> None:
    store = ConfigStore(layout.config_store)
    store.require()
    generation = store.path(int(args[0]))  # refuses a generation that is not finished
    parent = store.path(int(args[1])) if len(args) > 1 else None
    _send(generation, parent, out)


def send_module(layout: Layout, args: tuple[str, ...], out: int) -> None:
    store = ModuleStore(layout.module_store, layout.formats_file)
    version = store.path(args[0], args[1])
    parent = store.path(args[0], args[2]) if len(args) > 2 else None
    _send(version, parent, out)


def _client() -> str:
    return (os.environ.get("SSH_CONNECTION") or "local").split(" ")[0]


def _refuse(request: str, shown: str, reason: str, told: str) -> int:
    """Log a refusal (the journal keeps the request as asked) and tell the client why."""
    log.event(messages.SYNC_SERVE_REFUSED, f"ATLAS sync-serve refused {shown} from {_client()}: {reason}",
              priority=4, client=_client(), request=request, reason=reason)
    print(f"atlas sync-serve: refused: {told}", file=sys.stderr)
    return EXIT_REFUSED


def _answer(request: Request, layout: Layout, answers: Answers, out: BinaryIO) -> None:
    if request.verb in STREAM_VERBS:
        out.flush()
        sender = send_config if request.verb == "send-config" else send_module
        sender(layout, request.args, out.fileno())
        return
    json_verbs: dict[str, JsonAnswer] = {"hello": lambda lay: hello(lay, answers), "results": results,
                                         **answers.json}
    reply = json_verbs[request.verb](layout)
    out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
    out.flush()


def serve(command: str | None, layout: Layout, answers: Answers, out: BinaryIO) -> int:
    """Answer one request on `out` (the SSH channel). Returns the exit code."""
    try:
        request = parse_request(command)
    except RequestRefused as err:
        shown = (command or "")[:MAX_REQUEST].encode("unicode_escape").decode()
        return _refuse(shown, repr(shown), str(err), str(err))
    role: Role | NoRole = read_role(layout.role_file).role
    if request.verb not in role.serves:
        reason = f"not served by a {role}"
        return _refuse(str(request), str(request), reason, f"{request.verb} is not served by a {role}")
    logger.info("sync-serve: %s for %s", request, _client())
    try:
        _answer(request, layout, answers, out)
    except Refused as err:
        print(f"atlas sync-serve: refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except AtlasError as err:
        print(f"atlas sync-serve: {err}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def journal_logging() -> None:
    """The channel's stderr goes back to the client: log to the journal where there is one,
    and only warnings to stderr elsewhere."""
    root = logging.getLogger()
    if Path("/run/systemd/journal/socket").exists():
        try:
            from systemd import journal
        except ImportError:
            pass
        else:
            root.handlers[:] = [journal.JournalHandler(SYSLOG_IDENTIFIER="atlas-sync-serve")]
            return
    root.setLevel(logging.WARNING)
