"""Provisioning data sets on real disks and detecting them; refusals change no byte."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from atlas_services import cluster, dataset, detect, volume
from atlas_services.detect import Reason
from atlas_services.errors import Refused
from atlas_services.roles import Role
from atlas_services.settings import Settings
from testkit.disks import LoopDisks
from testkit.repo import REPO


def atlas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atlas_services", *args], cwd=REPO,
                          capture_output=True, text=True, check=False)


def provision(cluster_dir: Path, role: Role, devices: list[Path], force: bool = False) -> None:
    dataset.provision(dataset.plan(cluster_dir, role, devices, force))


def decide_on(devices: list[Path], known: str | None = None,
              settings: Settings | None = None) -> detect.Decision:
    return detect.decide(detect.probe_facts(known, devices), settings or Settings())


def test_cluster_init_makes_fresh_keys_and_refuses_to_overwrite(
        make_cluster: Callable[..., Path]) -> None:
    directory = make_cluster()
    loaded = cluster.load(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert all(p.exists() for p in cluster.key_files(directory))
    other = cluster.load(make_cluster("second"))
    assert other.cluster_id != loaded.cluster_id
    assert (directory / cluster.SYNC_KEY).read_bytes() != (
        directory.parent / "second" / cluster.SYNC_KEY).read_bytes()
    with pytest.raises(Refused, match="already holds a cluster"):
        cluster.create(loaded, directory)


def test_raid1_primary_set_is_detected_with_its_identity(
        loop_disks: LoopDisks, make_cluster: Callable[..., Path]) -> None:
    cluster_dir = make_cluster()
    disks = loop_disks.make(2)
    provision(cluster_dir, Role.PRIMARY, disks)
    decision = decide_on(disks)
    assert decision.role is Role.PRIMARY and not decision.degraded
    assert decision.volume is not None
    assert decision.volume.identity.hostname == "shop1"
    assert decision.volume.cluster_id == cluster.load(cluster_dir).cluster_id
    assert decision.dataset is not None and decision.dataset.expected_devices == 2


def test_data_set_carries_role_secrets_private(loop_disks: LoopDisks,
                                                make_cluster: Callable[..., Path]) -> None:
    cluster_dir = make_cluster()
    disks = loop_disks.make(2)
    provision(cluster_dir, Role.SECONDARY, disks)
    with dataset.mounted(disks, readonly=True) as root:
        secrets = dataset.secrets(root)
        assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
        host_key = secrets / "ssh_host_ed25519_key"
        assert stat.S_IMODE(host_key.stat().st_mode) == 0o600
        assert host_key.read_bytes() == (cluster_dir / "secondary" / host_key.name).read_bytes()
        assert (secrets / dataset.SYNC_KEY_NAME).exists()
        pinned = (secrets / dataset.KNOWN_HOSTS).read_text()
        assert "shop1,10.77.0.10 ssh-ed25519" in pinned
        assert volume.read(root).role == "secondary"


def test_single_disk_set(loop_disks: LoopDisks, make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(1)
    provision(make_cluster(), Role.SECONDARY, disks)
    assert decide_on(disks).role is Role.SECONDARY


def test_raid1_with_a_member_missing_boots_degraded(loop_disks: LoopDisks,
                                                    make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(2)
    provision(make_cluster(), Role.PRIMARY, disks)
    loop_disks.detach(disks[1])
    subprocess.run(["btrfs", "device", "scan", "--forget"], check=False)
    before = loop_disks.digest(disks[:1])
    decision = decide_on(disks[:1])
    assert (decision.role, decision.reason, decision.degraded) == (
        Role.PRIMARY, Reason.DEGRADED, True)
    assert "DEGRADED" in decision.message
    assert loop_disks.digest(disks[:1]) == before
    strict = decide_on(disks[:1], settings=Settings(allow_degraded_raid=False))
    assert strict.role is Role.REFUSED


def test_foreign_cluster_is_refused_and_untouched(loop_disks: LoopDisks,
                                                  make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(2)
    provision(make_cluster(), Role.PRIMARY, disks)
    before = loop_disks.digest(disks)
    decision = decide_on(disks, known="99999999-9999-4999-8999-999999999999")
    assert (decision.role, decision.reason) == (Role.REFUSED, Reason.FOREIGN_CLUSTER)
    assert loop_disks.digest(disks) == before


def corrupt(disks: list[Path], content: str) -> None:
    with dataset.mounted(disks, readonly=False) as root:
        volume.volume_path(root).write_text(content)


@pytest.mark.parametrize("content,reason", [
    ("{not json", Reason.VOLUME_UNREADABLE),
    (json.dumps({"format_version": 1, "role": "primary"}), Reason.VOLUME_INVALID),
    (json.dumps({"format_version": 9}), Reason.VOLUME_NEWER_FORMAT),
])
def test_unusable_volume_json_is_refused_and_untouched(
        loop_disks: LoopDisks, make_cluster: Callable[..., Path], content: str,
        reason: Reason) -> None:
    disks = loop_disks.make(2)
    provision(make_cluster(), Role.PRIMARY, disks)
    corrupt(disks, content)
    before = loop_disks.digest(disks)
    decision = decide_on(disks)
    assert (decision.role, decision.reason) == (Role.REFUSED, reason)
    assert loop_disks.digest(disks) == before


def test_two_data_sets_are_refused(loop_disks: LoopDisks,
                                   make_cluster: Callable[..., Path]) -> None:
    cluster_dir = make_cluster()
    first, second = loop_disks.make(1), loop_disks.make(1)
    provision(cluster_dir, Role.PRIMARY, first)
    provision(cluster_dir, Role.SECONDARY, second)
    decision = decide_on(first + second)
    assert (decision.role, decision.reason) == (Role.REFUSED, Reason.TWO_DATASETS)


def test_no_data_set_is_standby(loop_disks: LoopDisks) -> None:
    assert decide_on(loop_disks.make(1)).role is Role.STANDBY


def test_role_detect_cli_prints_json(loop_disks: LoopDisks,
                                     make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(1)
    provision(make_cluster(), Role.SECONDARY, disks)
    result = atlas("role", "detect", "--json", "--no-address-check", "--device", str(disks[0]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["role"] == "secondary"


# ---------------------------------------------------------------- provisioning guards


def test_disk_with_a_file_system_is_refused_without_force(
        loop_disks: LoopDisks, make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(2)
    subprocess.run(["mkfs.btrfs", "-q", "-L", "customer-data", str(disks[0])], check=True)
    before = loop_disks.digest(disks)
    result = atlas("disks", "init", "--role", "primary", "--cluster-dir", str(make_cluster()),
                   *map(str, disks))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "add --force" in result.stderr
    assert loop_disks.digest(disks) == before


def test_force_erases_a_foreign_file_system(loop_disks: LoopDisks,
                                            make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(2)
    subprocess.run(["mkfs.btrfs", "-q", "-L", "customer-data", str(disks[0])], check=True)
    provision(make_cluster(), Role.PRIMARY, disks, force=True)
    assert decide_on(disks).role is Role.PRIMARY


def test_other_clusters_data_set_is_refused_even_with_force(
        loop_disks: LoopDisks, make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(2)
    provision(make_cluster("old"), Role.PRIMARY, disks)
    before = loop_disks.digest(disks)
    with pytest.raises(Refused, match="holds a data set of cluster"):
        dataset.plan(make_cluster("new"), Role.PRIMARY, disks, force=True)
    assert loop_disks.digest(disks) == before


def test_mounted_disk_is_refused(loop_disks: LoopDisks, make_cluster: Callable[..., Path],
                                 tmp_path: Path) -> None:
    disks = loop_disks.make(2)
    subprocess.run(["mkfs.btrfs", "-q", str(disks[0])], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", str(disks[0]), str(mnt)], check=True)
    with pytest.raises(Refused, match="mounted"):
        dataset.plan(make_cluster(), Role.PRIMARY, disks, force=True)


def test_disks_of_different_sizes_are_refused(loop_disks: LoopDisks,
                                              make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(1, 300) + loop_disks.make(1, 600)
    before = loop_disks.digest(disks)
    with pytest.raises(Refused, match="differ in size"):
        dataset.plan(make_cluster(), Role.PRIMARY, disks, force=True)
    assert loop_disks.digest(disks) == before


def test_the_running_systems_disk_is_refused(make_cluster: Callable[..., Path]) -> None:
    from atlas_services import blockdev

    root_disk = next(iter(blockdev.running_system_disks()), None)
    if root_disk is None:
        pytest.skip("the root file system is not on a block device here")
    with pytest.raises(Refused, match="running system"):
        dataset.plan(make_cluster(), Role.PRIMARY, [Path(f"/dev/{root_disk}")], force=True)


def test_same_disk_twice_is_refused(loop_disks: LoopDisks,
                                    make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(1)
    with pytest.raises(Refused, match="named twice"):
        dataset.plan(make_cluster(), Role.PRIMARY, disks + disks, force=False)
