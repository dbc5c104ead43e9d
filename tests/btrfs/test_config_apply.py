"""`atlas config apply` on real btrfs with the services' real checkers: install, reload what
changed, and refuse (changing nothing) what a checker rejects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from atlas_services.errors import Refused
from atlas_services.paths import Layout
from atlas_services.render import standard_context
from atlas_services.store import apply
from atlas_services.store.config import ConfigStore
from testkit.trees import atlas, box_root, default_tree, fingerprint


class RecordingManager:
    """Stands in for systemd's D-Bus manager (this host has no systemd): records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def reload(self, unit: str) -> None:
        self.calls.append(("reload", unit))

    def restart(self, unit: str) -> None:
        self.calls.append(("restart", unit))


@pytest.fixture
def store(store_fs: Path, tmp_path: Path) -> ConfigStore:
    store = ConfigStore(store_fs / "config")
    store.init(default_tree(tmp_path / "default"))
    return store


@pytest.fixture
def target(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


def context(tmp_path: Path, role: str = "primary") -> dict[str, Any]:
    (tmp_path / "run").mkdir(exist_ok=True)
    return standard_context(role=role, hostname="shop1", data_root="/srv/atlas", settings={},
                            listen_address="127.0.0.1", run_root=str(tmp_path / "run"))


def site(store: ConfigStore) -> Path:
    return store.work / "templates/etc/nginx/conf.d/site.conf.j2"


def test_apply_installs_the_rendered_files_and_reloads_their_service(
        store: ConfigStore, target: Path, tmp_path: Path) -> None:
    manager = RecordingManager()
    result = apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=manager)
    conf = (target / "etc/nginx/conf.d/site.conf").read_text()
    assert "server_name shop1;  # role primary" in conf
    assert f"include {target}/etc/nginx/conf.d/*.conf;" in (target / "etc/nginx/nginx.conf").read_text()
    assert (target / "etc/atlas/atlas.json").read_text() == '{"admin_email": "owner@example.com"}\n'
    assert result.checked == ["nginx"]
    assert manager.calls == [("reload", "nginx.service")]


def test_a_second_apply_changes_and_reloads_nothing(store: ConfigStore, target: Path, tmp_path: Path) -> None:
    apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=RecordingManager())
    before = fingerprint(target)
    manager = RecordingManager()
    result = apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=manager)
    assert result.changed == [] and manager.calls == []
    assert fingerprint(target) == before
    # Installed files passed the checkers when installed; unchanged, they are not rerun.
    assert result.checked == []


def test_only_the_service_whose_output_changed_is_reloaded(
        store: ConfigStore, target: Path, tmp_path: Path) -> None:
    apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=RecordingManager())
    (store.work / "atlas.json").write_text('{"admin_email": "boss@example.com"}\n')
    store.commit("new admin address")
    manager = RecordingManager()
    result = apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=manager)
    assert result.changed == ["etc/atlas/atlas.json"]
    assert manager.calls == []  # no business service reads atlas.json


def test_a_file_dropped_from_the_templates_is_removed(store: ConfigStore,
                                                      target: Path, tmp_path: Path) -> None:
    extra = store.work / "templates/etc/nginx/conf.d/extra.conf"
    extra.write_text("# extra\n")
    store.commit("extra")
    apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=RecordingManager())
    extra.unlink()
    store.commit("no extra")
    manager = RecordingManager()
    result = apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=manager)
    assert result.removed == ["etc/nginx/conf.d/extra.conf"]
    assert not (target / "etc/nginx/conf.d/extra.conf").exists()
    assert manager.calls == [("reload", "nginx.service")]


def test_rendering_for_another_role_changes_the_output(store: ConfigStore,
                                                       target: Path, tmp_path: Path) -> None:
    apply.apply(store, layout=Layout.under(target), context=context(tmp_path, "secondary"),
                manager=RecordingManager())
    assert "# role secondary" in (target / "etc/nginx/conf.d/site.conf").read_text()


def test_check_only_changes_nothing(store: ConfigStore, target: Path, tmp_path: Path) -> None:
    result = apply.apply(store, layout=Layout.under(target), context=context(tmp_path), check_only=True)
    assert not result.applied and "etc/nginx/nginx.conf" in result.changed
    assert list(target.iterdir()) == []


def test_a_missing_variable_is_refused_and_changes_nothing(
        store: ConfigStore, target: Path, tmp_path: Path) -> None:
    apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=RecordingManager())
    site(store).write_text("# {{ no_such_variable }}\n")
    store.commit("typo")
    before = fingerprint(target)
    with pytest.raises(Refused, match="no_such_variable"):
        apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=RecordingManager())
    assert fingerprint(target) == before


def test_an_older_generation_can_be_applied(store: ConfigStore, target: Path, tmp_path: Path) -> None:
    site(store).write_text("# {{ role }} two\n")
    store.commit("two")
    apply.apply(store, 1, layout=Layout.under(target), context=context(tmp_path), manager=RecordingManager())
    assert "server_name" in (target / "etc/nginx/conf.d/site.conf").read_text()


# ---------------------------------------------------------------- each checker refuses


def host_config(service_dir: str) -> Path:
    path = Path("/etc") / service_dir
    if not path.is_dir():
        pytest.skip(f"{path} is missing: ci/setup installs the service packages")
    return path


def postgres_dir() -> str:
    clusters = sorted(Path("/etc/postgresql").glob("*/main/postgresql.conf"))
    if not clusters:
        pytest.skip("no PostgreSQL cluster configuration: ci/setup installs postgresql")
    return clusters[-1].parent.relative_to("/etc").as_posix()


def _bad_cases() -> list[tuple[str, str, str, str]]:
    # service dir under /etc, template file, broken line appended, checker expected
    return [
        ("nginx", "nginx/nginx.conf", "bogus_directive on;\n", "nginx"),
        ("postfix", "postfix/main.cf", "this line has no equals sign\n", "postconf"),
        ("dovecot", "dovecot/dovecot.conf", "no_such_setting = 1\n", "doveconf"),
        ("samba", "samba/smb.conf", "[global]\n   no such parameter = 1\n", "testparm"),
        ("postgresql", "PG/postgresql.conf", "shared_buffers = lots\n", "postgres"),
    ]


@pytest.mark.parametrize("service,file,broken,checker", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_each_checker_refuses_a_broken_file_and_nothing_changes(
        store: ConfigStore, target: Path, tmp_path: Path,
        service: str, file: str, broken: str, checker: str) -> None:
    if service == "postgresql":
        file = file.replace("PG", postgres_dir())
    service_dir = file.split("/")[0]
    source = host_config("/".join(file.split("/")[:-1]))
    # The box's /etc as the packages left it: the checker must find the unchanged files too.
    shutil.copytree(Path("/etc") / service_dir, target / "etc" / service_dir, symlinks=True)
    template = store.work / "templates/etc" / file
    template.parent.mkdir(parents=True, exist_ok=True)
    good = (source / Path(file).name).read_text()
    template.write_text(good)
    template.with_name(template.name + ".j2").unlink(missing_ok=True)
    store.commit(f"{service} as packaged")
    apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=RecordingManager())

    template.write_text(good + broken)
    store.commit(f"broken {service}")
    before = fingerprint(target)
    manager = RecordingManager()
    with pytest.raises(apply.ValidationFailed) as refused:
        apply.apply(store, layout=Layout.under(target), context=context(tmp_path), manager=manager)
    assert refused.value.checker == checker
    assert refused.value.file == f"etc/{file}"
    assert f"etc/{file}" in str(refused.value) and checker in str(refused.value)
    assert fingerprint(target) == before and manager.calls == []


def test_cli_apply_checks_then_refuses_a_broken_config_in_one_line(store_fs: Path, tmp_path: Path) -> None:
    store = ConfigStore(box_root(store_fs).config_store)
    store.init(default_tree(tmp_path / "default"))
    # The CLI renders for the role below its root (standby without run/atlas/role.json).
    (store.work / "templates/etc/nginx/nginx.conf.j2").write_text(
        "error_log stderr;\npid {{ config_root }}/nginx.pid;\nevents {}\nhttp {}\n")
    store.commit("pid inside the rendered tree")
    target = store_fs / "etc"
    common = ["--root", str(store_fs), "config", "apply"]
    checked = atlas(*common, "--check", "--json")
    assert checked.returncode == 0, checked.stderr
    assert "etc/nginx/nginx.conf" in json.loads(checked.stdout)["changed"]
    assert not target.exists()
    (store.work / "templates/etc/nginx/nginx.conf.j2").write_text("events {}\nnot_a_directive;\n")
    store.commit("broken")
    refused = atlas(*common)
    assert refused.returncode == 1
    assert refused.stderr.startswith("atlas: nginx refused etc/nginx/nginx.conf: ")
    assert refused.stderr.count("\n") == 1
    assert not target.exists()
