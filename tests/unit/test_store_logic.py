"""The versioned store's pure decisions: what changed, which services reload, what can be selected."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from atlas_services.errors import AtlasError
from atlas_services.paths import Layout
from atlas_services.store import apply, bundle, config, modules, tree


def test_only_services_whose_files_changed_are_reloaded() -> None:
    changed = [PurePosixPath("etc/nginx/sites-enabled/atlas.conf"), PurePosixPath("etc/atlas/atlas.json")]
    assert [s.unit for s in apply.services_touched(changed, apply.SERVICES)] == ["nginx.service"]


def test_no_change_reloads_nothing() -> None:
    assert apply.services_touched([], apply.SERVICES) == []


def test_each_service_owns_its_directory_only() -> None:
    changed = [PurePosixPath("etc/postfix/main.cf"), PurePosixPath("etc/samba/smb.conf"),
               PurePosixPath("etc/postgresql/15/main/postgresql.conf"),
               PurePosixPath("etc/dovecot/dovecot.conf"), PurePosixPath("etc/nginxish/x")]
    assert [s.name for s in apply.services_touched(changed, apply.SERVICES)] == [
        "postfix", "dovecot", "postgresql", "samba"]


def test_a_checker_message_is_traced_to_the_file_on_the_box() -> None:
    staging = Path("/tmp/atlas-apply-x")
    output = (f'nginx: [emerg] open() "{staging}/run/nginx.pid" failed\n'
              f'unknown directive "bogus" in {staging}/etc/nginx/conf.d/a.conf:3\n')
    assert apply._file_named(output, staging, PurePosixPath("etc/nginx/nginx.conf")) == \
        "etc/nginx/conf.d/a.conf"
    assert apply._file_named("no path here", staging, PurePosixPath("etc/x")) == "etc/x"


def test_checker_noise_is_stripped_from_the_detail() -> None:
    line = '2026/11/25 20:00:38 [emerg] 7310#7310: unknown directive "bogus" in /x:1'
    assert apply._detail(line) == 'unknown directive "bogus" in /x:1'
    pg = '2026-11-25 19:56:39.821 UTC [2747] LOG:  invalid value for parameter "shared_buffers"'
    assert apply._detail(pg).startswith("LOG:  invalid value")


def test_formats_on_disk_prefer_what_was_recorded() -> None:
    selected = bundle.Formats(reads={"config": (1, 2)}, writes={"config": 2, "state": 1})
    assert modules.formats_on_disk({"config": 1}, selected) == {"config": 1, "state": 1}
    assert modules.formats_on_disk({}, None) == {}


def test_versions_sort_numerically() -> None:
    assert sorted(["0.10.0", "0.9.1", "0.9.0", "1.0.0~rc1"], key=modules.version_key) == [
        "0.9.0", "0.9.1", "0.10.0", "1.0.0~rc1"]


def test_tree_comparison_names_added_removed_and_modified(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        (root / "d").mkdir(parents=True)
        (root / "same").write_text("x")
    (old / "gone").write_text("1")
    (old / "d/edit").write_text("a")
    (new / "d/edit").write_text("b")
    (new / "d/new").write_text("n")
    (new / "empty").mkdir()
    assert tree.compare(old, new) == [tree.Change("d/edit", "modified"), tree.Change("d/new", "added"),
                                      tree.Change("empty", "added"), tree.Change("gone", "removed")]


def test_tree_comparison_sees_a_mode_change(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a/f").write_text("x")
    (tmp_path / "b/f").write_text("x")
    (tmp_path / "b/f").chmod(0o600)
    assert tree.compare(tmp_path / "a", tmp_path / "b") == [tree.Change("f", "modified")]


def test_unified_diff_of_a_changed_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a/f").write_text("one\ntwo\n")
    (tmp_path / "b/f").write_text("one\nthree\n")
    text = tree.unified(tmp_path / "a", tmp_path / "b", tree.Change("f", "modified"), "1", "2")
    assert "--- 1/f" in text and "-two" in text and "+three" in text


def test_generation_metadata_round_trips_and_rejects_wrong_types() -> None:
    gen = config.Generation(number=3, message="m", time="t", who="root", parent=2, id="x", rollback_of=1)
    assert config.Generation.from_json(gen.to_json(), "meta") == gen
    with pytest.raises(AtlasError, match="wrong type"):
        config.Generation.from_json({**gen.to_json(), "number": "3"}, "meta")


def test_role_context_takes_the_identity_recorded_by_role_detection(tmp_path: Path) -> None:
    import json

    from atlas_services.settings import Settings
    role = {"role": "primary", "hostname": "shop1", "address": "10.77.0.10/24",
            "dataset": {"volume": {"identity": {"hostname": "shop1", "address": "10.77.0.10/24",
                                                "gateway": "10.77.0.1", "dns": ["10.77.0.1"],
                                                "interface": "en*"}}}}
    layout = Layout.under(tmp_path)
    layout.run_dir.mkdir(parents=True)
    layout.role_file.write_text(json.dumps(role))
    ctx = apply.role_context(Settings(), layout)
    assert (ctx["role"], ctx["hostname"], ctx["address"], ctx["prefix"]) == ("primary", "shop1",
                                                                             "10.77.0.10", 24)
    assert (ctx["gateway"], ctx["dns"], ctx["data_root"]) == ("10.77.0.1", ["10.77.0.1"],
                                                              str(layout.data_root))


def test_without_a_decided_role_the_context_is_standby(tmp_path: Path) -> None:
    from atlas_services.settings import Settings
    layout = Layout.under(tmp_path / "refused")
    layout.run_dir.mkdir(parents=True)
    layout.role_file.write_text('{"role": "refused", "reason": "foreign cluster"}')
    assert apply.role_context(Settings(), layout)["role"] == "standby"
    assert apply.role_context(Settings(), Layout.under(tmp_path / "none"))["role"] == "standby"
