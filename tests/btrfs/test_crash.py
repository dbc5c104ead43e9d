"""kill -9 during commit, install and select: the next command sees a consistent store."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atlas_services.store import subvol
from atlas_services.store.config import ConfigStore
from atlas_services.store.modules import ModuleStore
from testkit.bundles import make_bundle
from testkit.repo import REPO, TEST_PUB
from testkit.trees import atlas, box_root, default_tree


def killed_at(point: str, *args: str) -> None:
    result = atlas(*args, env={"ATLAS_CRASHPOINT": point})
    assert result.returncode == -signal.SIGKILL, (point, result.stderr)


def assert_consistent(store: ConfigStore) -> None:
    """Every visible generation is a complete, read-only snapshot with its metadata."""
    for gen in store.generations():
        assert subvol.is_read_only(store.path(gen))
        assert store.info(gen).number == gen
        assert (store.path(gen) / "atlas.json").exists()


@pytest.mark.parametrize("point", ["commit-snapshot", "commit-meta", "commit-readonly", "commit-rename"])
def test_kill_during_commit_leaves_old_or_new_history(store_fs: Path, tmp_path: Path, point: str) -> None:
    store = ConfigStore(box_root(store_fs).config_store)
    store.init(default_tree(tmp_path / "default"))
    (store.work / "note.txt").write_text("two\n")
    killed_at(point, "--root", str(store_fs), "config", "commit", "-m", "two")
    assert_consistent(store)
    expected = [1, 2] if point == "commit-rename" else [1]
    assert store.generations() == expected
    # The next command works and cleans up what the dead one left.
    (store.work / "note.txt").write_text("three\n")
    result = atlas("--root", str(store_fs), "config", "commit", "-m", "three", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["number"] == expected[-1] + 1
    assert [p.name for p in store.generations_dir.iterdir() if p.name.startswith(".")] == []
    assert_consistent(store)


def test_random_kills_during_commits_of_a_large_tree_never_show_half_a_generation(
        store_fs: Path, tmp_path: Path) -> None:
    store = ConfigStore(box_root(store_fs).config_store)
    store.init(default_tree(tmp_path / "default"))
    for n in range(2000):
        (store.work / f"f{n // 100}").mkdir(exist_ok=True)
        (store.work / f"f{n // 100}/{n}.txt").write_text(f"{n}\n")
    rng = random.Random(5)
    script = ("import sys; from pathlib import Path; from atlas_services.store.config import ConfigStore\n"
              "s = ConfigStore(Path(sys.argv[1]))\n"
              "for i in range(1000):\n"
              "    (s.work / 'note.txt').write_text(str(i)); s.commit(f'c{i}')\n")
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", script, str(store.root)], cwd=REPO)
        time.sleep(rng.uniform(0.2, 0.8))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert_consistent(store)
        for gen in store.generations()[1:]:
            # a generation is the whole tree or is not there at all
            assert sum(1 for _ in (store.path(gen)).rglob("*.txt")) == 2001
    (store.work / "note.txt").write_text("after")
    assert atlas("--root", str(store_fs), "config", "commit", "-m", "after").returncode == 0


@pytest.mark.parametrize("point", ["install-created", "install-extracted", "install-readonly"])
def test_kill_during_install_leaves_no_half_version(store_fs: Path, tmp_path: Path, point: str) -> None:
    layout = box_root(store_fs)
    store = ModuleStore(layout.module_store, layout.formats_file)
    archive = make_bundle(tmp_path, "1.0.0", files=50)
    common = ["--root", str(store_fs), "module"]
    killed_at(point, *common, "install", str(archive))
    assert store.versions("demo") == []
    assert json.loads(atlas(*common, "list", "--json").stdout) == []
    result = atlas(*common, "install", str(archive), "--select")
    assert result.returncode == 0, result.stderr
    assert store.versions("demo") == ["1.0.0"] and store.selected("demo") == "1.0.0"
    assert sorted(p.name for p in (store.root / "demo").iterdir()) == ["1.0.0", "selected"]


def test_kill_during_select_keeps_a_valid_selection(store_fs: Path, tmp_path: Path) -> None:
    layout = box_root(store_fs)
    store = ModuleStore(layout.module_store, layout.formats_file)
    store.install(make_bundle(tmp_path / "a", "1.0.0", files=50), None, TEST_PUB)
    store.install(make_bundle(tmp_path / "b", "2.0.0", files=50), None, TEST_PUB)
    store.select("demo", "1.0.0")
    common = ["--root", str(store_fs), "module"]
    killed_at("select-previous", *common, "select", "demo", "2.0.0")
    assert store.selected("demo") == "1.0.0"
    assert atlas(*common, "select", "demo", "2.0.0").returncode == 0
    assert (store.selected("demo"), store.previous("demo")) == ("2.0.0", "1.0.0")


def test_kill_during_init_leaves_a_store_the_next_init_completes(store_fs: Path, tmp_path: Path) -> None:
    root = box_root(store_fs).config_store
    tree = default_tree(tmp_path / "default")
    killed_at("init-work", "--root", str(store_fs), "config", "init", "--default-tree", str(tree))
    store = ConfigStore(root)
    assert store.generations() == [] and not store.work.exists()
    assert atlas("--root", str(store_fs), "config", "init", "--default-tree", str(tree)).returncode == 0
    assert store.generations() == [1] and (store.work / "atlas.json").exists()
    assert sorted(p.name for p in root.iterdir()) == [".lock", "generations", "work"]
