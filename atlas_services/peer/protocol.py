"""The door's protocol: the verbs a server answers, each with exactly its arguments, and the
strict parsing of a request (the text sshd hands `atlas sync-serve` in SSH_ORIGINAL_COMMAND,
never a shell's). Which role answers which verb is the Role's (roles.py).

    hello                               protocol, version, role, cluster id, and on the
                                        primary the updates it stages for a trial on the
                                        secondary (JSON)
    list                                generations and module versions with identities (JSON)
    manifest                            the environment manifest (JSON)
    results                             the Verifier's latest results (JSON)
    send-config GEN [PARENT]            btrfs send stream of generation GEN
    send-module NAME VERSION [PARENT]   btrfs send stream of a module version
    pull                                (secondary) sync from the primary now, then say how it went
    trial                               (secondary) the update on trial here: green cycles so far

Anything else — a shell command, another verb, a missing or extra argument, a character
outside [A-Za-z0-9 ._+~-], a path — is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from atlas_services.store import bundle

PROTOCOL = 1
MAX_REQUEST = 200
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

# The verbs whose answer is a btrfs send stream rather than one JSON document.
STREAM_VERBS = frozenset({"send-config", "send-module"})
