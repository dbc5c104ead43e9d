"""The primary's door for the Synchronizer: the cluster's sync key in an authorized_keys
file sshd reads (see /etc/ssh/sshd_config.d/atlas-sync.conf), restricted to the forced
command `atlas sync-serve` and to the secondary's address.

Role apply calls `install_sync_access()` when this server takes the primary role and
`remove_sync_access()` for any other role; the file lives in /run, so it never outlives
the boot (or the data set) that justified it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from atlas_services import cluster, dataset, fsutil, untrusted
from atlas_services.errors import Refused
from atlas_services.paths import Layout
from atlas_services.roles import Role

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa")


def authorized_line(public_key: str, command: str, sources: Sequence[str]) -> str:
    """One authorized_keys line: no pty, no forwarding, no user rc, only `command`,
    only from `sources` (none given: from anywhere)."""
    fields = public_key.split()
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise Refused("the sync public key is not an OpenSSH public key")
    if any(c in command for c in '"\\\n'):
        raise Refused("the forced command must not contain quotes, backslashes or newlines")
    if any(not s or any(c in s for c in '",\n ') for s in sources):
        raise Refused(f"bad source address in {list(sources)}")
    options = ["restrict"]
    if sources:
        options.append(f'from="{",".join(sources)}"')
    options.append(f'command="{command}"')
    return f"{','.join(options)} {fields[0]} {fields[1]} atlas-sync\n"


def serve_command(layout: Layout) -> str:
    """The forced command: the box's `atlas sync-serve`."""
    return f"{layout.atlas_command} sync-serve"


def install_sync_access(layout: Layout = Layout(), *, target_dir: Path | None = None,
                        user: str = "root", command: str | None = None,
                        sources: Sequence[str] | None = None) -> Path:
    """Let the cluster's sync key (from the data set) in as `user`, for `command` only.

    `sources` defaults to the secondary's address from the data set's cluster.json.
    Returns the file written (target_dir/user, mode 0644: it holds a public key only).
    """
    data_root = layout.data_root
    secrets = dataset.secrets(data_root)
    public = secrets / f"{dataset.SYNC_KEY_NAME}.pub"
    try:
        public_key = untrusted.read_text(public, below=data_root)
    except FileNotFoundError:
        raise Refused(f"the data set lacks the sync key {public}",
                      "re-provision it from the cluster directory") from None
    except (OSError, ValueError) as err:
        raise Refused(f"the sync key {public} is unusable: {untrusted.describe(err)}",
                      "re-provision the data set from the cluster directory") from None
    if sources is None:
        sources = [cluster.on_dataset(data_root).identities[Role.SECONDARY].ip]
    target_dir = target_dir or layout.authorized_keys_dir
    target_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = target_dir / user
    fsutil.write_atomic(target, authorized_line(public_key, command or serve_command(layout), sources),
                        0o644)
    return target


def install_for_role(role: Role, layout: Layout = Layout()) -> Path:
    """The primary lets the secondary in (to pull); the secondary lets the primary in (for
    `atlas failover prepare`). sync-serve answers each role's own few verbs only."""
    peer = role.peer
    if peer is None:
        raise Refused(f"a {role} server lets no peer in")
    return install_sync_access(layout,
                               sources=[cluster.on_dataset(layout.data_root).identities[peer].ip])


def remove_sync_access(layout: Layout = Layout(), user: str = "root") -> None:
    (layout.authorized_keys_dir / user).unlink(missing_ok=True)
