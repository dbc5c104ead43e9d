"""The Synchronizer when things go wrong: each failure is one clear status line, the last
good state is kept, and the next sync completes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from atlas_services import cluster
from atlas_services.peer.client import Client
from atlas_services.peer.failures import Kind, SyncError
from atlas_services.roles import Role
from atlas_services.store import subvol
from atlas_services.sync import state, transfer
from testkit.syncpair import Pair, small_tree


def leftovers(directory: Path) -> list[str]:
    """Entries that are not finished versions (unfinished receives, names set aside)."""
    return sorted(e.name for e in directory.iterdir() if not subvol.is_finished(e))


def big_generation(pair: Pair, megabytes: int = 8) -> int:
    (pair.primary.config.work / "big.bin").write_bytes(os.urandom(megabytes * 2**20))
    return pair.primary.config.commit("a big file").number


def assert_in_sync(pair: Pair) -> None:
    result = pair.sync()
    assert result.status == "ok", result.last_error
    assert result.secondary_generations == tuple(pair.primary.config.generations())
    assert leftovers(pair.secondary.config.generations_dir) == []


def test_a_sync_killed_midstream_keeps_the_last_good_state_and_the_next_completes(pair: Pair) -> None:
    assert pair.sync().status == "ok"
    before = state.read(pair.layout.sync_state)
    big_generation(pair)

    killed = pair.cli("--now", env={"ATLAS_CRASHPOINT": "sync-receive"})

    assert killed.returncode == -9
    assert pair.secondary.config.generations() == [1]
    assert state.read(pair.layout.sync_state).last_success == before.last_success
    assert pair.cli("status").stdout.startswith("sync      interrupted — last success")
    assert_in_sync(pair)
    assert not (pair.layout.sync_connection).exists()  # the next sync cleared it


def test_a_first_sync_killed_while_replacing_a_generation_puts_it_back(pair: Pair) -> None:
    """The secondary's own generation 1 is set aside while the primary's arrives."""
    subvol.delete(pair.primary.config.root)  # the primary's generation 1: a big one
    tree = small_tree(pair.tmp / "big-default")
    (tree / "big.bin").write_bytes(os.urandom(8 * 2**20))
    pair.primary.config.init(tree)
    own = pair.secondary.config.info(1).id

    killed = pair.cli("--now", env={"ATLAS_CRASHPOINT": "sync-receive"})

    assert killed.returncode == -9
    assert pair.secondary.config.generations() == []  # mid-replacement
    assert pair.cli("--now", "--primary", "127.0.0.1:1").returncode == 1  # primary away: still recovers
    assert pair.secondary.config.generations() == [1] and pair.secondary.config.info(1).id == own
    assert leftovers(pair.secondary.config.generations_dir) == []
    assert_in_sync(pair)
    assert pair.secondary.config.info(1).id == pair.primary.config.info(1).id


def test_a_truncated_stream_from_the_primary_is_refused_and_the_next_sync_completes(pair: Pair) -> None:
    assert pair.sync().status == "ok"
    big_generation(pair)
    pair.authorize(wrapper="{command} | head -c 200000")  # the channel ends early, exit 0

    result = pair.sync()

    assert result.status == "failed" and result.error_kind == Kind.CORRUPT_STREAM
    assert "truncated or corrupt" in (result.last_error or "")
    assert pair.secondary.config.generations() == [1]
    assert leftovers(pair.secondary.config.generations_dir) == []
    pair.authorize()
    assert_in_sync(pair)


def test_a_corrupt_stream_leaves_nothing(pair: Pair, tmp_path: Path) -> None:
    stream = tmp_path / "gen.stream"
    subvol.send_to_file(pair.primary.config.path(1), stream)
    data = bytearray(stream.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stream.write_bytes(bytes(data))
    target = pair.secondary.root / "received"
    target.mkdir()

    with stream.open("rb") as source, pytest.raises(SyncError) as caught:
        transfer.receive(source, target, "1", "test")

    assert caught.value.kind is Kind.CORRUPT_STREAM
    assert list(target.iterdir()) == []


def test_a_stream_from_an_unknown_parent_is_refused_and_leaves_nothing(pair: Pair) -> None:
    pair.primary.commit("templates/etc/motd.j2", "2\n")
    pair.primary.commit("templates/etc/motd.j2", "3\n")
    assert pair.sync().status == "ok"
    subvol.delete(pair.secondary.config.generations_dir / "3")
    subvol.delete(pair.secondary.config.generations_dir / "2")
    with Client(pair.target) as client, pytest.raises(SyncError) as caught:
        transfer.fetch(client, ["send-config", "3", "2"], pair.secondary.config.generations_dir, "3",
                       incremental=True)

    assert caught.value.kind is Kind.UNKNOWN_PARENT
    assert "does not hold" in str(caught.value)
    assert leftovers(pair.secondary.config.generations_dir) == []
    assert_in_sync(pair)


def test_an_unreachable_primary_is_reported_and_changes_nothing(pair: Pair) -> None:
    assert pair.sync().status == "ok"
    pair.sshd.stop()
    pair.primary.commit("templates/etc/motd.j2", "new\n")

    result = pair.sync()

    assert result.status == "failed" and result.error_kind == Kind.UNREACHABLE
    assert "unreachable" in (result.last_error or "")
    assert result.secondary_generations == (1,) and result.last_success is not None
    pair.sshd.start()
    assert_in_sync(pair)


def test_a_wrong_host_key_is_refused_as_a_possible_impostor(pair: Pair) -> None:
    assert pair.sync().status == "ok"
    pair.primary.commit("templates/etc/motd.j2", "new\n")
    # Someone answers at the primary's address with other keys (here: the secondary's).
    pair.sshd.restart_with(cluster.host_key_files(pair.cluster_dir, Role.SECONDARY))

    result = pair.sync()

    assert result.status == "failed" and result.error_kind == Kind.HOST_KEY
    assert "possible impostor" in (result.last_error or "")
    assert result.secondary_generations == (1,)
    shown = pair.cli("status")
    assert "possible impostor" in shown.stdout
    assert pair.cli("--now").returncode == 1


def test_a_key_the_primary_does_not_accept_is_reported(pair: Pair) -> None:
    (pair.sshd.authorized_keys_dir / "root").unlink()
    result = pair.sync()
    assert result.status == "failed" and result.error_kind == Kind.AUTH
    assert "did not accept the cluster's sync key" in (result.last_error or "")


def test_a_full_disk_on_the_secondary_keeps_the_last_good_state(pair: Pair) -> None:
    assert pair.sync().status == "ok"
    big_generation(pair, megabytes=48)
    filler = pair.secondary.root / "filler"
    free = os.statvfs(pair.secondary.root)
    subprocess.run(["fallocate", "-l", str(free.f_bavail * free.f_frsize - 8 * 2**20), filler], check=True)
    subvol.sync(pair.secondary.root)

    result = pair.sync()

    assert result.status == "failed" and result.error_kind == Kind.DISK_FULL, result.last_error
    assert "disk is full" in (result.last_error or "")
    assert pair.secondary.config.generations() == [1]
    assert leftovers(pair.secondary.config.generations_dir) == []
    filler.unlink()
    subvol.sync(pair.secondary.root)
    assert_in_sync(pair)


def test_a_secondary_without_its_data_set_records_why(pair: Pair) -> None:
    pair.secondary.data.rename(pair.secondary.data.with_name("not-mounted"))
    result = pair.cli("--now")
    assert result.returncode == 1
    assert "no data set" in result.stderr
    recorded = state.read(pair.layout.sync_state)
    assert recorded.status == "failed" and recorded.error_kind == Kind.SETUP
    assert recorded.last_attempt is not None
