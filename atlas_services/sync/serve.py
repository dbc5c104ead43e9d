"""`atlas sync-serve`: the forced command the primary runs for the cluster's sync key.

sshd runs it for every connection made with the sync key (authorized_keys:
`restrict,from=…,command="/usr/bin/atlas sync-serve"`), whatever the client asked for; the
client's request arrives only as text in SSH_ORIGINAL_COMMAND and is parsed here, never by
a shell. Only these read verbs exist:

    hello                               protocol, version, role, cluster id, and on the
                                        primary the updates it stages for a trial on the
                                        secondary (JSON)
    list                                generations and module versions with identities (JSON)
    manifest                            the environment manifest (JSON)
    results                             the Verifier's latest results (JSON)
    send-config GEN [PARENT]            btrfs send stream of generation GEN
    send-module NAME VERSION [PARENT]   btrfs send stream of a module version

A secondary answers the primary's `atlas failover prepare` and `atlas update` through the
same door, with fewer verbs: `hello`, `results`, `pull` (sync from the primary now, then
say how it went) and `trial` (the update on trial here: green cycles so far). No verb
writes anything the client names.

Anything else — a shell command, another verb, a missing or extra argument, a character
outside [A-Za-z0-9 ._+~-], a path — is refused (exit 2) and logged. Where the stores are
comes from this command's own arguments (the forced command line), never from the client.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from atlas_services import __version__, cluster, log, messages, osinfo, proc
from atlas_services.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.roles import Role, read_role
from atlas_services.store import bundle
from atlas_services.store.config import ConfigStore
from atlas_services.store.modules import ModuleStore
from atlas_services.sync import listing, manifest

logger = logging.getLogger(__name__)

PROTOCOL = 1
MAX_REQUEST = 200
MAX_RESULTS_BYTES = 4 * 2**20
_ALLOWED = re.compile(r"[A-Za-z0-9 ._+~-]*")
_GENERATION = re.compile(r"[1-9][0-9]{0,8}")
Pattern = re.Pattern[str]


class RequestRefused(Exception):
    """The request is not one sync-serve answers; the reason is safe to show the client."""


@dataclass(frozen=True)
class Verb:
    required: tuple[tuple[str, Pattern], ...] = ()
    optional: tuple[tuple[str, Pattern], ...] = ()


VERBS: dict[str, Verb] = {
    "hello": Verb(),
    "list": Verb(),
    "manifest": Verb(),
    "results": Verb(),
    "trial": Verb(),
    "send-config": Verb((("GEN", _GENERATION),), (("PARENT", _GENERATION),)),
    "send-module": Verb((("NAME", bundle.NAME_PATTERN), ("VERSION", bundle.VERSION_PATTERN)),
                        (("PARENT", bundle.VERSION_PATTERN),)),
    "pull": Verb(),
}


@dataclass(frozen=True)
class Request:
    verb: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return " ".join((self.verb, *self.args))


def parse_request(command: str | None) -> Request:
    """Parse the client's request strictly: a known verb and exactly its arguments, each
    matching its pattern. Raises RequestRefused naming the first thing wrong."""
    if command is None:
        raise RequestRefused("no request: the sync key cannot open a shell")
    if not command:
        raise RequestRefused("empty request")
    if len(command) > MAX_REQUEST:
        raise RequestRefused(f"request longer than {MAX_REQUEST} characters")
    if not _ALLOWED.fullmatch(command):
        bad = next(c for c in command if not _ALLOWED.fullmatch(c))
        raise RequestRefused(f"character {bad!r} is not allowed in a request")
    words = command.split(" ")
    if "" in words:
        raise RequestRefused("words must be separated by exactly one space")
    verb, args = words[0], tuple(words[1:])
    spec = VERBS.get(verb)
    if spec is None:
        raise RequestRefused(f"unknown verb {verb!r} (known: {', '.join(VERBS)})")
    if not len(spec.required) <= len(args) <= len(spec.required) + len(spec.optional):
        usage = " ".join([verb, *(n for n, _ in spec.required), *(f"[{n}]" for n, _ in spec.optional)])
        raise RequestRefused(f"wrong number of arguments; usage: {usage}")
    for (name, pattern), value in zip((*spec.required, *spec.optional), args, strict=False):
        if not pattern.fullmatch(value):
            raise RequestRefused(f"{name} {value!r} is not valid")
    if len(args) == len(spec.required) + 1 and args[-1] == args[-2]:
        raise RequestRefused("PARENT must differ from what is sent")
    return Request(verb, args)


# ---------------------------------------------------------------- the verbs



def hello(layout: Layout) -> dict[str, Any]:
    role = read_role(layout.role_file).role
    the_cluster = cluster.find_on_dataset(layout.data_root)
    reply = {"protocol": PROTOCOL, "atlas_version": __version__, "verbs": list(VERBS),
             "hostname": osinfo.hostname(), "role": role,
             "cluster_id": the_cluster.cluster_id if the_cluster else None}
    if role is Role.PRIMARY:
        # What the secondary should try; in the hello, every sync learns it without another
        # round trip, and a secondary that predates updates ignores it.
        reply.update(staged_updates(layout))
    return reply


def staged_updates(layout: Layout) -> dict[str, Any]:
    """On the primary: the updates it stages for a trial on the secondary ({"staged": …}),
    or why they cannot be told ({"staged_error": …}: the secondary leaves its trials alone)."""
    from atlas_services.update import record

    try:
        return record.staged_reply(layout.update_record)
    except AtlasError as err:
        return {"staged_error": str(err)}


def results(layout: Layout) -> dict[str, Any]:
    try:
        raw = layout.verify_latest.read_bytes()[: MAX_RESULTS_BYTES + 1]
    except FileNotFoundError:
        return {"available": False, "results": None}
    if len(raw) > MAX_RESULTS_BYTES:
        raise AtlasError(f"{layout.verify_latest} is larger than {MAX_RESULTS_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError:
        raise AtlasError(f"{layout.verify_latest} is not JSON (being rewritten?)") from None
    return {"available": True, "results": data}


def _send(subvolume: Path, parent: Path | None, out: int) -> None:
    argv: list[str | os.PathLike[str]] = ["btrfs", "send", "-q"]
    if parent is not None:
        argv += ["-p", parent]
    proc.run_to_fd([*argv, subvolume], stdout=out, hint="btrfs-progs must be installed")


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


def pull(layout: Layout) -> dict[str, Any]:
    """On the secondary: sync from the primary now (as the timer would) and report."""
    from atlas_services.sync import client, runner

    result = runner.run(client.target_from_dataset(layout), layout)
    return result.to_json()


def trial(layout: Layout) -> dict[str, Any]:
    """On the secondary: the update on trial here, with its green cycles so far."""
    from atlas_services.update import trial as trial_mod

    return trial_mod.trial_reply(layout)


def _json_verbs() -> dict[str, Callable[[Layout], Any]]:
    return {
        "pull": pull,
        "trial": trial,
        "hello": hello,
        "list": lambda layout: listing.list_stores(
            ConfigStore(layout.config_store),
            ModuleStore(layout.module_store, layout.formats_file)).to_json(),
        "manifest": lambda layout: manifest.collect(
            ModuleStore(layout.module_store, layout.formats_file), layout).to_json(),
        "results": results,
    }


def _client() -> str:
    return (os.environ.get("SSH_CONNECTION") or "local").split(" ")[0]


def serve(command: str | None, layout: Layout, out: BinaryIO) -> int:
    """Answer one request on `out` (the SSH channel). Returns the exit code."""
    try:
        request = parse_request(command)
    except RequestRefused as err:
        shown = (command or "")[:MAX_REQUEST].encode("unicode_escape").decode()
        log.event(messages.SYNC_SERVE_REFUSED, f"ATLAS sync-serve refused {shown!r} from {_client()}: {err}",
                  priority=4, client=_client(), request=shown, reason=str(err))
        print(f"atlas sync-serve: refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    role = read_role(layout.role_file).role
    if request.verb not in role.serves:
        log.event(messages.SYNC_SERVE_REFUSED, f"ATLAS sync-serve refused {request} from "
                  f"{_client()}: not served by a {role}", priority=4, client=_client(),
                  request=str(request), reason=f"not served by a {role}")
        print(f"atlas sync-serve: refused: {request.verb} is not served by a {role}",
              file=sys.stderr)
        return EXIT_REFUSED
    logger.info("sync-serve: %s for %s", request, _client())
    try:
        if request.verb in ("send-config", "send-module"):
            out.flush()
            sender = send_config if request.verb == "send-config" else send_module
            sender(layout, request.args, out.fileno())
        else:
            reply = _json_verbs()[request.verb](layout)
            out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
            out.flush()
    except Refused as err:
        print(f"atlas sync-serve: refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except AtlasError as err:
        print(f"atlas sync-serve: {err}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
