"""A data set that lies cannot take the box: its files are read without following links,
capped and only if regular; the services' directories on it are changed through no link;
it is mounted nodev,nosuid; a hung mount ends in a refusal that says so. Each test feeds the
hostile data set to the real code on real btrfs and checks that nothing changed."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from atlas_services import cluster, dataset, detect, paths, servicedata, volume
from atlas_services.detect import Reason
from atlas_services.errors import Refused
from atlas_services.roles import Role
from atlas_services.settings import Settings
from testkit.disks import LoopDisks
from testkit.trees import fingerprint


def provision(cluster_dir: Path, role: Role, devices: list[Path]) -> None:
    dataset.provision(dataset.plan(cluster_dir, role, devices, False))


def decide_on(devices: list[Path]) -> detect.Decision:
    return detect.decide(detect.probe_facts(None, devices), Settings())


def victim_dir(tmp_path: Path) -> tuple[Path, tuple[int, int, int]]:
    """A root-owned directory standing in for /etc: what a planted link points at."""
    victim = tmp_path / "etc-victim"
    victim.mkdir(mode=0o755)
    (victim / "shadow").write_text("secret\n")
    st = victim.stat()
    return victim, (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.mark.parametrize("planted", ["postgresql/15", "postgresql"])
def test_a_link_planted_by_postgres_never_makes_root_chown_its_target(
        dataset_fs: Path, tmp_path: Path, planted: str) -> None:
    # What the postgres user can do in its own directory of the data set: replace a
    # directory with a link to /etc and remove PG_VERSION, waiting for the next boot.
    victim, before = victim_dir(tmp_path)
    postgres = pwd.getpwnam("postgres")
    (dataset_fs / "postgresql").mkdir()
    os.chown(dataset_fs / "postgresql", postgres.pw_uid, postgres.pw_gid)
    if planted == "postgresql":
        (dataset_fs / "postgresql").rmdir()
    (dataset_fs / planted).symlink_to(victim)
    with pytest.raises(Refused, match="symbolic link or not a directory: not followed"):
        servicedata.prepare(dataset_fs, "shop1.shop.test")
    assert owner_and_mode(victim) == before
    assert (dataset_fs / planted).is_symlink()
    assert sorted(p.name for p in victim.iterdir()) == ["shadow"]  # no initdb into it


def test_service_data_lays_out_plain_directories_with_their_owners(dataset_fs: Path) -> None:
    for path in (dataset_fs.parent, dataset_fs):  # initdb runs as postgres: it must get there
        path.chmod(0o755)
    servicedata.prepare(dataset_fs, "shop1.shop.test")
    pg = dataset_fs / paths.POSTGRES_DATA
    assert (pg / "PG_VERSION").is_file()
    assert owner_and_mode(pg.parent)[:2] == (pwd.getpwnam("postgres").pw_uid,
                                              grp.getgrnam("postgres").gr_gid)
    users = dataset_fs / paths.MAIL_USERS
    assert owner_and_mode(users) == (0, grp.getgrnam("dovecot").gr_gid, 0o640)
    # A second run changes nothing that is there.
    before = fingerprint(dataset_fs / "mail")
    assert servicedata.prepare(dataset_fs, "shop1.shop.test") == []
    assert fingerprint(dataset_fs / "mail") == before


def test_a_mail_map_linked_elsewhere_is_refused(dataset_fs: Path, tmp_path: Path) -> None:
    victim, _ = victim_dir(tmp_path)
    (dataset_fs / "mail").mkdir()
    (dataset_fs / "mail/recipients.db").symlink_to(victim / "shadow")
    with pytest.raises(Refused, match="not followed"):
        servicedata.prepare(dataset_fs, "shop1.shop.test")
    assert (victim / "shadow").read_text() == "secret\n"


def plant(disks: list[Path], plant_in: Callable[[Path], None]) -> None:
    with dataset.mounted(disks, readonly=False) as root:
        plant_in(root)


def _fifo(root: Path) -> None:
    volume.volume_path(root).unlink()
    os.mkfifo(volume.volume_path(root))


def _dev_zero(root: Path) -> None:
    volume.volume_path(root).unlink()
    volume.volume_path(root).symlink_to("/dev/zero")


def _huge(root: Path) -> None:
    volume.volume_path(root).write_text(" " * 200_000 + "{}")


def _nested(root: Path) -> None:
    volume.volume_path(root).write_text("[" * 30_000 + "]" * 30_000)


def _meta_link(root: Path) -> None:
    # /.atlas itself a link to a directory holding a well-formed volume.json
    meta = volume.meta_dir(root)
    meta.rename(root / "elsewhere")
    meta.symlink_to("elsewhere")


@pytest.mark.parametrize("plant_in,why", [
    (_fifo, "not a regular file"),
    (_dev_zero, "symbolic link"),
    (_huge, "larger than"),
    (_nested, "nested too deeply"),
    (_meta_link, "symbolic link"),
])
def test_a_volume_json_that_lies_is_refused_at_once_and_unchanged(
        loop_disks: LoopDisks, make_cluster: Callable[..., Path],
        plant_in: Callable[[Path], None], why: str) -> None:
    disks = loop_disks.make(1)
    provision(make_cluster(), Role.PRIMARY, disks)
    plant(disks, plant_in)
    before = loop_disks.digest(disks)
    started = time.monotonic()
    decision = decide_on(disks)
    assert time.monotonic() - started < 20  # a FIFO once hung atlas-role for 180 s
    assert (decision.role, decision.reason) == (Role.REFUSED, Reason.VOLUME_UNREADABLE)
    assert why in decision.message
    assert loop_disks.digest(disks) == before


def test_a_cluster_json_with_a_newline_in_its_domain_injects_nothing(
        loop_disks: LoopDisks, make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(1)
    provision(make_cluster(), Role.PRIMARY, disks)

    def inject(root: Path) -> None:
        path = root / paths.DATASET_META / paths.CLUSTER_COPY
        data = json.loads(path.read_text())
        data["domain"] = "shop.test\nrelayhost = [evil.example]"
        path.write_text(json.dumps(data))

    plant(disks, inject)
    with dataset.mounted(disks, readonly=True) as root:
        with pytest.raises(Refused, match="is not a DNS domain"):
            cluster.on_dataset(root)
        # The role renders its configuration from this: no domain rather than a forged one.
        assert cluster.find_on_dataset(root) is None


def test_a_data_set_is_mounted_without_devices_or_set_id_programs(
        loop_disks: LoopDisks, make_cluster: Callable[..., Path]) -> None:
    disks = loop_disks.make(1)
    provision(make_cluster(), Role.PRIMARY, disks)
    for readonly in (True, False):
        with dataset.mounted(disks, readonly=readonly) as root:
            options = next(line.split()[5] for line in
                           Path("/proc/self/mountinfo").read_text().splitlines()
                           if line.split()[4] == str(root)).split(",")
            assert "nodev" in options and "nosuid" in options


def test_a_mount_that_hangs_ends_in_a_refusal_that_says_so(
        loop_disks: LoopDisks, make_cluster: Callable[..., Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    disks = loop_disks.make(1)
    provision(make_cluster(), Role.PRIMARY, disks)
    # A disk that stops answering: mount(8) never returns.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mount").write_text("#!/bin/sh\nexec sleep 3600\n")
    (bin_dir / "mount").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(dataset, "MOUNT_TIMEOUT_S", 2)
    before = loop_disks.digest(disks)
    started = time.monotonic()
    decision = decide_on(disks)
    assert time.monotonic() - started < 30
    assert (decision.role, decision.reason) == (Role.REFUSED, Reason.VOLUME_UNREADABLE)
    assert "mount did not finish within 2 s" in decision.message
    assert loop_disks.digest(disks) == before
