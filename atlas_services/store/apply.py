"""`atlas config apply`: render a generation for this server's role, validate it with each
service's own checker in a staging tree, replace the files in /etc, reload what changed.

    render (StrictUndefined) → staging tree → nginx -t / postconf -n -M / doveconf -n /
    testparm -s / postgres -C → journal → write every new file to a temp name → rename
    them all into place → record what was applied → reload or restart only the services
    whose files changed (systemd over D-Bus) → wait until they serve the new files

A generation that fails rendering or validation changes nothing under the target root.
One apply runs at a time (a lock: the CLI's, a sync's and the boot's), and one that dies
midway is finished or undone by the next (store/install.py), so the installed files are
always one generation's.

Templates name the files they include through `{{ config_root }}` (see render.py): the
staging tree is rendered with config_root = the staging directory, the installed tree
with config_root = "" (the real /etc), so each checker reads the staged files only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from atlas_services import daemons, fsutil, osinfo, proc, untrusted
from atlas_services.errors import AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.render import TEMPLATE_SUFFIX, render_tree, standard_context
from atlas_services.roles import NoRole, Role, read_role
from atlas_services.settings import Settings
from atlas_services.store import install, settle
from atlas_services.store.config import SETTINGS_NAME, TEMPLATES_NAME, ConfigStore, check_settings

logger = logging.getLogger(__name__)

# Where apply records what it installed (relative to the target root).
APPLIED_FILE = PurePosixPath(Layout().config_dir.relative_to("/").as_posix()) / "applied.json"
SETTINGS_TARGET = PurePosixPath(Layout().settings_file.relative_to("/").as_posix())
Files = dict[PurePosixPath, bytes]
# A checker that hangs (a service's tool waiting on something) fails the apply, says so.
CHECK_TIMEOUT_S = 60
# How long a reload may take to be done (systemd's job) and seen (nginx's new workers).
RELOAD_TIMEOUT_S = 60
SETTLE_TIMEOUT_S = 30


class ValidationFailed(AtlasError):
    """A service's own checker refused a staged file; nothing was installed."""

    def __init__(self, service: str, checker: str, file: str, detail: str) -> None:
        self.service, self.checker, self.file, self.detail = service, checker, file, detail
        super().__init__(f"{checker} refused {file}: {detail}",
                         "fix the template in the working tree, commit, and apply again")


# ---------------------------------------------------------------- checkers


_ERROR_WORDS = re.compile(r"emerg|fatal|error|unknown|invalid|unrecognized|bad ", re.IGNORECASE)


# Time stamps and process ids in front of a checker's message (nginx, postgres).
_NOISE = re.compile(r"^(\d{4}[/-]\d\d[/-]\d\d \d\d:\d\d:\d\d(\.\d+)?( \w+)? )?"
                    r"(\[\d+\] )?(\[(\w+)\] \d+#\d+: )?")


def _detail(output: str) -> str:
    lines = [_NOISE.sub("", line.strip()).strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if _ERROR_WORDS.search(line):
            return line
    return lines[-1] if lines else "no message"


def _file_named(output: str, staging: Path, fallback: PurePosixPath) -> str:
    """The staged file a checker's message names (by its path on the box): the one with a
    line number if any (`FILE:12`, `FILE, line 12`, `FILE line 12`), else the first named."""
    pattern = re.escape(str(staging)) + r"/([^\s:,\"']+)(:\d+|,? line \d+)?"
    found = [(m.group(1), m.group(2) is not None) for m in re.finditer(pattern, output)]
    with_line = [name for name, has_line in found if has_line]
    if with_line:
        return with_line[0]
    return found[0][0] if found else fallback.as_posix()


def _run_checker(service: str, argv: Sequence[str | os.PathLike[str]], staging: Path,
                 main: PurePosixPath, *, bad_output: re.Pattern[str] | None = None) -> None:
    result = proc.run(argv, ok_codes=proc.ANY_EXIT, timeout=CHECK_TIMEOUT_S)
    output = result.stderr + result.stdout
    bad = bad_output.search(output) if bad_output is not None else None
    if result.returncode == 0 and bad is None:
        return
    detail = bad.group(0) if bad is not None else _detail(output)
    raise ValidationFailed(service, Path(str(argv[0])).name, _file_named(output, staging, main),
                           detail.replace(str(staging), ""))


def check_nginx(staging: Path, files: list[PurePosixPath]) -> None:
    main = PurePosixPath("etc/nginx/nginx.conf")
    _run_checker("nginx", ["nginx", "-t", "-q", "-c", staging / main], staging, main)


def check_postfix(staging: Path, files: list[PurePosixPath]) -> None:
    conf = staging / "etc/postfix"
    # postconf names the file and line of a syntax error on stderr, and warns of a parameter
    # it does not know (for us, a typo). Not `postfix check`: it creates the queue
    # directories main.cf names, outside the staging tree, even for `apply --check`.
    _run_checker("postfix", ["postconf", "-c", conf, "-n"], staging, PurePosixPath("etc/postfix/main.cf"),
                 bad_output=re.compile(r"warning: \S*main\.cf[^\n]*unused parameter: [^\n]*"))
    _run_checker("postfix", ["postconf", "-c", conf, "-M"], staging,
                 PurePosixPath("etc/postfix/master.cf"))


def check_dovecot(staging: Path, files: list[PurePosixPath]) -> None:
    main = PurePosixPath("etc/dovecot/dovecot.conf")
    _run_checker("dovecot", ["doveconf", "-n", "-c", staging / main], staging, main)


def check_samba(staging: Path, files: list[PurePosixPath]) -> None:
    main = PurePosixPath("etc/samba/smb.conf")
    # testparm only warns about a parameter it does not know: for us that is a typo.
    _run_checker("samba", ["testparm", "-s", staging / main], staging, main,
                 bad_output=re.compile(r"Unknown parameter encountered: .*"))


def _postgres_binary(version: str) -> Path:
    binary = Path(f"/usr/lib/postgresql/{version}/bin/postgres")
    if not binary.exists():
        raise AtlasError(f"PostgreSQL {version} is not installed ({binary} missing)",
                         f"the templates configure etc/postgresql/{version}/")
    return binary


def check_postgresql(staging: Path, files: list[PurePosixPath]) -> None:
    mains = sorted({f for f in files if f.name == "postgresql.conf"} or
                   {PurePosixPath(p.relative_to(staging).as_posix())
                    for p in (staging / "etc/postgresql").glob("*/*/postgresql.conf")})
    for main in mains:
        version = main.parts[2]  # etc/postgresql/<version>/<cluster>/postgresql.conf
        # -C parses the whole file (and its includes) and prints one value, or names the
        # bad line; it starts no server.
        _run_checker("postgresql", [_postgres_binary(version), "-C", "data_directory",
                                    f"--config-file={staging / main}"], staging, main)


# ---------------------------------------------------------------- the service table


@dataclass(frozen=True)
class Service:
    """A business service: the files that are its configuration, its unit, its checker."""

    name: str
    prefix: str  # target path prefix, relative to /
    unit: str
    check: Callable[[Path, list[PurePosixPath]], None]
    action: str = "reload"  # "reload" (reload, or restart if it cannot) | "restart"

    def owns(self, path: PurePosixPath) -> bool:
        return path.as_posix().startswith(self.prefix)


_CHECKERS: dict[str, Callable[[Path, list[PurePosixPath]], None]] = {
    "nginx": check_nginx, "postfix": check_postfix, "dovecot": check_dovecot,
    "postgresql": check_postgresql, "samba": check_samba,
}
# Table order is the order services are reloaded in: the web server first, as before.
_ORDER = ("nginx", "postfix", "dovecot", "postgresql", "samba")
SERVICES: tuple[Service, ...] = tuple(
    Service(name, daemons.BY_NAME[name].config, daemons.BY_NAME[name].unit, _CHECKERS[name])
    for name in _ORDER)


def services_touched(changed: Iterable[PurePosixPath], services: Sequence[Service]) -> list[Service]:
    """The services owning any of the changed paths, in table order (a pure decision)."""
    paths_ = list(changed)
    return [s for s in services if any(s.owns(p) for p in paths_)]


# ---------------------------------------------------------------- reloading through systemd


class ServiceManager(Protocol):
    """Reloads or restarts a unit and returns when that is done (a running unit only)."""

    def reload(self, unit: str) -> None: ...
    def restart(self, unit: str) -> None: ...


@runtime_checkable
class ProcessAware(Protocol):
    """A manager that knows a unit's main process (to see a reload take effect)."""

    def main_pid(self, unit: str) -> int | None: ...


class SystemdManager:
    """systemd's manager over D-Bus: acts only on units that are running (a stopped
    service picks up the new files when it starts), and waits for each job to end."""

    def __init__(self) -> None:
        self._bus: Any = None

    def _manager(self) -> Any:
        if self._bus is None:
            try:
                import pydbus
            except ImportError:
                raise AtlasError("python3-pydbus is not installed") from None
            self._bus = pydbus.SystemBus()
        return self._bus.get("org.freedesktop.systemd1")

    def _wait(self, job: str, unit: str, what: str) -> None:
        manager = self._manager()
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while any(row[4] == job for row in manager.ListJobs()):
            if time.monotonic() >= deadline:
                raise AtlasError(f"{unit}: the {what} did not finish within {RELOAD_TIMEOUT_S} s")
            time.sleep(0.1)
        state = self._unit(unit).ActiveState
        if state not in ("active", "inactive"):  # inactive: not running, nothing to reload
            raise AtlasError(f"{unit} is {state} after its {what}")

    def _unit(self, unit: str) -> Any:
        return self._bus.get("org.freedesktop.systemd1", self._manager().LoadUnit(unit))

    def reload(self, unit: str) -> None:
        self._wait(self._manager().ReloadOrTryRestartUnit(unit, "replace"), unit, "reload")

    def restart(self, unit: str) -> None:
        self._wait(self._manager().TryRestartUnit(unit, "replace"), unit, "restart")

    def main_pid(self, unit: str) -> int | None:
        self._manager()
        pid = int(self._unit(unit).MainPID)
        return pid or None


def default_manager() -> ServiceManager | None:
    """systemd's D-Bus manager when systemd runs this system, else None (nothing to reload)."""
    return SystemdManager() if Path("/run/systemd/system").is_dir() else None


# ---------------------------------------------------------------- the context for a role


def _identity(role: dict[str, Any]) -> dict[str, Any]:
    """The role's identity in role.json: the data set's volume.json identity when recorded
    (hostname, address/prefix, gateway, dns), else the top-level fields."""
    dataset = role.get("dataset")
    volume = dataset.get("volume") if isinstance(dataset, dict) else None
    identity = volume.get("identity") if isinstance(volume, dict) else None
    if isinstance(identity, dict):
        return {**identity, "domain": role.get("domain", "")}
    return role


def role_context(settings: Settings, layout: Layout = Layout()) -> dict[str, Any]:
    """The template context for this server from /run/atlas/role.json (role and identity);
    without a decided role it renders for standby."""
    record = read_role(layout.role_file)
    if record.role is NoRole.UNREADABLE and not record.data:
        raise AtlasError(f"{layout.role_file} is unreadable", "it is rewritten by 'atlas role apply'")
    identity = _identity(dict(record.data))
    role = record.role if record.role.has_dataset else Role.STANDBY
    address = str(identity.get("address") or "127.0.0.1")
    prefix = identity.get("prefix", 32)
    if "/" in address:
        address, _, bits = address.partition("/")
        prefix = int(bits) if bits.isdigit() else prefix
    return standard_context(
        role=role, hostname=str(identity.get("hostname") or osinfo.hostname()),
        data_root=str(layout.data_root), settings=settings.to_json(),
        domain=str(identity.get("domain") or ""), address=address,
        prefix=int(prefix) if isinstance(prefix, int) else 32,
        gateway=str(identity.get("gateway") or ""),
        dns=[str(d) for d in identity.get("dns", [])] if isinstance(identity.get("dns"), list) else [],
    )


# ---------------------------------------------------------------- applying


@dataclass(frozen=True)
class ApplyResult:
    generation: int
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)  # units reloaded or restarted
    checked: list[str] = field(default_factory=list)  # services whose checker passed
    applied: bool = True  # False for a check-only run
    # Units whose reload did not end with them serving the new files, each with why.
    unconfirmed: list[str] = field(default_factory=list)
    recovered: str = ""  # what the apply found left by one that died, and did about it

    def to_json(self) -> dict[str, Any]:
        return {"generation": self.generation, "changed": self.changed, "removed": self.removed,
                "services": self.services, "checked": self.checked, "applied": self.applied,
                "unconfirmed": self.unconfirmed, "recovered": self.recovered}


def _refuse_ambiguous(templates: Path) -> None:
    """`x` and `x.j2` would both render to `x`: refuse rather than pick one silently."""
    for path in templates.rglob(f"*{TEMPLATE_SUFFIX}"):
        plain = path.with_suffix("")
        if plain.is_file():
            raise Refused(f"templates/{plain.relative_to(templates)} exists both as a template and "
                          "as a plain file", "remove one of them")


def _render(generation: Path, context: Mapping[str, Any], config_root: str) -> Files:
    templates = generation / TEMPLATES_NAME
    if templates.is_dir():
        _refuse_ambiguous(templates)
    files = render_tree(templates, {**context, "config_root": config_root}) if templates.is_dir() else {}
    settings = generation / SETTINGS_NAME
    if settings.is_file():
        files.setdefault(SETTINGS_TARGET, settings.read_bytes())
    return files


def _modes(generation: Path, files: Files) -> dict[PurePosixPath, int]:
    """Each output file takes the permission bits of its template."""
    modes: dict[PurePosixPath, int] = {}
    for rel in files:
        source = generation / TEMPLATES_NAME / rel
        source_j2 = source.with_name(source.name + ".j2")
        for candidate in (source_j2, source, generation / SETTINGS_NAME):
            if candidate.is_file():
                modes[rel] = candidate.stat().st_mode & 0o777
                break
        else:
            modes[rel] = 0o644
    return modes


def _stage(staging: Path, target_root: Path, files: Files, services: Sequence[Service]) -> None:
    """The service directories as they are now, with the new files laid over them, so a
    checker also finds the files the templates do not provide (mime.types, conf.d/...)."""
    for service in services:
        existing = target_root / service.prefix
        if existing.is_dir():
            shutil.copytree(existing, staging / service.prefix, symlinks=True, dirs_exist_ok=True)
    for rel, data in files.items():
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_bytes(data)


def validate(generation: Path, context: Mapping[str, Any], target_root: Path,
             services: Sequence[Service]) -> list[str]:
    """Render into a staging tree and run the checker of every service the tree configures.
    Returns the names of the services checked; raises ValidationFailed."""
    with tempfile.TemporaryDirectory(prefix="atlas-apply-") as tmp:
        staging = Path(tmp)
        # Stays 0700: it may hold copies of the services' private keys (samba/tls, ...).
        files = _render(generation, context, str(staging))
        touched = services_touched(files, services)
        _stage(staging, target_root, files, touched)
        for service in touched:
            service.check(staging, [f for f in files if service.owns(f)])
            logger.info("%s accepted the staged configuration", service.name)
        return [s.name for s in touched]


def _read_applied(target_root: Path) -> dict[str, str]:
    """What the last apply installed; a path in it that apply could never have written
    (absolute, '..', outside etc/) is ignored, never removed."""
    try:
        data = untrusted.load_json(target_root / APPLIED_FILE, 16 * 2**20)
    except (OSError, ValueError):
        return {}
    files = data.get("files", {}) if isinstance(data, dict) else {}
    if not isinstance(files, dict):
        return {}
    kept = {str(k): str(v) for k, v in files.items() if install.safe_target(str(k)) is not None}
    for path in sorted(set(map(str, files)) - set(kept)):
        logger.warning("applied.json names %r, which apply never writes: ignored", path)
    return kept


def _differs(path: Path, data: bytes, mode: int) -> bool:
    try:
        st = path.lstat()
        if not path.is_file() or path.is_symlink() or st.st_mode & 0o777 != mode or st.st_size != len(data):
            return True
        return path.read_bytes() != data
    except FileNotFoundError:
        return True


def apply(store: ConfigStore, gen: int | None = None, *, layout: Layout = Layout(),
          context: Mapping[str, Any] | None = None, services: Sequence[Service] = SERVICES,
          manager: ServiceManager | None = None, check_only: bool = False) -> ApplyResult:
    """Apply generation `gen` (default: the newest) under the layout's root ("/" on the box).

    `context` is the template context (default: from role.json); `manager` reloads units
    (default: systemd over D-Bus when systemd runs, else none). Returns when every reloaded
    service serves the new files, or names those that did not (`unconfirmed`).
    """
    store.require()
    number = gen if gen is not None else store.newest()
    if number is None:
        raise Refused("nothing is committed yet", "commit the working tree with 'atlas config commit'")
    generation = store.path(number)
    check_settings(generation)
    if context is None:
        settings_file = generation / SETTINGS_NAME
        settings = (Settings.from_json(json.loads(settings_file.read_text()), SETTINGS_NAME)
                    if settings_file.is_file() else Settings())
        context = role_context(settings, layout)
    if check_only:
        return _plan(number, generation, context, layout, services, check_only=True)[0]
    manager = manager if manager is not None else default_manager()
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    # One apply at a time: the CLI's, a sync's and the boot's would otherwise interleave
    # their renames and leave two generations mixed.
    with fsutil.locked(layout.apply_lock):
        recovered, pending = _recover(layout, services, manager)
        result, files, modes = _plan(number, generation, context, layout, services)
        touched = services_touched([PurePosixPath(p) for p in result.changed + result.removed],
                                   services)
        if result.changed or result.removed:
            record = {"generation": number, "files": {
                p.as_posix(): hashlib.sha256(files[p]).hexdigest() for p in sorted(files)}}
            install.install(layout.root, layout.apply_journal, APPLIED_FILE, number, files, modes,
                            [PurePosixPath(p) for p in result.changed],
                            [PurePosixPath(p) for p in result.removed], record,
                            [s.unit for s in touched])
        to_reload = [s for s in services if s in touched or s.unit in pending]
        unconfirmed = _reload(to_reload, manager)
        install.finish(layout.apply_journal)
    return ApplyResult(generation=result.generation, changed=result.changed, removed=result.removed,
                       services=[s.unit for s in to_reload], checked=result.checked,
                       unconfirmed=unconfirmed, recovered=recovered)


def _plan(number: int, generation: Path, context: Mapping[str, Any], layout: Layout,
          services: Sequence[Service], *, check_only: bool = False
          ) -> tuple[ApplyResult, Files, dict[PurePosixPath, int]]:
    """Render and compare with what is installed; check what would change (all of it with
    `check_only`). Changes nothing."""
    target_root = layout.root
    on_box = target_root.resolve() == Path("/")
    files = _render(generation, context, "" if on_box else str(target_root))
    modes = _modes(generation, files)
    changed = [rel for rel in sorted(files) if _differs(target_root / rel, files[rel], modes[rel])]
    previous = _read_applied(target_root)
    removed = sorted(PurePosixPath(p) for p in previous
                     if PurePosixPath(p) not in files and (target_root / p).is_file())
    # What is installed already passed the checkers when it was installed: an unchanged
    # configuration (every boot, most syncs) is not checked again, which is slow.
    checked = (validate(generation, context, target_root, services)
               if changed or removed or check_only else [])
    touched = services_touched([*changed, *removed], services)
    result = ApplyResult(generation=number, changed=[p.as_posix() for p in changed],
                         removed=[p.as_posix() for p in removed],
                         services=[s.unit for s in touched], checked=checked, applied=not check_only)
    return result, files, modes


def _recover(layout: Layout, services: Sequence[Service],
             manager: ServiceManager | None) -> tuple[str, set[str]]:
    """Finish or undo what an apply that died left behind; returns what was done and the
    units it had not reloaded yet."""
    before = install.load(layout.apply_journal)
    journal = install.recover(layout.root, layout.apply_journal, APPLIED_FILE)
    if before is None:
        return "", set()
    if journal is None:
        return (f"an apply of generation {before.generation} had died before replacing any "
                "file: undone"), set()
    note = (f"an apply of generation {before.generation} had died "
            + ("while replacing files: finished" if before.state == install.INSTALLING
               else "before reloading its services"))
    pending = set(journal.units)
    if pending:
        note += f"; reloading {', '.join(sorted(pending))}"
    return note, pending


def _reload(services: Sequence[Service], manager: ServiceManager | None) -> list[str]:
    """Reload (or restart) each service and wait until it serves the new files; returns
    the units for which that was not seen, each with why."""
    unconfirmed: list[str] = []
    for service in services:
        if manager is None:
            logger.info("systemd is not running here: not reloading %s", service.unit)
            continue
        try:
            master = (manager.main_pid(service.unit)
                      if isinstance(manager, ProcessAware) and service.name == "nginx"
                      and service.action == "reload" else None)
            before = settle.nginx_workers(master) if master else set()
            if service.action == "restart":
                manager.restart(service.unit)
            else:
                manager.reload(service.unit)
            if master and not settle.wait_nginx(master, before, SETTLE_TIMEOUT_S):
                unconfirmed.append(f"{service.unit}: its old workers still serve {SETTLE_TIMEOUT_S} s "
                                   f"after the reload (see journalctl -u {service.unit})")
                continue
        except Exception as err:  # D-Bus errors are GLib's; each becomes the unit's reason
            unconfirmed.append(f"{service.unit}: {err}")
            continue
        logger.info("%s: %s", service.unit, "restarted" if service.action == "restart" else "reloaded")
    return unconfirmed
