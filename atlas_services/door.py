"""`atlas sync-serve`: the door both servers answer through, wired to the concerns that
answer it — the Synchronizer's listing, manifest and pull, the update's stage and trial.

peer/ owns the protocol and the serving; this command hands it the answers, so that the
door imports no concern and the Synchronizer and the update can both use the door.

On the box the door never answers as sshd's unconfined root child: the forced command only
hands the SSH channel (stdin, stdout, stderr) and the request to a transient service with
the sandbox below (`systemd-run --pipe --wait`), where a copy of itself parses and answers
it. `pull` does not sync in the door either: it starts atlas-sync.service (its sandbox, its
timeout) and waits for it, bounded, then reports the state the sync recorded.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from atlas_services import proc
from atlas_services.errors import AtlasError
from atlas_services.paths import Layout
from atlas_services.peer import server

# The door's sandbox, one property per line (systemd.exec(5)): it reads the stores and
# streams them (btrfs send needs CAP_SYS_ADMIN; reading root-only files DAC_READ_SEARCH),
# talks to the journal and, for `pull`, to systemd over its bus socket; nothing else. It
# has no network of its own: the SSH channel is its stdin and stdout. The image tier
# scores this set with `systemd-analyze security` beside the units (tests/image).
SANDBOX = (
    "CapabilityBoundingSet=CAP_SYS_ADMIN CAP_DAC_READ_SEARCH",
    "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
    "PrivateDevices=yes", "DevicePolicy=closed", "PrivateNetwork=yes", "PrivateIPC=yes",
    "PrivateMounts=yes",
    "IPAddressDeny=any", "RestrictAddressFamilies=AF_UNIX", "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
    "ProtectClock=yes", "ProtectHostname=yes", "ProtectProc=invisible", "RestrictNamespaces=yes",
    "RestrictRealtime=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes", "RemoveIPC=yes", "KeyringMode=private",
    "SystemCallArchitectures=native", "SystemCallFilter=@system-service",
    "SystemCallFilter=~@resources @obsolete @cpu-emulation", "SystemCallErrorNumber=EPERM",
    "UMask=0077",
    # A stream the secondary stops reading is ended with the door, as a sync is.
    "RuntimeMaxSec=1800",
)
CONFINED = "ATLAS_DOOR_CONFINED"
SYSTEMD_RUN = "/usr/bin/systemd-run"
# The primary waits JSON_TIMEOUT_S (peer/client.py) for the answer to `pull`: answer first.
PULL_TIMEOUT_S = 110

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
    from atlas_services.sync import state

    if not _on_box(layout):
        from atlas_services.peer import client
        from atlas_services.sync import session

        return session.run(client.target_from_dataset(layout), layout).to_json()
    # The sync runs in its own unit, sandboxed and timed as the timer's would be; a sync
    # already running is waited for (systemctl joins its job).
    result = proc.run(["systemctl", "start", "atlas-sync.service"], ok_codes=proc.ANY_EXIT,
                      timeout=PULL_TIMEOUT_S)
    # A failed sync fails its unit ("Job for … failed"): state.json says why.
    if result.returncode != 0 and "failed" not in result.stderr:
        raise AtlasError(f"atlas-sync.service did not run: {result.stderr.strip()}")
    return state.read(layout.sync_state).to_json()


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


def _on_box(layout: Layout) -> bool:
    return layout.root == Path("/") and Path("/run/systemd/system").is_dir()


def confine(command: str | None, connection: str | None) -> None:
    """Hand the request and the channel to a sandboxed copy of this command; does not return."""
    argv: list[str] = [SYSTEMD_RUN, "--quiet", "--pipe", "--wait", "--collect",
                       "--service-type=exec", f"--unit=atlas-door-{os.getpid()}",
                       "--description=ATLAS peer door (atlas sync-serve)",
                       f"--setenv={CONFINED}=1"]
    # Passed on only if set: an unset SSH_ORIGINAL_COMMAND is itself a refusal.
    for name, value in (("SSH_ORIGINAL_COMMAND", command), ("SSH_CONNECTION", connection)):
        if value is not None:
            argv.append(f"--setenv={name}={value}")
    argv += [f"--property={p}" for p in SANDBOX]
    proc.replace_with([*argv, "/usr/bin/atlas", "sync-serve"], hint="systemd must be installed")


def serve_command(args: argparse.Namespace) -> int:
    if _on_box(args.layout) and os.environ.get(CONFINED) != "1":
        confine(os.environ.get("SSH_ORIGINAL_COMMAND"), os.environ.get("SSH_CONNECTION"))
    server.journal_logging()
    return serve(os.environ.get("SSH_ORIGINAL_COMMAND"), args.layout, sys.stdout.buffer)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "sync-serve", help="(on the primary) answer the secondary's sync requests; sshd's forced command",
        epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=serve_command)
