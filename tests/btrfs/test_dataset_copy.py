"""Config generations copied to the data set (btrfs send/receive) and adopted from it at boot."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas_services.store import subvol
from atlas_services.store.config import (
    ConfigStore,
    adopt_newer_from_dataset,
    copy_generation_to_dataset,
    copy_missing_to_dataset,
    dataset_config_dir,
)
from testkit.trees import default_tree


@pytest.fixture
def store(store_fs: Path, tmp_path: Path) -> ConfigStore:
    store = ConfigStore(store_fs / "config")
    store.init(default_tree(tmp_path / "default"))
    return store


def commit(store: ConfigStore, text: str) -> int:
    (store.work / "note.txt").write_text(text)
    return store.commit(text).number


def test_each_generation_lands_on_the_data_set_read_only(store: ConfigStore, dataset_fs: Path) -> None:
    commit(store, "two")
    for gen in store.generations():
        assert copy_generation_to_dataset(store, dataset_fs, gen)
    copied = dataset_config_dir(dataset_fs) / "2"
    assert subvol.is_read_only(copied)
    assert (copied / "note.txt").read_text() == "two"


def test_copying_again_is_a_no_op(store: ConfigStore, dataset_fs: Path) -> None:
    assert copy_generation_to_dataset(store, dataset_fs, 1)
    assert not copy_generation_to_dataset(store, dataset_fs, 1)


def test_an_interrupted_copy_is_invisible_and_replaced(store: ConfigStore, dataset_fs: Path) -> None:
    # What a receive killed half way leaves: a writable subvolume under the final name.
    dest = dataset_config_dir(dataset_fs)
    dest.mkdir(parents=True)
    subvol.create(dest / "1")
    (dest / "1/partial").write_text("x")
    assert copy_generation_to_dataset(store, dataset_fs, 1)
    assert not (dest / "1/partial").exists() and subvol.is_read_only(dest / "1")


def test_boot_adopts_newer_generations_from_the_data_set(
        store: ConfigStore, dataset_fs: Path, store_fs: Path) -> None:
    # The primary's history reached gen 3 on the data set; this OS disk only knows gen 1.
    other = ConfigStore(store_fs / "other")
    other.init(store.path(1))
    for n in store.generations():
        copy_generation_to_dataset(store, dataset_fs, n)
    commit(store, "two")
    commit(store, "three")
    copy_generation_to_dataset(store, dataset_fs, 2)
    copy_generation_to_dataset(store, dataset_fs, 3)
    assert adopt_newer_from_dataset(other, dataset_fs) == 3
    assert other.generations()[-1] == 3
    assert other.info(3) == store.info(3)
    assert (other.work / "note.txt").read_text() == "three"
    assert adopt_newer_from_dataset(other, dataset_fs) is None  # idempotent


def test_nothing_newer_on_the_data_set_changes_nothing(store: ConfigStore, dataset_fs: Path) -> None:
    copy_generation_to_dataset(store, dataset_fs, 1)
    assert adopt_newer_from_dataset(store, dataset_fs) is None
    assert adopt_newer_from_dataset(store, dataset_fs / "nowhere") is None


def test_unsaved_edits_are_kept_aside_when_a_newer_generation_is_adopted(
        store: ConfigStore, dataset_fs: Path, store_fs: Path) -> None:
    other = ConfigStore(store_fs / "other")
    other.init(store.path(1))
    (other.work / "local.txt").write_text("unsaved")
    copy_generation_to_dataset(store, dataset_fs, 1)
    commit(store, "two")
    copy_generation_to_dataset(store, dataset_fs, 2)
    assert adopt_newer_from_dataset(other, dataset_fs) == 2
    assert (other.root / "work.unsaved-before-2/local.txt").read_text() == "unsaved"
    assert not (other.work / "local.txt").exists()


def test_a_missed_copy_is_made_with_the_next_one(store: ConfigStore, dataset_fs: Path) -> None:
    commit(store, "two")  # say the copy of 1 and 2 failed (data set full, unplugged...)
    commit(store, "three")
    assert copy_missing_to_dataset(store, dataset_fs) == [1, 2, 3]
    assert copy_missing_to_dataset(store, dataset_fs) == []
