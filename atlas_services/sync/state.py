"""The Synchronizer's record, /var/lib/atlas/sync/state.json: last attempt and success, what
went wrong, generations and modules on both sides, what was applied, and the drift report.

`freshness()` is the one rule for how fresh that is: `atlas sync status` shows it and the
Verifier's sync probe reports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from atlas_services import clock, fsutil
from atlas_services.errors import AtlasError
from atlas_services.results import Outcome, combine
from atlas_services.sync.drift import DriftClass, DriftItem

FORMAT = 1
STATUSES = ("never", "running", "ok", "failed")


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be text or null")
    return value


def _ints(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(x) is int for x in value):
        raise ValueError(f"{key} must be a list of integers")
    return tuple(value)


@dataclass(frozen=True)
class ModuleSide:
    versions: tuple[str, ...]
    selected: str | None

    def to_json(self) -> dict[str, Any]:
        return {"versions": list(self.versions), "selected": self.selected}

    @classmethod
    def from_json(cls, data: Any) -> ModuleSide:
        if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
            raise ValueError("a module entry has versions and selected")
        return cls(tuple(str(v) for v in data["versions"]), _opt_str(data, "selected"))


@dataclass(frozen=True)
class Transfer:
    streams: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"streams": self.streams, "bytes": self.bytes, "seconds": self.seconds}


@dataclass(frozen=True)
class SyncState:
    status: str = "never"
    last_attempt: str | None = None
    last_success: str | None = None
    last_error: str | None = None  # one line: what went wrong — what to do
    error_kind: str | None = None  # errors.Kind value
    peer: str | None = None  # "shop1 (10.77.0.10)"
    primary_generations: tuple[int, ...] = ()
    secondary_generations: tuple[int, ...] = ()
    primary_modules: dict[str, ModuleSide] = field(default_factory=dict)
    secondary_modules: dict[str, ModuleSide] = field(default_factory=dict)
    applied_generation: int | None = None
    applied_id: str | None = None  # the generation's id: numbers alone can repeat
    drift: tuple[DriftItem, ...] = ()
    drift_checked: str | None = None
    transfer: Transfer = Transfer()
    results_fetched: str | None = None
    notes: tuple[str, ...] = ()  # what else happened: superseded generations, hooks, ...
    duration_s: float = 0.0

    @classmethod
    def from_json(cls, data: Any, where: str = "state.json") -> SyncState:
        try:
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not sync state of format {FORMAT}")
            status = data.get("status")
            if status not in STATUSES:
                raise ValueError(f"status must be one of {', '.join(STATUSES)}")
            gens, mods = data.get("generations", {}), data.get("modules", {})
            applied, transfer = data.get("applied") or {}, data.get("transfer") or {}
            if not all(isinstance(x, dict) for x in (gens, mods, applied, transfer)):
                raise ValueError("generations, modules, applied and transfer are objects")
            drift = data.get("drift", [])
            if not isinstance(drift, list):
                raise ValueError("drift must be a list")
            notes = data.get("notes", [])
            if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
                raise ValueError("notes must be a list of text")
            gen = applied.get("generation")
            if gen is not None and type(gen) is not int:
                raise ValueError("applied.generation must be an integer")
            return cls(
                status=status, last_attempt=_opt_str(data, "last_attempt"),
                last_success=_opt_str(data, "last_success"), last_error=_opt_str(data, "last_error"),
                error_kind=_opt_str(data, "error_kind"), peer=_opt_str(data, "peer"),
                primary_generations=_ints(gens.get("primary", []), "generations.primary"),
                secondary_generations=_ints(gens.get("secondary", []), "generations.secondary"),
                primary_modules={k: ModuleSide.from_json(v) for k, v in mods.get("primary", {}).items()},
                secondary_modules={k: ModuleSide.from_json(v) for k, v in mods.get("secondary", {}).items()},
                applied_generation=gen, applied_id=_opt_str(applied, "id"),
                drift=tuple(DriftItem.from_json(d) for d in drift),
                drift_checked=_opt_str(data, "drift_checked"),
                transfer=Transfer(int(transfer.get("streams", 0)), int(transfer.get("bytes", 0)),
                                  float(transfer.get("seconds", 0.0))),
                results_fetched=_opt_str(data, "results_fetched"), notes=tuple(notes),
                duration_s=float(data.get("duration_s", 0.0)))
        except (ValueError, TypeError, AttributeError) as err:
            raise AtlasError(f"{where} is not valid sync state: {err}",
                             "it is rewritten by the next sync ('atlas sync --now')") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "status": self.status, "last_attempt": self.last_attempt,
            "last_success": self.last_success, "last_error": self.last_error,
            "error_kind": self.error_kind, "peer": self.peer,
            "generations": {"primary": list(self.primary_generations),
                            "secondary": list(self.secondary_generations)},
            "modules": {"primary": {k: v.to_json() for k, v in sorted(self.primary_modules.items())},
                        "secondary": {k: v.to_json() for k, v in sorted(self.secondary_modules.items())}},
            "applied": {"generation": self.applied_generation, "id": self.applied_id},
            "drift": [d.to_json() for d in self.drift], "drift_checked": self.drift_checked,
            "transfer": self.transfer.to_json(), "results_fetched": self.results_fetched,
            "notes": list(self.notes), "duration_s": self.duration_s,
        }

    def started(self, when: str) -> SyncState:
        return replace(self, status="running", last_attempt=when)


def read(path: Path) -> SyncState:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return SyncState()
    except OSError as err:
        raise AtlasError(f"{path} is unreadable: {err}") from None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise AtlasError(f"{path} is not JSON: {err}",
                         "it is rewritten by the next sync ('atlas sync --now')") from None
    return SyncState.from_json(data, str(path))


def write(state: SyncState, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.write_atomic(path, json.dumps(state.to_json(), indent=2) + "\n")


def freshness(state: SyncState, now: datetime, stale_after_s: int) -> Outcome:
    """The one answer to "is this secondary's copy of the primary fresh?", for `atlas sync
    status` and the Verifier's sync probe: the last success no older than `stale_after_s`
    (settings: sync_stale_after_s) is ok, older degraded, four times older failed (missed
    syncs come and go; a week-old copy is no failover); an incompatible drift fails."""
    if state.last_attempt is None:
        return Outcome.failed("never synced from the primary")
    if state.last_success is None:
        last_attempt = clock.span(now - clock.parse_time(state.last_attempt))
        return Outcome.failed(f"no successful sync yet (last attempt {last_attempt} ago)")
    age = now - clock.parse_time(state.last_success)
    stale = timedelta(seconds=stale_after_s)
    text = f"last sync {clock.span(age)} ago"
    if clock.parse_time(state.last_attempt) > clock.parse_time(state.last_success):
        text += f", last attempt {clock.span(now - clock.parse_time(state.last_attempt))} ago failed"
    if age > 4 * stale:
        age_outcome = Outcome.failed(f"{text} (stale after {clock.span(stale)})")
    elif age > stale:
        age_outcome = Outcome.degraded(f"{text} (stale after {clock.span(stale)})")
    else:
        age_outcome = Outcome.ok(text)
    bad = [d for d in state.drift if d.klass is DriftClass.INCOMPATIBLE]
    if bad:
        drift_outcome = Outcome.failed("incompatible with the primary: "
                                       + ", ".join(f"{d.item} ({d.reason})" for d in bad))
    else:
        compatible = sum(1 for d in state.drift if d.klass is DriftClass.COMPATIBLE)
        drift_outcome = Outcome.ok(f"no incompatible drift ({compatible} compatible differences)")
    return combine([age_outcome, drift_outcome])
