"""The Verifier's results: probe results, cycles and state changes (pure logic), and the one
reader of the files they are kept in (latest.json, history.jsonl, the peer's copy).

Below the concerns: the Verifier writes them, the update counts a trial's green cycles in
them, the door serves them, `atlas status` shows them.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas_services.errors import AtlasError, Refused

CYCLE_FORMAT = 1


class Status(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Status.OK: 0, Status.DEGRADED: 1, Status.FAILED: 2}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status; ok when there is none."""
    return max(statuses, key=lambda s: s.rank, default=Status.OK)


@dataclass(frozen=True)
class Outcome:
    """What a probe's check() says: a status and the reason, in one sentence."""

    status: Status
    message: str

    @classmethod
    def ok(cls, message: str) -> Outcome:
        return cls(Status.OK, message)

    @classmethod
    def degraded(cls, message: str) -> Outcome:
        return cls(Status.DEGRADED, message)

    @classmethod
    def failed(cls, message: str) -> Outcome:
        return cls(Status.FAILED, message)


def combine(outcomes: Iterable[Outcome]) -> Outcome:
    """One outcome from several: the worst status; the problems' reasons, or all if none."""
    outcomes = list(outcomes)
    status = worst(o.status for o in outcomes)
    shown = [o for o in outcomes if o.status is not Status.OK] or outcomes
    return Outcome(status, "; ".join(o.message for o in shown))


def format_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: Any, what: str) -> dt.datetime:
    if not isinstance(text, str):
        raise Refused(f"{what} must be an ISO 8601 time, not {type(text).__name__}")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"{what} is not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise Refused(f"{what} has no time zone: {text!r}")
    return when


def _field(data: Mapping[str, Any], name: str, kind: type, source: str) -> Any:
    if name not in data:
        raise Refused(f"{source}: missing field {name!r}")
    value = data[name]
    if kind is float and type(value) is int:
        value = float(value)
    # type(), not isinstance: a bool is not an int here; a str subclass (a StrEnum) is text.
    if type(value) is not kind and not (kind is str and isinstance(value, str)):
        raise Refused(f"{source}: {name} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _status(value: Any, source: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise Refused(f"{source}: unknown status {value!r}") from None


@dataclass(frozen=True)
class ProbeResult:
    """One probe's result in one cycle, on one server."""

    probe: str
    target: str
    status: Status
    latency_s: float
    message: str
    timestamp: dt.datetime
    role: str
    host: str

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "probe": self.probe, "target": self.target, "status": self.status,
            "latency_s": round(self.latency_s, 4), "message": self.message,
            "timestamp": format_time(self.timestamp), "role": self.role, "host": self.host,
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "probe result") -> ProbeResult:
        if not isinstance(data, dict):
            raise Refused(f"{source}: expected a JSON object")
        latency = _field(data, "latency_s", float, source)
        if latency < 0:
            raise Refused(f"{source}: latency_s must not be negative")
        return cls(
            probe=_field(data, "probe", str, source),
            target=_field(data, "target", str, source),
            status=_status(_field(data, "status", str, source), source),
            latency_s=latency,
            message=_field(data, "message", str, source),
            timestamp=parse_time(data.get("timestamp"), f"{source}: timestamp"),
            role=_field(data, "role", str, source),
            host=_field(data, "host", str, source),
        )


@dataclass(frozen=True)
class Cycle:
    """All probes of one run on one server: the unit of history, reporting and sync."""

    host: str
    role: str
    started: dt.datetime
    finished: dt.datetime
    results: tuple[ProbeResult, ...]
    # The module versions the cycle ran with (atlas_services: the one this process was
    # loaded from): what an update's trial counts its green cycles by.
    modules: Mapping[str, str] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return worst(r.status for r in self.results)

    @property
    def duration_s(self) -> float:
        return (self.finished - self.started).total_seconds()

    def by_probe(self) -> dict[str, ProbeResult]:
        return {r.probe: r for r in self.results}

    def problems(self) -> list[ProbeResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        """One line: 'ok: 9 probes' or 'failed: mail (…), web (…)'."""
        bad = self.problems()
        if not bad:
            return f"ok: {len(self.results)} probes"
        return f"{self.status}: " + "; ".join(f"{r.probe} ({r.message})" for r in bad)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CYCLE_FORMAT, "host": self.host, "role": self.role,
            "status": self.status, "started": format_time(self.started),
            "finished": format_time(self.finished),
            "results": [r.to_json() for r in self.results],
            "modules": dict(sorted(self.modules.items())),
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "cycle") -> Cycle:
        if not isinstance(data, dict):
            raise Refused(f"{source}: expected a JSON object")
        fmt = data.get("format")
        if fmt != CYCLE_FORMAT:
            raise Refused(f"{source}: format {fmt!r} is not {CYCLE_FORMAT}",
                          "the file was written by another ATLAS version")
        results = data.get("results")
        if not isinstance(results, list):
            raise Refused(f"{source}: results must be a list")
        return cls(
            host=_field(data, "host", str, source),
            role=_field(data, "role", str, source),
            started=parse_time(data.get("started"), f"{source}: started"),
            finished=parse_time(data.get("finished"), f"{source}: finished"),
            results=tuple(ProbeResult.from_json(r, f"{source}: result {i}")
                          for i, r in enumerate(results)),
            modules=_modules(data.get("modules", {}), source),
        )


def _modules(value: Any, source: str) -> dict[str, str]:
    """Cycles written before modules were recorded have none."""
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise Refused(f"{source}: modules must map module names to versions")
    return dict(value)


@dataclass(frozen=True)
class StatusChange:
    """A probe whose status differs from the previous cycle's."""

    probe: str
    previous: Status
    result: ProbeResult

    @property
    def current(self) -> Status:
        return self.result.status

    @property
    def recovered(self) -> bool:
        return self.result.status is Status.OK

    def describe(self) -> str:
        r = self.result
        return (f"{r.probe} on {r.host} ({r.role}) is now {r.status}"
                f" (was {self.previous}): {r.message}")


def changes(previous: Cycle | None, current: Cycle) -> list[StatusChange]:
    """Probes whose status changed since the previous cycle.

    A probe seen for the first time counts as having been ok: a first cycle that is
    all green says nothing, a first cycle with a failure says so. A probe that no
    longer runs is not a change.
    """
    before = {r.probe: r.status for r in previous.results} if previous else {}
    return [StatusChange(r.probe, before.get(r.probe, Status.OK), r)
            for r in current.results if r.status is not before.get(r.probe, Status.OK)]


# ---------------------------------------------------------------- on disk


def read_cycle(path: Path) -> Cycle | None:
    """A cycle file (ours or the peer's); None when absent. Unreadable is an error to show."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise AtlasError(f"{path} is not valid JSON: {err}") from None
    return Cycle.from_json(data, str(path))


def read_history(path: Path, limit: int | None = None) -> list[Cycle]:
    """The recorded cycles (the newest `limit`), oldest first; lines that do not parse are
    skipped: a line cut by a crash costs that cycle, not the history."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    cycles = []
    for line in lines[-limit:] if limit else lines:
        try:
            cycles.append(Cycle.from_json(json.loads(line), str(path)))
        except (ValueError, AtlasError):
            continue
    return cycles
