"""The update's pure decisions: how many green cycles in a row the secondary ran a version,
whether a staged version may be promoted, whether a bundle fits the formats on disk, and
what a secondary's sync does about the primary's stage. No disks, no network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from atlas_services import clock
from atlas_services.errors import Refused
from atlas_services.results import Cycle, Status
from atlas_services.store import bundle
from atlas_services.update.marks import STAGE_ID_PATTERN, Mark


def fresh_within_s(verify_interval_s: int) -> int:
    """How old the secondary's newest cycle may be and still speak for it now (as
    `atlas failover prepare` judges): two periods and a minute."""
    return 2 * verify_interval_s + 60


# ---------------------------------------------------------------- the trial's green cycles


@dataclass(frozen=True)
class Streak:
    count: int  # consecutive green cycles, newest backwards, that ran the version
    stopped_by: str  # why the count stops there ("" when it reaches back to the trial's start)
    latest_finished: datetime | None  # the newest cycle's end, whatever it ran
    latest_status: str | None
    latest_version: str | None  # what the newest cycle ran of the module


def green_streak(cycles: Sequence[Cycle], module: str, version: str,
                 since: datetime | None) -> Streak:
    """Count the cycles, newest first, that ran `module` at `version`, all probes ok, and
    started after the trial began (`since`); the first that did not ends the count."""
    count, stopped_by = 0, ""
    for cycle in reversed(cycles):
        if since is not None and cycle.started < since:
            break
        ran = cycle.modules.get(module)
        when = f"{cycle.finished:%Y-%m-%d %H:%M:%S} UTC"
        if ran != version:
            stopped_by = (f"the cycle of {when}, which ran {module} {ran}" if ran else
                          f"the cycle of {when}, which did not run {module} {version} (it did not "
                          "load, or the Verifier predates recording versions)")
            break
        if cycle.status is not Status.OK:
            problems = "; ".join(f"{r.probe} ({r.message})" for r in cycle.problems())
            stopped_by = f"the cycle of {when}, which was {cycle.status}: {problems}"
            break
        count += 1
    newest = cycles[-1] if cycles else None
    return Streak(count, stopped_by,
                  newest.finished if newest else None,
                  newest.status if newest else None,
                  newest.modules.get(module) if newest else None)


# ---------------------------------------------------------------- the secondary's report


def _opt(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is not None and type(value) is not kind:
        raise ValueError(f"{key} must be {kind.__name__} or null")
    return value


@dataclass(frozen=True)
class TrialModule:
    """What the secondary says about one module (sync-serve `trial`)."""

    module: str
    selected: str | None
    staged: str | None  # the version on trial here (the marker), if any
    stage_id: str | None
    since: str | None  # when this server selected it
    green_cycles: int
    stopped_by: str
    latest_finished: str | None
    latest_status: str | None
    latest_version: str | None
    formats_on_disk: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"selected": self.selected, "staged": self.staged, "stage_id": self.stage_id,
                "since": self.since, "green_cycles": self.green_cycles, "stopped_by": self.stopped_by,
                "latest_finished": self.latest_finished, "latest_status": self.latest_status,
                "latest_version": self.latest_version, "formats_on_disk": dict(self.formats_on_disk)}

    @classmethod
    def from_json(cls, module: str, data: Any) -> TrialModule:
        if not isinstance(data, dict):
            raise ValueError(f"{module}: expected an object")
        green = data.get("green_cycles")
        if type(green) is not int or green < 0:
            raise ValueError(f"{module}: green_cycles must be a count")
        formats = data.get("formats_on_disk", {})
        if not isinstance(formats, dict) or not all(
                isinstance(k, str) and type(v) is int for k, v in formats.items()):
            raise ValueError(f"{module}: formats_on_disk must map kinds to integers")
        for key in ("selected", "staged", "latest_version"):
            value = _opt(data, key, str)
            if value is not None and not bundle.VERSION_PATTERN.fullmatch(value):
                raise ValueError(f"{module}: {key} {value!r} is not a version")
        stage_id = _opt(data, "stage_id", str)
        if stage_id is not None and not STAGE_ID_PATTERN.fullmatch(stage_id):
            raise ValueError(f"{module}: stage_id is malformed")
        for key in ("since", "latest_finished"):
            value = _opt(data, key, str)
            if value is not None:
                clock.parse_time(value)
        return cls(module, data.get("selected"), data.get("staged"), stage_id, data.get("since"),
                   green, str(_opt(data, "stopped_by", str) or ""), data.get("latest_finished"),
                   _opt(data, "latest_status", str), data.get("latest_version"), dict(formats))


def parse_trial_reply(data: Any) -> dict[str, TrialModule]:
    """The secondary's `trial` reply, validated; raises ValueError naming what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("modules"), dict):
        raise ValueError("expected an object with modules")
    modules = {}
    for name, entry in data["modules"].items():
        if not isinstance(name, str) or not bundle.NAME_PATTERN.fullmatch(name):
            raise ValueError(f"{name!r} is not a module name")
        modules[name] = TrialModule.from_json(name, entry)
    return modules


# ---------------------------------------------------------------- promotion


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def promotion(module: str, version: str, stage_id: str, trial: TrialModule | None, required: int,
              now: datetime, max_age_s: int) -> Verdict:
    """May `module` `version` (staged as `stage_id`) be selected on the primary? Only when
    the secondary ran it green for `required` consecutive cycles, the newest of them recent."""
    name = f"{module} {version}"
    if required == 0:
        return Verdict(True, "no green cycles on the secondary are required (promote_green_cycles is 0)")
    if trial is None:
        return Verdict(False, f"the secondary does not report {module} at all: has it synchronized "
                       "since the version was staged?")
    if trial.staged != version or trial.stage_id != stage_id:
        return Verdict(False, f"the secondary has not taken {name} on trial yet (it runs "
                       f"{trial.selected or 'nothing'}): its next sync selects it")
    if trial.selected != version:
        return Verdict(False, f"the secondary has {name} staged but runs {trial.selected or 'nothing'}")
    if trial.green_cycles < required:
        why = f"; the count stops at {trial.stopped_by}" if trial.stopped_by else ""
        return Verdict(False, f"the secondary ran {name} green for {trial.green_cycles} of the "
                       f"{required} consecutive cycles required{why}")
    if trial.latest_finished is None:
        return Verdict(False, "the secondary reports no cycle")
    age = (now - clock.parse_time(trial.latest_finished)).total_seconds()
    if age > max_age_s:
        return Verdict(False, f"the secondary's newest cycle is {int(age // 60)} min old (more than "
                       f"{max_age_s // 60} min): its Verifier may have stopped")
    return Verdict(True, f"the secondary ran {name} green for {trial.green_cycles} consecutive cycles "
                   f"(required: {required})")


# ---------------------------------------------------------------- staging


@dataclass(frozen=True)
class Compatibility:
    refusals: tuple[str, ...]  # reasons the version must not be staged
    one_way: tuple[str, ...]  # formats it writes that the current version cannot read
    notes: tuple[str, ...]


def compatibility(name: str, new: bundle.Formats, primary_on_disk: Mapping[str, int],
                  secondary_on_disk: Mapping[str, int] | None,
                  current: bundle.Formats | None) -> Compatibility:
    """Can the new version read what is on disk on both servers, and can the current one
    read what the new one writes (else a rollback after it ran would be refused)?"""
    refusals, notes = [], []
    unreadable = new.unreadable(primary_on_disk)
    if unreadable:
        refusals.append(f"{name} cannot read the primary's {', '.join(unreadable)}")
    if secondary_on_disk is None:
        notes.append("the secondary's formats are not known (it could not be asked); its store "
                     "refuses the selection itself if it cannot read them")
    else:
        unreadable = new.unreadable(secondary_on_disk)
        if unreadable:
            refusals.append(f"{name} cannot read the secondary's {', '.join(unreadable)}")
    one_way = tuple(current.unreadable(new.writes)) if current is not None else ()
    return Compatibility(tuple(refusals), one_way, tuple(notes))


def pick_module(given: str | None, staged: Sequence[str], last_promoted: str | None,
                verb: str) -> str:
    """The module a verb acts on: the one named, else the only staged one, else (rollback)
    the last promoted one."""
    if given is not None:
        if not bundle.NAME_PATTERN.fullmatch(given):
            raise Refused(f"{given!r} is not a module name")
        return given
    if len(staged) == 1:
        return staged[0]
    if len(staged) > 1:
        raise Refused(f"updates of {', '.join(staged)} are staged", f"name one: 'atlas update {verb} MODULE'")
    if last_promoted is not None:
        return last_promoted
    raise Refused("no update is staged", "stage one first: 'atlas update stage BUNDLE'")


# ---------------------------------------------------------------- the secondary follows


@dataclass(frozen=True)
class Offer:
    """What the primary's hello offers for one module's trial."""

    version: str
    stage_id: str


def parse_staged_reply(data: Any) -> dict[str, Offer]:
    if not isinstance(data, dict) or not isinstance(data.get("staged"), dict):
        raise ValueError("expected an object with staged")
    offers = {}
    for module, entry in data["staged"].items():
        if not isinstance(module, str) or not bundle.NAME_PATTERN.fullmatch(module):
            raise ValueError(f"{module!r} is not a module name")
        if not isinstance(entry, dict):
            raise ValueError(f"staged {module} must be an object")
        version, stage_id = entry.get("version"), entry.get("id")
        if not isinstance(version, str) or not bundle.VERSION_PATTERN.fullmatch(version):
            raise ValueError(f"staged {module}: {version!r} is not a version")
        if not isinstance(stage_id, str) or not STAGE_ID_PATTERN.fullmatch(stage_id):
            raise ValueError(f"staged {module}: the stage id is malformed")
        offers[module] = Offer(version, stage_id)
    return offers


@dataclass(frozen=True)
class FollowPlan:
    start: tuple[tuple[str, Offer], ...]  # select the version and mark it (a new trial)
    reselect: tuple[tuple[str, str], ...]  # marked already, but another version is selected
    end: tuple[str, ...]  # trials the primary no longer stages: clear, mirror the primary
    missing: tuple[tuple[str, str], ...]  # staged, but not (yet) on this server


def plan_follow(offers: Mapping[str, Offer], marks: Mapping[str, Mark],
                local_versions: Mapping[str, Sequence[str]],
                selected: Mapping[str, str | None]) -> FollowPlan:
    """What a sync on the secondary does about the primary's stage."""
    start, reselect, end, missing = [], [], [], []
    for module, offer in sorted(offers.items()):
        mark = marks.get(module)
        if offer.version not in local_versions.get(module, ()):
            missing.append((module, offer.version))
            if mark is not None:
                end.append(module)
            continue
        if mark is None or (mark.version, mark.stage_id) != (offer.version, offer.stage_id):
            start.append((module, offer))
        elif selected.get(module) != offer.version:
            reselect.append((module, offer.version))
    end += [module for module in sorted(marks) if module not in offers]
    return FollowPlan(tuple(start), tuple(reselect), tuple(sorted(end)), tuple(missing))
