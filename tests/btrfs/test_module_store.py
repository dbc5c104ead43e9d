"""The module store on real btrfs: install, list, select, rollback, remove, and refusals."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from atlas_services.errors import Refused
from atlas_services.store import bundle, subvol
from atlas_services.store.modules import ModuleStore
from testkit.bundles import make_bundle
from testkit.repo import OTHER_KEY, TEST_PUB
from testkit.trees import atlas, box_root, fingerprint


@pytest.fixture
def store(store_fs: Path) -> ModuleStore:
    return ModuleStore(store_fs / "modules", formats_file=store_fs / "formats.json")


def install(store: ModuleStore, archive: Path) -> bundle.Manifest:
    return store.install(archive, None, TEST_PUB)


def test_install_makes_a_read_only_version_with_its_payload(store: ModuleStore, tmp_path: Path) -> None:
    manifest = install(store, make_bundle(tmp_path, "1.0.0"))
    path = store.path("demo", "1.0.0")
    assert manifest.version == "1.0.0" and store.versions("demo") == ["1.0.0"]
    assert subvol.is_read_only(path) and subvol.is_subvolume(store.root)
    assert (path / "payload/demo/__init__.py").read_text() == "VERSION = '1.0.0'\n"
    assert store.selected("demo") is None


def test_a_version_already_installed_is_refused_and_nothing_changes(store: ModuleStore,
                                                                    tmp_path: Path) -> None:
    archive = make_bundle(tmp_path, "1.0.0")
    install(store, archive)
    before = fingerprint(store.root)
    with pytest.raises(Refused, match="already installed"):
        install(store, archive)
    assert fingerprint(store.root) == before


def test_a_bundle_signed_by_a_stranger_is_refused_and_nothing_changes(store: ModuleStore,
                                                                      tmp_path: Path) -> None:
    install(store, make_bundle(tmp_path, "1.0.0"))
    before = fingerprint(store.root)
    with pytest.raises(Refused, match="bad signature"):
        install(store, make_bundle(tmp_path, "2.0.0", key=OTHER_KEY))
    assert fingerprint(store.root) == before


def test_select_switches_and_keeps_previous(store: ModuleStore, tmp_path: Path) -> None:
    install(store, make_bundle(tmp_path, "1.0.0"))
    install(store, make_bundle(tmp_path, "2.0.0"))
    assert store.select("demo", "1.0.0")
    assert store.select("demo", "2.0.0")
    assert (store.selected("demo"), store.previous("demo")) == ("2.0.0", "1.0.0")
    assert not store.select("demo", "2.0.0")  # already selected: nothing to do


def test_rollback_selects_the_previous_version_again(store: ModuleStore, tmp_path: Path) -> None:
    install(store, make_bundle(tmp_path, "1.0.0"))
    install(store, make_bundle(tmp_path, "2.0.0"))
    store.select("demo", "1.0.0")
    store.select("demo", "2.0.0")
    assert store.rollback("demo") == "1.0.0"
    assert (store.selected("demo"), store.previous("demo")) == ("1.0.0", "2.0.0")


def test_rollback_without_a_previous_version_is_refused(store: ModuleStore, tmp_path: Path) -> None:
    install(store, make_bundle(tmp_path, "1.0.0"))
    store.select("demo", "1.0.0")
    with pytest.raises(Refused, match="no previous version"):
        store.rollback("demo")


def test_removing_the_selected_version_is_refused(store: ModuleStore, tmp_path: Path) -> None:
    install(store, make_bundle(tmp_path, "1.0.0"))
    store.select("demo", "1.0.0")
    before = fingerprint(store.root)
    with pytest.raises(Refused, match="is the selected version"):
        store.remove("demo", "1.0.0")
    assert fingerprint(store.root) == before


def test_remove_deletes_another_version(store: ModuleStore, tmp_path: Path) -> None:
    install(store, make_bundle(tmp_path, "1.0.0"))
    install(store, make_bundle(tmp_path, "2.0.0"))
    store.select("demo", "1.0.0")
    store.select("demo", "2.0.0")
    store.remove("demo", "1.0.0")
    assert store.versions("demo") == ["2.0.0"] and store.previous("demo") is None


def test_selecting_an_unknown_version_is_refused(store: ModuleStore, tmp_path: Path) -> None:
    install(store, make_bundle(tmp_path, "1.0.0"))
    with pytest.raises(Refused, match=r"demo 9\.9 is not installed"):
        store.select("demo", "9.9")


def test_a_version_that_cannot_read_the_formats_on_disk_is_refused(store: ModuleStore,
                                                                   tmp_path: Path) -> None:
    install(store, make_bundle(tmp_path, "1.0.0", reads=(1,), writes=1))
    install(store, make_bundle(tmp_path, "2.0.0", reads=(1, 2), writes=2))
    store.select("demo", "1.0.0")
    store.select("demo", "2.0.0")  # 2.0.0 reads format 1 and will write 2
    before = fingerprint(store.root)
    with pytest.raises(Refused, match="cannot read the format"):
        store.rollback("demo")  # 1.0.0 cannot read the state 2.0.0 writes
    assert fingerprint(store.root) == before
    store.formats_file.write_text(json.dumps({"state": 1}))  # nothing was converted yet
    assert store.rollback("demo") == "1.0.0"


def test_a_store_not_on_btrfs_is_refused(tmp_path: Path) -> None:
    store = ModuleStore(tmp_path / "modules", formats_file=tmp_path / "formats.json")
    with pytest.raises(Refused, match="not on btrfs"):
        install(store, make_bundle(tmp_path, "1.0.0"))
    assert not store.root.exists()


def _reader(link: Path, stop_at: float, result: multiprocessing.Queue[int]) -> None:
    missing = reads = 0
    while time.monotonic() < stop_at:
        try:
            link.readlink()
            (link / "payload/demo/__init__.py").stat()
        except OSError:
            missing += 1
        reads += 1
    result.put(missing if reads else -1)


def test_readers_never_see_a_missing_selection_while_select_runs(store: ModuleStore, tmp_path: Path) -> None:
    install(store, make_bundle(tmp_path, "1.0.0"))
    install(store, make_bundle(tmp_path, "2.0.0"))
    store.select("demo", "1.0.0")
    results: multiprocessing.Queue[int] = multiprocessing.Queue()
    stop_at = time.monotonic() + 3
    readers = [multiprocessing.Process(target=_reader, args=(store.root / "demo/selected", stop_at, results))
               for _ in range(2)]
    for reader in readers:
        reader.start()
    switches = 0
    try:
        while time.monotonic() < stop_at:
            store.select("demo", "2.0.0" if switches % 2 == 0 else "1.0.0")
            switches += 1
    finally:
        for reader in readers:
            reader.join(timeout=10)
    assert switches > 10
    assert [results.get(timeout=5) for _ in readers] == [0, 0]


def test_cli_install_list_select_and_refusals(store_fs: Path, tmp_path: Path) -> None:
    box_root(store_fs)
    common = ["--root", str(store_fs), "module"]
    archive = make_bundle(tmp_path, "1.0.0")
    assert atlas(*common, "install", str(archive), "--select").returncode == 0
    listed = json.loads(atlas(*common, "list", "--json").stdout)
    assert [(r["module"], r["version"], r["selected"]) for r in listed] == [("demo", "1.0.0", True)]
    again = atlas(*common, "install", str(archive))
    assert again.returncode == 2 and again.stderr == "atlas: demo 1.0.0 is already installed\n"
    removed = atlas(*common, "remove", "demo", "1.0.0")
    assert removed.returncode == 2 and "selected version" in removed.stderr
    assert "selected" in atlas(*common, "list").stdout
