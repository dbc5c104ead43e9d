"""One sync, on the secondary: hello → list → fetch configuration generations and module
versions → follow the primary's staged updates (select them here for their trial, or end
trials it no longer stages) → mirror selections → fetch the primary's Verifier results →
compare manifests → apply the newest configuration → make sure the Verifier's test
environment exists → record it all in state.json.

A failure that cuts the secondary off from the primary (unreachable, wrong host key, key
refused) ends the sync at once; any other failure is recorded and the steps that do not
depend on it still run (so the drift report shows, say, the module a full disk kept out).
Every step leaves either the old or the new state, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from atlas_services import clock, cluster, fsutil, log, messages, untrusted
from atlas_services.errors import AtlasError
from atlas_services.paths import Layout
from atlas_services.peer import protocol
from atlas_services.peer.client import Client, Target
from atlas_services.peer.failures import Kind, SyncError
from atlas_services.roles import Role
from atlas_services.store import bundle, subvol
from atlas_services.store.config import ConfigStore
from atlas_services.store.modules import ModuleStore
from atlas_services.sync import drift, listing, manifest, plan, secondary, state, transfer
from atlas_services.sync.secondary import Hooks
from atlas_services.update import marks

logger = logging.getLogger(__name__)

# After one of these, nothing else can be asked of the primary.
FATAL = {Kind.UNREACHABLE, Kind.HOST_KEY, Kind.AUTH, Kind.TRANSPORT, Kind.NOT_PRIMARY}
_NUMBER = re.compile(r"[1-9][0-9]*")


def _local_error(err: Exception, step: str) -> SyncError:
    if isinstance(err, SyncError):
        return err
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return SyncError(Kind.DISK_FULL, f"{step}: the secondary's disk is full ({err})",
                         "free space under /var/lib/atlas; the last good state is kept")
    if isinstance(err, AtlasError):
        return SyncError(Kind.LOCAL_FAILED, f"{step}: {err.what}", err.hint)
    return SyncError(Kind.LOCAL_FAILED, f"{step}: {err}")


@dataclass
class Session:
    """The work of one sync and what it found (mutable while it runs; state.json after)."""

    client: Client
    layout: Layout
    hooks: Hooks
    previous: state.SyncState
    errors: list[SyncError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    received: list[transfer.Received] = field(default_factory=list)
    remote: listing.Listing | None = None
    drift_items: tuple[drift.DriftItem, ...] | None = None
    applied: tuple[int | None, str | None] = (None, None)
    results_fetched: str | None = None
    config_failed: bool = False
    greeting: dict[str, Any] = field(default_factory=dict)  # the primary's hello

    def step(self, name: str, action: Callable[[], None]) -> bool:
        try:
            action()
            return True
        except (AtlasError, OSError) as err:
            error = _local_error(err, name)
            logger.warning("sync: %s failed: %s", name, error)
            self.errors.append(error)
            if error.kind in FATAL:
                raise error from None
            return False

    # ------------------------------------------------------------ the steps

    def recover(self) -> None:
        """Undo what an interrupted sync left (before asking the primary anything, so it is
        undone even while the primary is away): unfinished receives, generations set aside."""
        store = ConfigStore(self.layout.config_store)
        if store.exists():
            with fsutil.locked(store.lock_file):
                subvol.remove_staging(store.generations_dir, _NUMBER)
                restored = secondary.restore_aside(store)
            if restored:
                self.notes.append(f"generation(s) {restored} put back after an interrupted sync")
        modules = ModuleStore(self.layout.module_store, self.layout.formats_file)
        if modules.root.is_dir():
            with fsutil.locked(modules.lock_file):
                for module in modules.modules():
                    subvol.remove_staging(modules.root / module, bundle.VERSION_PATTERN)

    def hello(self) -> None:
        reply = self.client.call_json("hello")
        if not isinstance(reply, dict) or reply.get("protocol") != protocol.PROTOCOL:
            raise SyncError(Kind.BAD_REPLY, f"the primary speaks sync protocol "
                            f"{reply.get('protocol') if isinstance(reply, dict) else '?'}, this "
                            f"server {protocol.PROTOCOL}", "update both servers to the same ATLAS version")
        if reply.get("role") != Role.PRIMARY:
            raise SyncError(Kind.NOT_PRIMARY, f"{self.client.target.describe()} answers as "
                            f"{reply.get('role')!r}, not as the primary: nothing is pulled from it",
                            "check which server holds the primary's data set")
        self.greeting = reply
        the_cluster = cluster.find_on_dataset(self.layout.data_root)
        ours = the_cluster.cluster_id if the_cluster else None
        theirs = reply.get("cluster_id")
        if ours and theirs and ours != theirs:
            raise SyncError(Kind.NOT_PRIMARY, f"the primary belongs to cluster {theirs}, this server "
                            f"to {ours}", "check the data sets")

    def list_stores(self) -> None:
        self.remote = listing.Listing.from_json(self.client.call_json("list"))
        if not self.remote.config:
            raise SyncError(Kind.REMOTE_FAILED, "the primary has no configuration generations",
                            "its configuration store is created at boot (atlas-store-seed.service)")

    def _fetch(self, request: list[str], fallback: list[str], directory: Path, name: str) -> None:
        try:
            self.received.append(transfer.fetch(self.client, request, directory, name,
                                                incremental=request != fallback))
            return
        except SyncError as err:
            if err.kind is not Kind.UNKNOWN_PARENT or request == fallback:
                raise
            self.notes.append(f"{name}: {err.what}; fetched in full instead")
        self.received.append(transfer.fetch(self.client, fallback, directory, name, incremental=False))

    def config(self) -> None:
        assert self.remote is not None
        self.config_failed = True
        store = ConfigStore(self.layout.config_store)
        store.require()
        with fsutil.locked(store.lock_file):
            the_plan = plan.plan_config(self.remote.config, listing.list_config(store))
            if the_plan.fetch or the_plan.superseded:
                edits = secondary.pending_edits(store)
                for step in the_plan.fetch:
                    self._fetch_generation(store, step)
                for number in the_plan.superseded:
                    subvol.delete(store.generations_dir / str(number))
                if the_plan.superseded:
                    self.notes.append(f"generation(s) {list(the_plan.superseded)} of this server's own "
                                      "history superseded by the primary's")
                newest = store.newest()
                assert newest is not None
                kept = secondary.reset_work(store, newest, edits)
                if kept:
                    self.notes.append(f"uncommitted edits of the working tree kept in {kept}")
                subvol.sync(store.root)
        self.config_failed = False

    def _fetch_generation(self, store: ConfigStore, step: plan.ConfigFetch) -> None:
        aside = secondary.set_aside(store, step.number) if step.replaces else None
        full = ["send-config", str(step.number)]
        request = [*full, str(step.parent)] if step.parent is not None else full
        try:
            self._fetch(request, full, store.generations_dir, str(step.number))
        except BaseException:
            if aside is not None:
                secondary.restore_aside(store)
            raise
        if aside is not None:
            subvol.delete(aside)

    def modules(self) -> None:
        assert self.remote is not None
        store = ModuleStore(self.layout.module_store, self.layout.formats_file)
        subvol.ensure(store.root, "the module store")
        with fsutil.locked(store.lock_file):
            fetches = plan.plan_modules(self.remote.modules, listing.list_modules(store))
            for step in fetches:
                self._fetch_module(store, step)
            if fetches:
                subvol.sync(store.root)

    def _fetch_module(self, store: ModuleStore, step: plan.ModuleFetch) -> None:
        assert self.remote is not None
        module_dir = store.root / step.module
        module_dir.mkdir(exist_ok=True)
        full = ["send-module", step.module, step.version]
        request = [*full, step.parent] if step.parent is not None else full
        self._fetch(request, full, module_dir, step.version)
        path = module_dir / step.version
        expected = next(v for v in self.remote.modules[step.module].versions if v.version == step.version)
        try:
            _check_module(path, step.module, step.version, expected.manifest_sha256)
        except AtlasError as err:
            subvol.delete(path)
            if isinstance(err, SyncError):
                raise
            raise SyncError(Kind.CORRUPT_STREAM, f"module {step.module} {step.version} arrived "
                            f"damaged: {err.what}", "the next sync fetches it again") from None

    def follow_staged(self) -> None:
        """Take what the primary stages on trial here, or end trials it no longer stages."""
        from atlas_services.update import rules, trial

        if "staged" not in self.greeting:
            why = self.greeting.get("staged_error") or "it runs an ATLAS that predates updates"
            self.notes.append(f"the primary does not say what it stages ({why}): trials here are "
                              "left as they are")
            return
        try:
            offers = rules.parse_staged_reply({"staged": self.greeting["staged"]})
        except ValueError as err:
            raise SyncError(Kind.BAD_REPLY, f"the primary's staged updates: {err}") from None
        store = ModuleStore(self.layout.module_store, self.layout.formats_file)
        followed = trial.follow(offers, store, self.layout.trial_marks, clock.now())
        self.notes.extend(followed.notes)
        if followed.failures:
            raise SyncError(Kind.SELECT_FAILED, "could not select a staged version for its trial: "
                            + "; ".join(followed.failures), "abort the update on the primary "
                            "('atlas update abort'), or see 'atlas module list' here")

    def selections(self) -> None:
        assert self.remote is not None
        store = ModuleStore(self.layout.module_store, self.layout.formats_file)
        markers = marks.staged_versions(self.layout.trial_marks)
        to_select, skipped = plan.plan_selections(self.remote.modules, listing.list_modules(store), markers)
        for module in skipped:
            self.notes.append(f"{module}: an update is staged here ({markers[module]}); the primary's "
                              f"selection {self.remote.modules[module].selected} is not mirrored")
        failures = []
        for selection in to_select:
            try:
                store.select(selection.module, selection.version)
            except AtlasError as err:
                failures.append(f"{selection.module} {selection.version}: {err}")
        if failures:
            raise SyncError(Kind.SELECT_FAILED, "could not select what the primary selected: "
                            + "; ".join(failures), "see 'atlas module list'")

    def results(self) -> None:
        reply = self.client.call_json("results")
        if not isinstance(reply, dict) or type(reply.get("available")) is not bool:
            raise SyncError(Kind.BAD_REPLY, "the primary's Verifier results reply is malformed")
        if not reply["available"]:
            self.notes.append("the primary has no Verifier results yet")
            return
        fsutil.write_atomic(self.layout.peer_results, json.dumps(reply["results"], indent=2) + "\n")
        self.results_fetched = clock.now()

    def compare(self) -> None:
        theirs = manifest.EnvManifest.from_json(self.client.call_json("manifest"))
        ours = manifest.collect(ModuleStore(self.layout.module_store, self.layout.formats_file),
                                self.layout)
        self.drift_items = tuple(drift.compare(
            theirs, ours, staged=marks.staged_versions(self.layout.trial_marks),
            interface_pattern=_primary_interface(self.layout.data_root)))

    def apply(self) -> None:
        store = ConfigStore(self.layout.config_store)
        newest = store.newest()
        if newest is None:
            return
        gen_id = store.info(newest).id
        if (self.previous.applied_generation, self.previous.applied_id) == (newest, gen_id):
            self.applied = (newest, gen_id)
            return
        try:
            self.notes.append(self.hooks.apply_config(store, newest))
        except AtlasError as err:
            raise SyncError(Kind.APPLY_FAILED, f"generation {newest} did not apply: {err.what}",
                            err.hint or "see 'atlas config apply --check'") from None
        self.applied = (newest, gen_id)

    def verify_setup(self) -> None:
        result = self.hooks.verify_setup()
        if result.ok:
            return
        if not result.available:
            self.notes.append(result.message)
            return
        raise SyncError(Kind.VERIFY_SETUP_FAILED, result.message, "run 'atlas verify setup' to see why")

    def run(self) -> None:
        self.step("recovery", self.recover)
        if not self.step("hello", self.hello) or not self.step("list", self.list_stores):
            return
        self.step("configuration", self.config)
        self.step("modules", self.modules)
        self.step("staged updates", self.follow_staged)
        self.step("selections", self.selections)
        self.step("Verifier results", self.results)
        self.step("manifest", self.compare)
        if not self.config_failed:
            self.step("apply", self.apply)
            self.step("verify setup", self.verify_setup)

    # ------------------------------------------------------------ the record

    def final_state(self, started: float) -> state.SyncState:
        store, modules = ConfigStore(self.layout.config_store), ModuleStore(self.layout.module_store,
                                                                                 self.layout.formats_file)
        local_gens = tuple(store.generations()) if store.exists() else ()
        first = self.errors[0] if self.errors else None
        done = clock.now()
        applied_gen, applied_id = self.applied
        prev = self.previous
        return replace(
            prev,
            status="failed" if first else "ok",
            last_success=prev.last_success if first else done,
            last_error=str(first) if first else None,
            error_kind=first.kind if first else None,
            peer=self.client.target.describe(),
            primary_generations=(tuple(self.remote.generation_numbers()) if self.remote
                                 else prev.primary_generations),
            secondary_generations=local_gens,
            primary_modules=(_module_sides(self.remote.modules) if self.remote else prev.primary_modules),
            secondary_modules=_module_sides(listing.list_modules(modules)),
            applied_generation=applied_gen if applied_id else prev.applied_generation,
            applied_id=applied_id or prev.applied_id,
            drift=self.drift_items if self.drift_items is not None else prev.drift,
            drift_checked=done if self.drift_items is not None else prev.drift_checked,
            transfer=state.Transfer(len(self.received), sum(r.bytes for r in self.received),
                                    round(sum(r.seconds for r in self.received), 3)),
            results_fetched=self.results_fetched or prev.results_fetched,
            notes=tuple(self.notes + [f"also: {e}" for e in self.errors[1:]]),
            duration_s=round(time.monotonic() - started, 3),
        )


def _check_module(path: Path, module: str, version: str, manifest_sha256: str) -> None:
    """A received module version is the one the primary listed, intact."""
    try:
        # What a peer's stream made: it could be a FIFO or a link as well as a file.
        raw = untrusted.read_bytes(path / bundle.MANIFEST_NAME, bundle.MAX_MANIFEST, below=path)
    except OSError as err:
        raise SyncError(Kind.CORRUPT_STREAM, f"module {module} {version}: its manifest is "
                        f"unreadable: {untrusted.describe(err)}") from None
    if hashlib.sha256(raw).hexdigest() != manifest_sha256:
        raise SyncError(Kind.CORRUPT_STREAM, f"module {module} {version}: its manifest is not the one "
                        "the primary listed")
    try:
        manifest_data = untrusted.parse_json(raw)
    except ValueError as err:
        raise SyncError(Kind.CORRUPT_STREAM, f"module {module} {version}: its manifest is not "
                        f"JSON: {err}") from None
    the_manifest = bundle.Manifest.from_json(manifest_data, f"{module} {version}")
    if (the_manifest.name, the_manifest.version) != (module, version):
        raise SyncError(Kind.CORRUPT_STREAM, f"module {module} {version}: the manifest names "
                        f"{the_manifest.name} {the_manifest.version}")
    bundle.verify_tree(path, the_manifest)


def _module_sides(modules: dict[str, listing.ModuleEntry]) -> dict[str, state.ModuleSide]:
    return {name: state.ModuleSide(tuple(entry.version_names()), entry.selected)
            for name, entry in modules.items()}



def _primary_interface(data_root: Path) -> str | None:
    the_cluster = cluster.find_on_dataset(data_root)
    return the_cluster.identities[Role.PRIMARY].interface if the_cluster else None


def run(target: Target, layout: Layout = Layout(), hooks: Hooks | None = None) -> state.SyncState:
    """Sync once (waiting for a sync already running to finish) and return the new state,
    which is also written to state.json. Never raises for a failed sync: the state says."""
    hooks = hooks or secondary.box_hooks(layout)
    layout.sync_state.parent.mkdir(parents=True, exist_ok=True)
    with fsutil.locked(layout.sync_lock):
        try:
            previous = state.read(layout.sync_state)
        except AtlasError as err:
            logger.warning("%s; starting a new record", err)
            previous = state.SyncState()
        started = time.monotonic()
        attempt = previous.started(clock.now())
        try:
            state.write(attempt, layout.sync_state)
        except OSError as err:  # a full disk must not stop the sync from cleaning up
            logger.warning("could not record the start of the sync in %s: %s", layout.sync_state, err)
        # Under the sync lock, so the connection's directory is this sync's alone.
        with Client(target, workdir=layout.sync_connection) as the_client:
            session = Session(the_client, layout, hooks, attempt)
            with contextlib.suppress(SyncError):  # recorded in session.errors
                session.run()
        result = session.final_state(started)
        try:
            state.write(result, layout.sync_state)
        except OSError as err:
            logger.error("could not record the sync in %s: %s", layout.sync_state, err)
    _log(result)
    return result


def record_failure(layout: Layout, error: SyncError) -> state.SyncState:
    """Record an attempt that failed before it could start (no data set, no key): the
    Verifier sees the attempt, the status says why."""
    try:
        previous = state.read(layout.sync_state)
    except AtlasError:
        previous = state.SyncState()
    when = clock.now()
    result = replace(previous, status="failed", last_attempt=when, last_error=str(error),
                     error_kind=error.kind, notes=(), duration_s=0.0)
    try:
        state.write(result, layout.sync_state)
    except OSError as err:
        logger.error("could not record the sync in %s: %s", layout.sync_state, err)
    _log(result)
    return result


def _log(result: state.SyncState) -> None:
    if result.status == "ok":
        log.event(messages.SYNC_OK, f"ATLAS sync with {result.peer}: ok, {result.transfer.streams} "
                  f"stream(s), {result.transfer.bytes} bytes", priority=6, peer=result.peer,
                  bytes=result.transfer.bytes, generation=result.applied_generation)
        return
    message_id = messages.SYNC_IMPOSTOR if result.error_kind == Kind.HOST_KEY else messages.SYNC_FAILED
    log.event(message_id, f"ATLAS sync with {result.peer} failed: {result.last_error}", priority=3,
              peer=result.peer, error_kind=result.error_kind)


# ---------------------------------------------------------------- check only


@dataclass(frozen=True)
class CheckReport:
    config: plan.ConfigPlan
    modules: tuple[plan.ModuleFetch, ...]
    selections: tuple[plan.Selection, ...]
    staged_skipped: tuple[str, ...]
    drift: tuple[drift.DriftItem, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "fetch_generations": [{"number": f.number, "parent": f.parent, "replaces": f.replaces}
                                  for f in self.config.fetch],
            "superseded_generations": list(self.config.superseded),
            "fetch_modules": [{"module": f.module, "version": f.version, "parent": f.parent}
                              for f in self.modules],
            "select": [{"module": s.module, "version": s.version} for s in self.selections],
            "staged_skipped": list(self.staged_skipped),
            "drift": [d.to_json() for d in self.drift],
        }


def check(target: Target, layout: Layout = Layout()) -> CheckReport:
    """Ask the primary what it holds and compare: what a sync would fetch and select, and
    the drift as it stands now. Changes nothing on either server."""
    with Client(target) as the_client:
        session = Session(the_client, layout, secondary.box_hooks(layout), state.SyncState())
        session.hello()
        session.list_stores()
        session.compare()
    assert session.remote is not None and session.drift_items is not None
    config_store = ConfigStore(layout.config_store)
    module_store = ModuleStore(layout.module_store, layout.formats_file)
    local_modules = listing.list_modules(module_store)
    markers = marks.staged_versions(layout.trial_marks)
    selections, skipped = plan.plan_selections(session.remote.modules, local_modules, markers)
    return CheckReport(plan.plan_config(session.remote.config, listing.list_config(config_store)),
                       plan.plan_modules(session.remote.modules, local_modules), selections, skipped,
                       session.drift_items)
