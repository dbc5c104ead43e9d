"""Applying what was pulled on the secondary: the configuration for the secondary role, and
the Verifier's test environment — both through hooks, so tests (and later issues) can
swap them. Also the configuration store's mirror bookkeeping: generations set aside while
the primary's generation of the same number arrives, and the working tree's reset."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from atlas_services import proc
from atlas_services.errors import AtlasError
from atlas_services.paths import Layout
from atlas_services.store import subvol, tree
from atlas_services.store.config import META_FILE, ConfigStore

logger = logging.getLogger(__name__)

ASIDE_PREFIX = ".superseded-"
_ASIDE = re.compile(re.escape(ASIDE_PREFIX) + r"([1-9][0-9]*)")


@dataclass(frozen=True)
class HookResult:
    ok: bool
    available: bool  # False: the hook's command does not exist in this version
    message: str


def default_apply_config(store: ConfigStore, generation: int) -> str:
    """Render, validate and install `generation` for this server's role (role.json says
    secondary) and reload what changed: the store's own `atlas config apply`."""
    from atlas_services.store import apply  # jinja2 and the checkers load only when needed

    result = apply.apply(store, generation)
    changed = len(result.changed) + len(result.removed)
    units = any(p.startswith("etc/systemd/") for p in result.changed + result.removed)
    if units and apply.default_manager() is not None:
        # Rendered unit drop-ins (this timer's own period, the Verifier's) count after a reload.
        import pydbus

        pydbus.SystemBus().get("org.freedesktop.systemd1").Reload()
    if result.unconfirmed:
        raise AtlasError(f"applied generation {generation}, but not every service took it: "
                         f"{'; '.join(result.unconfirmed)}")
    return (f"applied generation {generation}: {changed} file(s) changed"
            + (f", reloaded {', '.join(result.services)}" if result.services else "")
            + (", systemd reloaded its units" if units else ""))


def default_verify_setup(command: Path) -> HookResult:
    """`atlas verify setup`: make sure the Verifier's accounts, database, mailbox, share and
    web canary exist. A version without that verb is reported, not treated as a failure."""
    try:
        result = proc.run([command, "verify", "setup"], ok_codes=proc.ANY_EXIT, timeout=600)
    except proc.CommandFailed as err:
        if "was not found" in str(err):
            return HookResult(False, False, f"'{command} verify setup' is not available: {err}")
        return HookResult(False, True, f"'{command} verify setup' {err}")
    output = (result.stderr or result.stdout).strip().splitlines()
    detail = output[-1] if output else ""
    if result.returncode == 0:
        return HookResult(True, True, "the Verifier's test environment is in place")
    if result.returncode == 2 and "invalid choice" in result.stderr:
        return HookResult(False, False, "'atlas verify setup' is not available in this ATLAS version")
    return HookResult(False, True, f"'atlas verify setup' failed (exit {result.returncode}): {detail}")


@dataclass(frozen=True)
class Hooks:
    apply_config: Callable[[ConfigStore, int], str]
    verify_setup: Callable[[], HookResult]


def box_hooks(layout: Layout = Layout()) -> Hooks:
    """The box's own: `atlas config apply` and `atlas verify setup`. Below another root
    (tests, benchmarks) the configuration is applied under it and nothing is reloaded."""
    if layout.root == Path("/"):
        apply_config = default_apply_config
    else:
        def apply_config(store: ConfigStore, generation: int) -> str:
            from atlas_services.store import apply

            result = apply.apply(store, generation, layout=layout, manager=_NoReloads())
            return (f"applied generation {generation} under {layout.root}: "
                    f"{len(result.changed)} file(s) changed")
    return Hooks(apply_config, lambda: default_verify_setup(layout.atlas_command))


class _NoReloads:
    """Below a test's root no service of this host is the one configured."""

    def reload(self, unit: str) -> None:
        pass

    def restart(self, unit: str) -> None:
        pass


# ---------------------------------------------------------------- the mirror's bookkeeping


def set_aside(store: ConfigStore, number: int) -> Path:
    """Rename the secondary's own generation `number` out of the way of the primary's (a
    rename in the same directory: allowed for a read-only subvolume)."""
    aside = store.generations_dir / f"{ASIDE_PREFIX}{number}"
    subvol.delete(aside)
    (store.generations_dir / str(number)).rename(aside)
    return aside


def restore_aside(store: ConfigStore) -> list[int]:
    """After an interrupted sync: put back every generation set aside whose replacement
    never arrived, and drop those that were replaced. Returns the numbers put back."""
    restored: list[int] = []
    if not store.generations_dir.is_dir():
        return restored
    for entry in sorted(store.generations_dir.iterdir()):
        match = _ASIDE.fullmatch(entry.name)
        if not match:
            continue
        final = store.generations_dir / match.group(1)
        if subvol.is_finished(final):
            subvol.delete(entry)
        else:
            subvol.delete(final)
            entry.rename(final)
            restored.append(int(match.group(1)))
    return restored


def pending_edits(store: ConfigStore) -> int:
    """Uncommitted changes in the working tree against the newest generation."""
    newest = store.newest()
    if newest is None or not store.work.is_dir():
        return 0
    return len(tree.compare(store.path(newest), store.work, ignore=[META_FILE]))


def reset_work(store: ConfigStore, newest: int, edits: int) -> str | None:
    """Make the working tree the newest mirrored generation (so a failover never commits a
    stale tree); local edits, if any, are kept in a read-only snapshot beside it."""
    kept = None
    if edits and store.work.is_dir():
        kept_path = store.root / f"work.unsaved-before-sync-{newest}"
        subvol.delete(kept_path)
        subvol.snapshot(store.work, kept_path, read_only=True)
        kept = str(kept_path)
        logger.warning("the working tree had %d uncommitted change(s); kept them in %s", edits, kept)
    store._reset_work(newest)
    return kept
