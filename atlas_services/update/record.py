"""The primary's update record, /var/lib/atlas/update/record.json: the module versions staged
for a trial on the secondary, and the last things that happened (staged, promoted, rolled
back, aborted). The primary's sync-serve `hello` tells the secondary what is staged.

    {"format": 1,
     "staged": {"atlas_services": {"version": "0.2.0", "id": "3f2a…", "staged_at": "…Z",
                                   "from_version": "0.1.0", "manifest_sha256": "…",
                                   "one_way": false}},
     "events": [{"time": "…Z", "action": "staged", "module": "atlas_services",
                 "version": "0.2.0", "from_version": "0.1.0", "detail": "…"}, …]}
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from atlas_services import clock, fsutil
from atlas_services.errors import AtlasError
from atlas_services.store import bundle

FORMAT = 1
ACTIONS = ("staged", "promoted", "rolled-back", "aborted")
MAX_EVENTS = 100
_ID = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _text(data: Mapping[str, Any], key: str, *, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be text")
    return value


def _time(data: Mapping[str, Any], key: str) -> str:
    value = _text(data, key)
    clock.parse_time(value)  # raises ValueError when it is not a time
    return str(value)


def _version(data: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = _text(data, key, optional=optional)
    if value is not None and not bundle.VERSION_PATTERN.fullmatch(value):
        raise ValueError(f"{key} {value!r} is not a version")
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class StagedUpdate:
    """A version staged for a trial on the secondary (installed here, not selected)."""

    module: str
    version: str
    id: str  # this stage's own id: staging the same version again starts a new trial
    staged_at: str
    from_version: str | None  # selected on the primary when it was staged
    manifest_sha256: str
    one_way: bool = False  # the current version cannot read what this one writes

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "id": self.id, "staged_at": self.staged_at,
                "from_version": self.from_version, "manifest_sha256": self.manifest_sha256,
                "one_way": self.one_way}

    @classmethod
    def from_json(cls, module: str, data: Any) -> StagedUpdate:
        if not isinstance(data, dict):
            raise ValueError(f"staged {module} must be an object")
        stage_id, digest = _text(data, "id"), _text(data, "manifest_sha256")
        if not _ID.fullmatch(stage_id) or not _SHA256.fullmatch(digest):
            raise ValueError(f"staged {module}: id or manifest_sha256 is malformed")
        if type(data.get("one_way", False)) is not bool:
            raise ValueError(f"staged {module}: one_way must be true or false")
        version = _version(data, "version")
        assert version is not None
        return cls(module, version, stage_id, _time(data, "staged_at"),
                   _version(data, "from_version", optional=True), digest, data.get("one_way", False))


@dataclass(frozen=True)
class Event:
    time: str
    action: str
    module: str
    version: str
    from_version: str | None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "action": self.action, "module": self.module,
                "version": self.version, "from_version": self.from_version, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Any) -> Event:
        if not isinstance(data, dict) or data.get("action") not in ACTIONS:
            raise ValueError(f"an event's action is one of {', '.join(ACTIONS)}")
        module = _text(data, "module")
        if not bundle.NAME_PATTERN.fullmatch(module):
            raise ValueError(f"{module!r} is not a module name")
        version = _version(data, "version")
        assert version is not None
        detail = data.get("detail", "")
        if not isinstance(detail, str):
            raise ValueError("an event's detail is text")
        return cls(_time(data, "time"), data["action"], module, version,
                   _version(data, "from_version", optional=True), detail)


@dataclass(frozen=True)
class UpdateRecord:
    staged: Mapping[str, StagedUpdate] = field(default_factory=dict)
    events: tuple[Event, ...] = ()  # oldest first, the newest MAX_EVENTS

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT,
                "staged": {m: s.to_json() for m, s in sorted(self.staged.items())},
                "events": [e.to_json() for e in self.events]}

    @classmethod
    def from_json(cls, data: Any, where: str = "record.json") -> UpdateRecord:
        try:
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not an update record of format {FORMAT}")
            staged, events = data.get("staged", {}), data.get("events", [])
            if not isinstance(staged, dict) or not isinstance(events, list):
                raise ValueError("staged must be an object and events a list")
            for module in staged:
                if not bundle.NAME_PATTERN.fullmatch(module):
                    raise ValueError(f"{module!r} is not a module name")
            return cls({m: StagedUpdate.from_json(m, s) for m, s in staged.items()},
                       tuple(Event.from_json(e) for e in events))
        except (ValueError, TypeError) as err:
            raise AtlasError(f"{where} is not a valid update record: {err}",
                             "restore it from a backup, or remove it to forget what is staged") from None

    def with_event(self, event: Event) -> UpdateRecord:
        return replace(self, events=(*self.events, event)[-MAX_EVENTS:])

    def last_event(self, module: str | None = None) -> Event | None:
        return next((e for e in reversed(self.events) if module is None or e.module == module), None)


def read(path: Path) -> UpdateRecord:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return UpdateRecord()
    except OSError as err:
        raise AtlasError(f"{path} is unreadable: {err}") from None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise AtlasError(f"{path} is not JSON: {err}",
                         "restore it from a backup, or remove it to forget what is staged") from None
    return UpdateRecord.from_json(data, str(path))


def write(record: UpdateRecord, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.write_atomic(path, json.dumps(record.to_json(), indent=2) + "\n")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One update command at a time (stage, promote, rollback, abort)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with fsutil.locked(path.parent / f".{path.name}.lock"):
        yield


def staged_reply(path: Path) -> dict[str, Any]:
    """For sync-serve `hello` on the primary: what the secondary should try (read-only)."""
    return {"staged": {m: {"version": s.version, "id": s.id, "staged_at": s.staged_at}
                       for m, s in sorted(read(path).staged.items())}}
