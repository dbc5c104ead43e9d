"""The update's steps on the primary: stage a bundle for a trial on the secondary, promote it
once the secondary ran it green long enough, roll back, abort — and the status of it all.

The primary never selects a staged version until it is promoted, and it only ever *asks*
the secondary (sync-serve `trial` through the sync key's door, read-only); the secondary
takes the staged version by pulling (told in sync-serve `hello`), so neither can write on
the other.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from atlas_services import clock, log, messages, settings
from atlas_services.errors import AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.roles import Role, read_role
from atlas_services.store import bundle
from atlas_services.store.modules import ModuleStore, formats_on_disk, read_formats_file
from atlas_services.update import record, rules, trial

logger = logging.getLogger(__name__)

EVENTS_SHOWN = 10


def _store(layout: Layout) -> ModuleStore:
    return ModuleStore(layout.module_store, layout.formats_file)


def require_primary(layout: Layout, verb: str) -> None:
    role = read_role(layout.role_file).role
    if role is not Role.PRIMARY:
        raise Refused(f"this server is {role}, not the primary: updates are staged, promoted and "
                      "rolled back on the primary", f"run 'atlas update {verb}' on the primary")


def _address(text: str) -> tuple[str, int]:
    address, sep, port = text.rpartition(":")
    if not sep:
        return text, 22
    if not port.isdigit() or not 0 < int(port) < 65536 or not address:
        raise Refused(f"--secondary {text!r} is not ADDRESS[:PORT]")
    return address, int(port)


def ask_secondary(layout: Layout, secondary: str | None = None) -> dict[str, rules.TrialModule]:
    """The secondary's trial report, through the sync key's door (read-only on both sides)."""
    from atlas_services.peer import client
    from atlas_services.peer.failures import SyncError

    address, port = _address(secondary) if secondary else (None, 22)
    try:
        target = client.target_from_dataset(layout, role=Role.SECONDARY, address=address,
                                            port=port)
        with client.Client(target, multiplex=False) as peer:
            reply = peer.call_json("trial")
    except SyncError as err:
        raise AtlasError(f"the secondary cannot be asked about its trial: {err.what}",
                         "make sure it is powered on, in its role and running this ATLAS version "
                         "or newer") from None
    try:
        return rules.parse_trial_reply(reply)
    except ValueError as err:
        raise AtlasError(f"the secondary's trial report is malformed: {err}") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _event(message_id: str, text: str, event: record.Event, priority: int = 6, **extra: object) -> None:
    log.event(message_id, f"ATLAS update: {text}", priority=priority, action=event.action,
              module=event.module, version=event.version, from_version=event.from_version, **extra)


# ---------------------------------------------------------------- stage


@dataclass(frozen=True)
class Staged:
    update: record.StagedUpdate
    installed: bool  # False: the version was installed already (an earlier stage)
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"module": self.update.module, **self.update.to_json(), "installed": self.installed,
                "notes": list(self.notes)}


def stage(layout: Layout, bundle_file: Path, signature: Path | None, *,
          one_way: bool = False, secondary: str | None = None) -> Staged:
    """Check a bundle (signature, manifest, formats on both servers), install it here without
    selecting it, and stage it: the secondary selects it at its next sync."""
    require_primary(layout, "stage")
    verified = bundle.read_bundle(bundle_file, signature, layout.vendor_key)
    manifest = verified.manifest
    module, version, name = manifest.name, manifest.version, f"{manifest.name} {manifest.version}"
    store = _store(layout)
    current = store.selected(module)
    if current == version:
        raise Refused(f"{name} is already selected on the primary: there is nothing to try")
    digest = _sha256(verified.manifest_bytes)
    installed_already = version in store.versions(module)
    installed_manifest = store.root / module / version / bundle.MANIFEST_NAME
    if installed_already and _sha256(installed_manifest.read_bytes()) != digest:
        raise Refused(f"another {name} (other contents) is installed on the primary",
                      f"remove it first: 'atlas module remove {module} {version}'")
    staged_now = record.read(layout.update_record).staged.get(module)
    if staged_now is not None:
        raise Refused(f"{module} {staged_now.version} is staged already",
                      "promote it or abort it first ('atlas update status')")
    current_formats = store.manifest(module, current).formats if current else None
    on_primary = formats_on_disk(read_formats_file(layout.formats_file), current_formats)
    notes: list[str] = []
    on_secondary: dict[str, int] | None = None
    try:
        reported = ask_secondary(layout, secondary).get(module)
        if reported is not None:
            on_secondary = dict(reported.formats_on_disk)
        else:
            notes.append(f"the secondary has no {module} installed yet")
    except AtlasError as err:
        notes.append(str(err))
    compat = rules.compatibility(name, manifest.formats, on_primary, on_secondary, current_formats)
    notes += compat.notes
    if compat.refusals:
        raise Refused("; ".join(compat.refusals), "this version cannot take over the data on disk")
    if compat.one_way and not one_way:
        raise Refused(f"{name} writes {', '.join(compat.one_way)}, which {module} {current} cannot read: "
                      "once it ran, a rollback would be refused",
                      "stage it with --one-way if that is understood and wanted")
    with record.locked(layout.update_record):
        the_record = record.read(layout.update_record)
        if module in the_record.staged:
            raise Refused(f"{module} {the_record.staged[module].version} is staged already",
                          "promote it or abort it first")
        if not installed_already:
            store.install(bundle_file, signature, layout.vendor_key)
        update = record.StagedUpdate(module, version, uuid.uuid4().hex, clock.now(), current,
                                     digest, bool(compat.one_way))
        event = record.Event(update.staged_at, "staged", module, version, current,
                             f"on trial on the secondary from its next sync (stage {update.id})")
        record.write(replace(the_record, staged={**the_record.staged, module: update}).with_event(event),
                     layout.update_record)
    _event(messages.UPDATE_STAGED, f"{name} staged for a trial on the secondary (the primary keeps "
           f"{current or 'nothing'})", event, stage_id=update.id, one_way=update.one_way)
    return Staged(update, not installed_already, tuple(notes))


# ---------------------------------------------------------------- promote


@dataclass(frozen=True)
class Promoted:
    module: str
    version: str
    from_version: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"module": self.module, "version": self.version, "from_version": self.from_version,
                "reason": self.reason}


def promote(layout: Layout, module: str | None = None, *, now: datetime | None = None,
            secondary: str | None = None) -> Promoted:
    """Select the staged version on the primary — refused unless the secondary ran it green
    for the required consecutive cycles (settings: promote_green_cycles)."""
    require_primary(layout, "promote")
    the_record = record.read(layout.update_record)
    module = rules.pick_module(module, sorted(the_record.staged), None, "promote")
    update = the_record.staged.get(module)
    if update is None:
        raise Refused(f"no update of {module} is staged", "stage one first: 'atlas update stage BUNDLE'")
    conf = settings.load(layout)
    required = conf.promote_green_cycles
    name = f"{module} {update.version}"
    try:
        reported = ask_secondary(layout, secondary).get(module) if required else None
    except AtlasError as err:
        verdict = rules.Verdict(False, f"its trial cannot be confirmed: {err.what}")
    else:
        verdict = rules.promotion(module, update.version, update.id, reported, required,
                                  now or clock.utcnow(), rules.fresh_within_s(conf.verify_interval_s))
    if not verdict.ok:
        log.event(messages.UPDATE_PROMOTE_REFUSED, f"ATLAS update: {name} not promoted: {verdict.reason}",
                  priority=4, action="promote-refused", module=module, version=update.version,
                  reason=verdict.reason)
        raise Refused(f"{name} is not promoted: {verdict.reason}",
                      "see 'atlas update status'; 'atlas update rollback' drops it from the secondary")
    with record.locked(layout.update_record):
        the_record = record.read(layout.update_record)
        if the_record.staged.get(module) != update:
            raise Refused(f"the stage of {module} changed meanwhile", "see 'atlas update status'")
        current = _store(layout).selected(module)
        _store(layout).select(module, update.version)
        event = record.Event(clock.now(), "promoted", module, update.version, current, verdict.reason)
        staged = {m: s for m, s in the_record.staged.items() if m != module}
        record.write(replace(the_record, staged=staged).with_event(event), layout.update_record)
    _event(messages.UPDATE_PROMOTED, f"{name} promoted: selected on the primary ({verdict.reason})",
           event, stage_id=update.id)
    return Promoted(module, update.version, current, verdict.reason)


# ---------------------------------------------------------------- rollback and abort


@dataclass(frozen=True)
class Undone:
    action: str  # "rolled-back" | "aborted"
    module: str
    primary_version: str | None  # selected on the primary now
    dropped: str | None  # the staged version dropped from the secondary, if any
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "module": self.module, "primary_version": self.primary_version,
                "dropped": self.dropped, "message": self.text}


def _drop_stage(layout: Layout, module: str, action: str, detail: str) -> Undone:
    """Under the record's lock: forget the stage; the secondary mirrors the primary again."""
    the_record = record.read(layout.update_record)
    update = the_record.staged[module]
    current = _store(layout).selected(module)
    event = record.Event(clock.now(), action, module, update.version, current, detail)
    staged = {m: s for m, s in the_record.staged.items() if m != module}
    record.write(replace(the_record, staged=staged).with_event(event), layout.update_record)
    message_id = messages.UPDATE_ABORTED if action == "aborted" else messages.UPDATE_ROLLED_BACK
    text = (f"{module} {update.version} dropped from its trial: the secondary returns to "
            f"{current or 'the primary selection'} at its next sync; the primary never ran it")
    _event(message_id, text, event, stage_id=update.id)
    return Undone(action, module, current, update.version, text)


def rollback(layout: Layout, module: str | None = None) -> Undone:
    """Undo the newest update step: a version on trial is dropped from the secondary (the
    primary never ran it); otherwise the primary selects its previous version again and the
    secondary mirrors that at its next sync."""
    require_primary(layout, "rollback")
    the_record = record.read(layout.update_record)
    promoted = next((e.module for e in reversed(the_record.events) if e.action == "promoted"), None)
    module = rules.pick_module(module, sorted(the_record.staged), promoted, "rollback")
    with record.locked(layout.update_record):
        if module in record.read(layout.update_record).staged:
            return _drop_stage(layout, module, "rolled-back", "rolled back while on trial")
        store = _store(layout)
        current = store.selected(module)
        previous = store.rollback(module)
        event = record.Event(clock.now(), "rolled-back", module, previous, current,
                             f"the primary selects {previous} again")
        record.write(record.read(layout.update_record).with_event(event), layout.update_record)
    text = (f"{module} {previous} selected again on the primary (was {current}); the secondary "
            "follows at its next sync")
    _event(messages.UPDATE_ROLLED_BACK, text, event)
    return Undone("rolled-back", module, previous, None, text)


def abort(layout: Layout, module: str | None = None) -> Undone:
    """Drop the staged version from the secondary (the primary is unchanged)."""
    require_primary(layout, "abort")
    the_record = record.read(layout.update_record)
    module = rules.pick_module(module, sorted(the_record.staged), None, "abort")
    with record.locked(layout.update_record):
        if module not in record.read(layout.update_record).staged:
            raise Refused(f"no update of {module} is staged")
        return _drop_stage(layout, module, "aborted", "aborted")


# ---------------------------------------------------------------- status


def status(layout: Layout, *, now: datetime | None = None,
           secondary: str | None = None) -> dict[str, Any]:
    """What is staged and how its trial goes, from where this server stands."""
    role = read_role(layout.role_file).role
    conf = settings.load(layout)
    required = conf.promote_green_cycles
    out: dict[str, Any] = {"role": role, "required_green_cycles": required}
    if role is Role.SECONDARY:
        out["trials"] = [{"module": m, **t.to_json()} for m, t in trial.report(layout).items()
                         if t.staged is not None]
        return out
    the_record = record.read(layout.update_record)
    out["events"] = [e.to_json() for e in the_record.events[-EVENTS_SHOWN:]]
    out["staged"] = []
    out["secondary_error"] = None
    if role is not Role.PRIMARY or not the_record.staged:
        return out
    try:
        reports: dict[str, rules.TrialModule] | None = ask_secondary(layout, secondary)
    except AtlasError as err:
        reports, out["secondary_error"] = None, str(err)
    for module, update in sorted(the_record.staged.items()):
        reported = reports.get(module) if reports is not None else None
        if reports is None and required:
            verdict = rules.Verdict(False, f"its trial cannot be confirmed: {out['secondary_error']}")
        else:
            verdict = rules.promotion(module, update.version, update.id, reported, required,
                                      now or clock.utcnow(), rules.fresh_within_s(conf.verify_interval_s))
        on_trial = reported is not None and reported.stage_id == update.id
        out["staged"].append({
            "module": module, **update.to_json(),
            "secondary": reported.to_json() if reported else None,
            "green_cycles": reported.green_cycles if on_trial and reported else 0,
            "promotable": verdict.ok, "reason": verdict.reason})
    return out


def format_status(data: dict[str, Any]) -> str:
    required = data["required_green_cycles"]
    lines = [f"role      {data['role']}; promotion needs {required} consecutive green cycle(s) "
             "on the secondary"]
    if data["role"] == Role.SECONDARY:
        for t in data["trials"]:
            lines.append(f"on trial  {t['module']} {t['staged']} since {t['since']}: "
                         f"{t['green_cycles']} of {required} green cycle(s)"
                         + (f" (the count stops at {t['stopped_by']})" if t["stopped_by"] else ""))
        if not data["trials"]:
            lines.append("on trial  nothing: this server runs what the primary selected")
        return "\n".join(lines)
    for s in data["staged"]:
        one_way = " — ONE-WAY: no rollback once it ran" if s["one_way"] else ""
        lines.append(f"staged    {s['module']} {s['version']} at {s['staged_at']} (the primary runs "
                     f"{s['from_version'] or 'nothing'}){one_way}")
        lines.append(f"  trial   {s['green_cycles']} of {required} green cycle(s) on the secondary")
        lines.append(f"  promote {'possible' if s['promotable'] else 'not yet'}: {s['reason']}")
    if not data["staged"]:
        lines.append("staged    nothing")
    if data.get("secondary_error"):
        lines.append(f"secondary {data['secondary_error']}")
    for e in data["events"][-5:]:
        lines.append(f"history   {e['time']} {e['action']:<11} {e['module']} {e['version']}"
                     + (f" (from {e['from_version']})" if e["from_version"] else "")
                     + (f": {e['detail']}" if e["detail"] else ""))
    return "\n".join(lines)
