"""`atlas config apply` as one set: killed at each step, the next apply (or the boot's replay)
ends in one whole generation; a failure midway puts every file back; one apply at a time;
applied.json cannot make apply remove a file it never wrote; and apply returns only once a
reloaded nginx serves the new configuration."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from atlas_services import fsutil, proc
from atlas_services.errors import AtlasError
from atlas_services.paths import Layout
from atlas_services.render import standard_context
from atlas_services.store import apply, install
from atlas_services.store.config import ConfigStore
from testkit.net import free_port
from testkit.repo import REPO
from testkit.trees import default_tree, fingerprint


class RecordingManager:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def reload(self, unit: str) -> None:
        self.calls.append(("reload", unit))

    def restart(self, unit: str) -> None:
        self.calls.append(("restart", unit))


def context(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "run").mkdir(exist_ok=True)
    return standard_context(role="primary", hostname="shop1", data_root="/srv/atlas", settings={},
                            listen_address="127.0.0.1", run_root=str(tmp_path / "run"))


@pytest.fixture
def store(store_fs: Path, tmp_path: Path) -> ConfigStore:
    store = ConfigStore(store_fs / "config")
    tree = default_tree(tmp_path / "default")
    (tree / "templates/etc/nginx/conf.d/old.conf").write_text("# only in generation 1\n")
    for n in range(6):
        (tree / f"templates/etc/nginx/conf.d/part{n}.conf").write_text(f"# part {n} one\n")
    store.init(tree)
    return store


def second_generation(store: ConfigStore) -> int:
    """Generation 2: every file but nginx.conf changed, one removed, one added."""
    (store.work / "templates/etc/nginx/conf.d/old.conf").unlink()
    (store.work / "templates/etc/nginx/conf.d/new.conf").write_text("# new in generation 2\n")
    for n in range(6):
        (store.work / f"templates/etc/nginx/conf.d/part{n}.conf").write_text(f"# part {n} two\n")
    (store.work / "atlas.json").write_text('{"admin_email": "two@example.com"}\n')
    return store.commit("two").number


def assert_whole(store: ConfigStore, gen: int, target: Path, tmp_path: Path) -> None:
    """/etc under target is exactly generation `gen`, recorded, with nothing left over."""
    files = apply._render(store.path(gen), context(tmp_path), str(target))
    on_disk = {PurePosixPath(p.relative_to(target).as_posix()): p.read_bytes()
               for p in (target / "etc").rglob("*") if p.is_file() and p.name != "applied.json"}
    assert on_disk == files
    record = json.loads((target / apply.APPLIED_FILE).read_text())
    assert record["generation"] == gen
    assert record["files"] == {p.as_posix(): hashlib.sha256(d).hexdigest() for p, d in files.items()}
    assert not Layout.under(target).apply_journal.exists()


CRASH_SCRIPT = """
import sys
from pathlib import Path
from atlas_services.paths import Layout
from atlas_services.render import standard_context
from atlas_services.store import apply
from atlas_services.store.config import ConfigStore

class Manager:
    def reload(self, unit): print("reload", unit, flush=True)
    def restart(self, unit): print("restart", unit, flush=True)

context = standard_context(role="primary", hostname="shop1", data_root="/srv/atlas", settings={},
                           listen_address="127.0.0.1", run_root=sys.argv[3])
apply.apply(ConfigStore(Path(sys.argv[1])), layout=Layout.under(Path(sys.argv[2])),
            context=context, manager=Manager())
"""


def apply_in_child(store: ConfigStore, target: Path, tmp_path: Path,
                   crashpoint: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(store.root), str(target),
                           str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "ATLAS_CRASHPOINT": crashpoint}, check=False)


POINTS = ["apply-journal", "apply-committed", "apply-midway", "apply-recorded", "apply-installed"]


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_each_step_the_next_apply_ends_in_one_whole_generation(
        store: ConfigStore, tmp_path: Path, point: str) -> None:
    target = tmp_path / "root"
    layout = Layout.under(target)
    apply.apply(store, layout=layout, context=context(tmp_path), manager=RecordingManager())
    assert_whole(store, 1, target, tmp_path)
    old = fingerprint(target / "etc")
    two = second_generation(store)

    child = apply_in_child(store, target, tmp_path, point)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "reload" not in child.stdout  # it died before reloading anything
    if point in ("apply-journal", "apply-committed"):
        # Before the first rename: every installed file is still generation 1's.
        assert fingerprint(target / "etc", skip=(install.NEW_SUFFIX, install.OLD_SUFFIX)) == old
    assert layout.apply_journal.exists()

    manager = RecordingManager()
    result = apply.apply(store, layout=layout, context=context(tmp_path), manager=manager)
    assert_whole(store, two, target, tmp_path)
    assert fingerprint(target / "etc") != old
    # Whatever the dead apply replaced, nginx is told: nothing stays on the old files.
    assert manager.calls == [("reload", "nginx.service")]
    assert result.recovered.startswith("an apply of generation 2 had died")
    leftovers = [p for p in target.rglob("*") if p.name.endswith((install.NEW_SUFFIX, install.OLD_SUFFIX))]
    assert leftovers == []


@pytest.mark.parametrize("point", ["apply-committed", "apply-midway", "apply-recorded"])
def test_the_boot_time_replay_alone_finishes_a_dead_apply(
        store: ConfigStore, tmp_path: Path, point: str) -> None:
    target = tmp_path / "root"
    layout = Layout.under(target)
    apply.apply(store, layout=layout, context=context(tmp_path), manager=RecordingManager())
    two = second_generation(store)
    assert apply_in_child(store, target, tmp_path, point).returncode == -signal.SIGKILL
    journal = install.recover(layout.root, layout.apply_journal, apply.APPLIED_FILE)
    assert journal is not None and journal.units == ("nginx.service",)
    install.finish(layout.apply_journal)
    assert_whole(store, two, target, tmp_path)


def test_a_failure_midway_puts_every_file_back(store: ConfigStore, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "root"
    layout = Layout.under(target)
    apply.apply(store, layout=layout, context=context(tmp_path), manager=RecordingManager())
    before = fingerprint(target / "etc")
    second_generation(store)
    renames = 0
    real_replace = Path.replace

    def failing_replace(self: Path, other: Any) -> Path:
        nonlocal renames
        if self.name.endswith(install.NEW_SUFFIX):
            renames += 1
            if renames == 4:  # three files of generation 2 are in place by now
                raise OSError(30, "Read-only file system")
        return real_replace(self, other)

    monkeypatch.setattr(Path, "replace", failing_replace)
    manager = RecordingManager()
    with pytest.raises(AtlasError, match="every file was put back as it was"):
        apply.apply(store, layout=layout, context=context(tmp_path), manager=manager)
    monkeypatch.undo()
    assert fingerprint(target / "etc") == before
    assert manager.calls == [] and not layout.apply_journal.exists()
    assert_whole(store, 1, target, tmp_path)


def test_a_file_that_cannot_be_prepared_changes_nothing(store: ConfigStore, tmp_path: Path) -> None:
    target = tmp_path / "root"
    layout = Layout.under(target)
    apply.apply(store, layout=layout, context=context(tmp_path), manager=RecordingManager())
    second_generation(store)
    before = fingerprint(target / "etc")
    locked = target / "etc/nginx/conf.d/part3.conf"
    proc.run(["chattr", "+i", locked])  # immutable: cannot be linked, renamed over, removed
    try:
        with pytest.raises(OSError):
            apply.apply(store, layout=layout, context=context(tmp_path), manager=RecordingManager())
    finally:
        proc.run(["chattr", "-i", locked])
    assert fingerprint(target / "etc") == before and not layout.apply_journal.exists()


def test_applied_json_cannot_make_apply_remove_a_file_it_never_wrote(
        store: ConfigStore, tmp_path: Path) -> None:
    target = tmp_path / "root"
    layout = Layout.under(target)
    apply.apply(store, layout=layout, context=context(tmp_path), manager=RecordingManager())
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (target / "var/lib").mkdir(parents=True, exist_ok=True)
    (target / "var/lib/precious").write_text("keep me too\n")
    record = json.loads((target / apply.APPLIED_FILE).read_text())
    record["files"] |= {str(victim): "0" * 64, "../victim": "0" * 64,
                        "etc/../var/lib/precious": "0" * 64, "var/lib/precious": "0" * 64}
    (target / apply.APPLIED_FILE).write_text(json.dumps(record))
    result = apply.apply(store, layout=layout, context=context(tmp_path), manager=RecordingManager())
    assert result.removed == []
    assert victim.read_text() == "keep me\n"
    assert (target / "var/lib/precious").read_text() == "keep me too\n"


def test_two_applies_never_run_at_once(store: ConfigStore, tmp_path: Path) -> None:
    target = tmp_path / "root"
    layout = Layout.under(target)
    layout.state_dir.mkdir(parents=True)
    (tmp_path / "run").mkdir()
    second_generation(store)
    with fsutil.locked(layout.apply_lock):  # another apply (a sync's, say) holds it
        child = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(store.root), str(target),
                                  str(tmp_path / "run")], cwd=REPO, text=True)
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                child.wait(3)
            assert not (target / "etc").exists()  # it waits before rendering anything
        except BaseException:
            child.kill()
            child.wait()
            raise
    assert child.wait(60) == 0
    assert_whole(store, 2, target, tmp_path)


# ---------------------------------------------------------------- a reload that takes effect


class NginxManager:
    """What systemd's ExecReload does for nginx (SIGHUP to the master), with its main pid."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file

    def main_pid(self, unit: str) -> int | None:
        return int(self.pid_file.read_text())

    def reload(self, unit: str) -> None:
        os.kill(int(self.pid_file.read_text()), signal.SIGHUP)

    def restart(self, unit: str) -> None:
        raise AssertionError("nginx is reloaded, not restarted")


@pytest.fixture
def nginx_store(store_fs: Path, tmp_path: Path) -> Iterator[tuple[ConfigStore, int]]:
    port = free_port()
    tree = tmp_path / "nginx-tree"
    (tree / "templates/etc/nginx/conf.d").mkdir(parents=True)
    (tree / "atlas.json").write_text("{}\n")
    (tree / "templates/etc/nginx/nginx.conf.j2").write_text(
        "error_log stderr;\npid {{ run_root }}/nginx.pid;\nworker_processes 2;\nevents {}\n"
        "http {\n    access_log off;\n    include {{ config_root }}/etc/nginx/conf.d/*.conf;\n}\n")
    (tree / "templates/etc/nginx/conf.d/site.conf").write_text(
        f"server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"round 0\\n\"; }} }}\n")
    store = ConfigStore(store_fs / "config")
    store.init(tree)
    yield store, port


def test_apply_returns_only_once_nginx_serves_the_new_configuration(
        nginx_store: tuple[ConfigStore, int], tmp_path: Path) -> None:
    store, port = nginx_store
    target = tmp_path / "root"
    layout = Layout.under(target)
    run = tmp_path / "run"
    apply.apply(store, layout=layout, context=context(tmp_path), manager=RecordingManager())
    nginx = proc.spawn(["nginx", "-c", target / "etc/nginx/nginx.conf", "-g", "daemon off;"],
                       log_file=tmp_path / "nginx.log", die_with_parent=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while not (run / "nginx.pid").exists() or _get(url) != "round 0\n":
            assert time.monotonic() < deadline, (tmp_path / "nginx.log").read_text()
            time.sleep(0.1)
        manager = NginxManager(run / "nginx.pid")
        site = store.work / "templates/etc/nginx/conf.d/site.conf"
        for n in range(1, 9):
            site.write_text(site.read_text().replace(f"round {n - 1}", f"round {n}"))
            store.commit(f"round {n}")
            result = apply.apply(store, layout=layout, context=context(tmp_path), manager=manager)
            assert result.services == ["nginx.service"] and result.unconfirmed == []
            # The very first request after apply returns: the new configuration answers.
            assert _get(url) == f"round {n}\n"
        # A configuration nginx cannot take (a port already in use): apply says so.
        blocker = tmp_path / "blocker.conf"
        blocker.write_text(f"pid {run}/blocker.pid;\nevents {{}}\n"
                           f"http {{ server {{ listen 127.0.0.1:{port + 1}; }} }}\n")
        site.write_text(site.read_text() + f"server {{ listen 127.0.0.1:{port + 1}; }}\n")
        store.commit("a port nginx cannot bind")
        other = proc.spawn(["nginx", "-c", blocker, "-g", "daemon off;"],
                           log_file=tmp_path / "blocker.log", die_with_parent=True)
        try:
            time.sleep(1)
            original = apply.SETTLE_TIMEOUT_S
            apply.SETTLE_TIMEOUT_S = 3
            try:
                result = apply.apply(store, layout=layout, context=context(tmp_path), manager=manager)
            finally:
                apply.SETTLE_TIMEOUT_S = original
            assert len(result.unconfirmed) == 1 and "old workers still serve" in result.unconfirmed[0]
        finally:
            proc.terminate(other)
    finally:
        proc.terminate(nginx)


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""
