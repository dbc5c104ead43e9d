"""The configuration store on real btrfs: generations, log, diff, show, rollback, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlas_services.errors import Refused
from atlas_services.paths import Layout
from atlas_services.store import subvol
from atlas_services.store.config import META_FILE, ConfigStore
from testkit.trees import atlas, box_root, default_tree, fingerprint


@pytest.fixture
def store(store_fs: Path, tmp_path: Path) -> ConfigStore:
    store = ConfigStore(store_fs / "config")
    store.init(default_tree(tmp_path / "default"))
    return store


def edit(store: ConfigStore, text: str) -> None:
    (store.work / "templates/etc/nginx/conf.d/site.conf.j2").write_text(text)


def test_init_makes_generation_one_from_the_default_tree(store: ConfigStore) -> None:
    assert store.generations() == [1]
    assert subvol.is_subvolume(store.root)
    assert (store.path(1) / "atlas.json").read_text() == '{"admin_email": "owner@example.com"}\n'
    assert store.info(1).message == "initial configuration from the image"


def test_init_twice_changes_nothing(store: ConfigStore, tmp_path: Path) -> None:
    before = fingerprint(store.root)
    assert store.init(tmp_path / "default") is None
    assert fingerprint(store.root) == before


def test_generations_are_read_only_snapshots(store: ConfigStore) -> None:
    assert subvol.is_read_only(store.path(1))
    with pytest.raises(OSError):
        (store.path(1) / "atlas.json").write_text("{}")


def test_commit_makes_the_next_generation_with_metadata(store: ConfigStore) -> None:
    edit(store, "# changed\n")
    gen = store.commit("change the site", who="alice")
    assert (gen.number, gen.parent, gen.who, gen.message) == (2, 1, "alice", "change the site")
    assert store.info(2) == gen
    assert (store.path(2) / "templates/etc/nginx/conf.d/site.conf.j2").read_text() == "# changed\n"
    assert json.loads((store.path(2) / META_FILE).read_text())["number"] == 2


def test_commit_without_changes_is_refused_and_changes_nothing(store: ConfigStore) -> None:
    before = fingerprint(store.root)
    with pytest.raises(Refused, match="nothing to commit"):
        store.commit("nothing")
    assert fingerprint(store.root) == before


def test_commit_of_invalid_settings_is_refused_and_changes_nothing(store: ConfigStore) -> None:
    (store.work / "atlas.json").write_text('{"verify_interval_s": "often"}\n')
    before = fingerprint(store.root)
    with pytest.raises(Refused, match="verify_interval_s must be int"):
        store.commit("bad settings")
    assert fingerprint(store.root) == before and store.generations() == [1]


def test_log_lists_newest_first(store: ConfigStore) -> None:
    for n in range(3):
        edit(store, f"# {n}\n")
        store.commit(f"change {n}")
    assert [g.number for g in store.log()] == [4, 3, 2, 1]
    assert [g.message for g in store.log(limit=2)] == ["change 2", "change 1"]


def test_diff_between_generations_and_against_the_work_tree(store: ConfigStore) -> None:
    edit(store, "# two\n")
    store.commit("two")
    (store.work / "new.txt").write_text("n\n")
    assert [(c.path, c.change) for c in store.diff(1, 2)] == [
        ("templates/etc/nginx/conf.d/site.conf.j2", "modified")]
    assert [(c.path, c.change) for c in store.diff(2, None)] == [("new.txt", "added")]


def test_unknown_generation_is_refused(store: ConfigStore) -> None:
    with pytest.raises(Refused, match="generation 7 does not exist"):
        store.path(7)
    before = fingerprint(store.root)
    with pytest.raises(Refused, match="generation 9 does not exist"):
        store.rollback(9)
    assert fingerprint(store.root) == before


def test_rollback_makes_a_new_generation_equal_to_the_old_one(store: ConfigStore) -> None:
    original = (store.work / "templates/etc/nginx/conf.d/site.conf.j2").read_text()
    edit(store, "# two\n")
    store.commit("two")
    gen = store.rollback(1)
    assert gen is not None and (gen.number, gen.rollback_of, gen.parent) == (3, 1, 2)
    assert store.diff(1, 3) == []
    assert store.generations() == [1, 2, 3]  # history is kept
    assert (store.work / "templates/etc/nginx/conf.d/site.conf.j2").read_text() == original
    assert store.uncommitted() == []


def test_rollback_to_what_is_already_newest_does_nothing(store: ConfigStore) -> None:
    before = fingerprint(store.root)
    assert store.rollback(1) is None
    assert fingerprint(store.root) == before


def test_rollback_refuses_to_drop_uncommitted_changes(store: ConfigStore) -> None:
    edit(store, "# two\n")
    store.commit("two")
    edit(store, "# unsaved\n")
    before = fingerprint(store.root)
    with pytest.raises(Refused, match="uncommitted"):
        store.rollback(1)
    assert fingerprint(store.root) == before
    assert store.rollback(1, discard=True) is not None


def test_store_not_on_btrfs_is_refused(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    with pytest.raises(Refused, match="not on btrfs"):
        store.init(default_tree(tmp_path / "default"))
    assert not (tmp_path / "config").exists()


def test_cli_round_trip(store_fs: Path, tmp_path: Path) -> None:
    layout, root = box_root(store_fs), str(store_fs)
    tree = default_tree(tmp_path / "default")
    assert atlas("--root", root, "config", "init", "--default-tree", str(tree)).returncode == 0
    (layout.config_store / "work/atlas.json").write_text('{"sync_interval_s": 60}\n')
    committed = atlas("--root", root, "config", "commit", "-m", "sync every minute", "--json")
    assert committed.returncode == 0, committed.stderr
    assert json.loads(committed.stdout)["number"] == 2
    log = json.loads(atlas("--root", root, "config", "log", "--json").stdout)
    assert [g["number"] for g in log] == [2, 1]
    diff = atlas("--root", root, "config", "diff", "1", "2")
    assert '+{"sync_interval_s": 60}' in diff.stdout
    show = json.loads(atlas("--root", root, "config", "show", "2", "--json").stdout)
    assert "atlas.json" in show["files"] and show["message"] == "sync every minute"
    assert "sync every minute" in atlas("--root", root, "config", "log").stdout
    assert atlas("--root", root, "config", "rollback", "1").returncode == 0
    assert atlas("--root", root, "config", "diff", "1", "3", "--json").stdout.count('"path"') == 0


def test_cli_refusals_are_one_line_with_exit_2(store_fs: Path, tmp_path: Path) -> None:
    box_root(store_fs)
    root = str(store_fs)
    atlas("--root", root, "config", "init", "--default-tree", str(default_tree(tmp_path / "d")))
    for args in (["show", "5"], ["rollback", "5"], ["commit", "-m", "empty"], ["diff", "0"]):
        result = atlas("--root", root, "config", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("atlas: ")


def test_init_on_a_non_btrfs_place_can_be_skipped_cleanly(tmp_path: Path) -> None:
    result = atlas("--root", str(tmp_path), "config", "init", "--skip-if-not-btrfs",
                   "--default-tree", str(default_tree(tmp_path / "d")))
    assert result.returncode == 0 and "not on btrfs" in result.stderr
    assert not Layout.under(tmp_path).config_store.exists()
