"""What a sync has to fetch and change: pure decisions from the two servers' listings.

The secondary's configuration store is a mirror of the primary's: every primary generation
is fetched (incremental against the nearest generation both hold — same metadata id *and*
same btrfs identity, so `btrfs receive` finds the parent), a secondary generation under the
same number but of another history (e.g. the secondary's own first-boot seed) is replaced,
and secondary generations the primary does not have are superseded. Module versions are
only added (a version is the same everywhere: signed bundles), and selections follow the
primary's unless an update of that module is staged on the secondary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from atlas_services.store.modules import version_key
from atlas_services.sync.listing import GenEntry, ModuleEntry


@dataclass(frozen=True)
class ConfigFetch:
    number: int
    parent: int | None  # a generation both servers hold; None: a full stream
    replaces: bool  # the secondary holds another generation under this number


@dataclass(frozen=True)
class ConfigPlan:
    fetch: tuple[ConfigFetch, ...]
    superseded: tuple[int, ...]  # removed once every fetch succeeded


@dataclass(frozen=True)
class ModuleFetch:
    module: str
    version: str
    parent: str | None  # a version of the same module both servers hold (same identity)


@dataclass(frozen=True)
class Selection:
    module: str
    version: str


def _nearest(candidates: Sequence[int], number: int) -> int | None:
    below = [n for n in candidates if n < number]
    above = [n for n in candidates if n > number]
    return max(below) if below else min(above) if above else None


def common_generations(remote: Sequence[GenEntry], local: Sequence[GenEntry]) -> list[int]:
    mine = {g.number: g for g in local}
    return sorted(g.number for g in remote if g.number in mine
                  and (mine[g.number].id, mine[g.number].identity) == (g.id, g.identity))


def plan_config(remote: Sequence[GenEntry], local: Sequence[GenEntry]) -> ConfigPlan:
    local_numbers = {g.number for g in local}
    have = common_generations(remote, local)
    fetch = []
    for gen in sorted(remote, key=lambda g: g.number):
        if gen.number in have:
            continue
        fetch.append(ConfigFetch(gen.number, _nearest(have, gen.number), gen.number in local_numbers))
        have.append(gen.number)  # once fetched, the next one can be incremental against it
    remote_numbers = {g.number for g in remote}
    return ConfigPlan(tuple(fetch), tuple(sorted(local_numbers - remote_numbers)))


def plan_modules(remote: Mapping[str, ModuleEntry],
                 local: Mapping[str, ModuleEntry]) -> tuple[ModuleFetch, ...]:
    fetch = []
    for module in sorted(remote):
        ours = local.get(module)
        our_versions = set(ours.version_names()) if ours else set()
        our_identities = {v.identity for v in ours.versions} if ours else set()
        # Parents are named by the primary's version names: it runs `btrfs send -p`.
        parents = [v.version for v in remote[module].versions if v.identity in our_identities]
        for entry in sorted(remote[module].versions, key=lambda v: version_key(v.version)):
            if entry.version in our_versions:
                continue
            parent = _nearest_version(parents, entry.version)
            fetch.append(ModuleFetch(module, entry.version, parent))
            parents.append(entry.version)
    return tuple(fetch)


def _nearest_version(candidates: Sequence[str], version: str) -> str | None:
    key = version_key(version)
    below = [c for c in candidates if version_key(c) < key]
    above = [c for c in candidates if version_key(c) > key]
    if below:
        return max(below, key=version_key)
    return min(above, key=version_key) if above else None


def plan_selections(remote: Mapping[str, ModuleEntry], local: Mapping[str, ModuleEntry],
                    staged: Mapping[str, str]) -> tuple[tuple[Selection, ...], tuple[str, ...]]:
    """Selections to make on the secondary, and the modules skipped because an update is
    staged there. A version the secondary does not hold (its fetch failed) is not selected."""
    select, skipped = [], []
    for module in sorted(remote):
        wanted = remote[module].selected
        ours = local.get(module)
        if wanted is None or (ours is not None and ours.selected == wanted):
            continue
        if module in staged:
            skipped.append(module)
            continue
        if ours is not None and wanted in ours.version_names():
            select.append(Selection(module, wanted))
    return tuple(select), tuple(skipped)
