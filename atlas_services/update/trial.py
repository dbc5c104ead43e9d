"""The secondary's side of an update: a sync follows the primary's stage (selects the staged
version here and marks it, or ends the trial and mirrors the primary again), and the trial
is reported — to `atlas update status` here, and to the primary through sync-serve's
read-only `trial` verb — as green cycles counted from the Verifier's history."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from atlas_services import clock, log, messages, results
from atlas_services.errors import AtlasError
from atlas_services.paths import Layout
from atlas_services.store.modules import ModuleStore, formats_on_disk, read_formats_file
from atlas_services.update import marks, rules

logger = logging.getLogger(__name__)


def report(layout: Layout = Layout()) -> dict[str, rules.TrialModule]:
    """Every module here: what is selected, what is on trial since when, and how many
    green cycles in a row ran it."""
    store = ModuleStore(layout.module_store, layout.formats_file)
    found = marks.read_marks(layout.trial_marks)
    cycles = results.read_history(layout.verify_history)
    recorded = read_formats_file(layout.formats_file)
    modules = {}
    for module in sorted(set(store.modules()) | set(found)):
        selected = store.selected(module) if module in store.modules() else None
        mark = found.get(module)
        version = mark.version if mark else selected
        since = _since(mark)
        streak = rules.green_streak(cycles, module, version, since) if version else None
        current = store.manifest(module, selected).formats if selected else None
        modules[module] = rules.TrialModule(
            module=module, selected=selected, staged=mark.version if mark else None,
            stage_id=mark.stage_id if mark else None, since=mark.since if mark else None,
            green_cycles=streak.count if streak else 0,
            stopped_by=streak.stopped_by if streak else "",
            latest_finished=(clock.stamp(streak.latest_finished) if streak and streak.latest_finished
                             else None),
            latest_status=streak.latest_status if streak else None,
            latest_version=streak.latest_version if streak else None,
            formats_on_disk=formats_on_disk(recorded, current))
    return modules


def _since(mark: marks.Mark | None) -> datetime | None:
    if mark is None or mark.since is None:
        return None
    try:
        return clock.parse_time(mark.since)
    except ValueError:
        return None


def trial_reply(layout: Layout = Layout()) -> dict[str, Any]:
    """sync-serve `trial` on the secondary (read-only)."""
    return {"modules": {m: t.to_json() for m, t in report(layout).items()}}


@dataclass(frozen=True)
class Followed:
    notes: tuple[str, ...]
    failures: tuple[str, ...]


def follow(offers: Mapping[str, rules.Offer], store: ModuleStore, staged_dir: Path, now: str) -> Followed:
    """Make this server's trials what the primary stages: end the trials it no longer
    stages (the sync's selection step then mirrors the primary's choice), select and mark
    the versions it does. A version this server's store refuses is reported, not marked."""
    found = marks.read_marks(staged_dir)
    modules = store.modules()
    the_plan = rules.plan_follow(offers, found, {m: store.versions(m) for m in modules},
                                 {m: store.selected(m) for m in modules})
    notes, failures = [], []
    for module in the_plan.end:
        ended = found[module]
        marks.clear(module, staged_dir)
        notes.append(f"{module}: the trial of {ended.version} ended (the primary no longer stages it); "
                     "the primary's selection is mirrored again")
        log.event(messages.UPDATE_TRIAL_ENDED, f"ATLAS update: trial of {module} {ended.version} ended",
                  module=module, version=ended.version, stage_id=ended.stage_id)
    for module, offer in the_plan.start:
        try:
            store.select(module, offer.version)
        except AtlasError as err:
            marks.clear(module, staged_dir)
            failures.append(f"{module} {offer.version}: {err}")
            continue
        marks.mark(module, offer.version, staged_dir, stage_id=offer.stage_id, since=now)
        notes.append(f"{module}: {offer.version} selected for its trial (staged on the primary)")
        log.event(messages.UPDATE_TRIAL_STARTED, f"ATLAS update: {module} {offer.version} selected "
                  "on the secondary for its trial", module=module, version=offer.version,
                  stage_id=offer.stage_id)
    for module, version in the_plan.reselect:
        try:
            store.select(module, version)
            notes.append(f"{module}: {version} selected again (it is on trial here)")
        except AtlasError as err:
            failures.append(f"{module} {version}: {err}")
    for module, version in the_plan.missing:
        notes.append(f"{module}: {version} is staged on the primary but not installed here yet")
    return Followed(tuple(notes), tuple(failures))
