"""`build.py flash` on real loop devices, with a small image of its own: the disks a guard
once let through (the second disk of a mounted raid1, a disk held open by the kernel, one
whose partition is held) and an image without its checksum are refused in one line, and
not a byte of the disk changes. (A disk whose partition is held by RAID or a mapper needs
device-mapper, which this host's kernel lacks: blockdev.holders is tested on a sysfs tree.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import build
from atlas_services import proc
from testkit import disks


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "atlas_test.raw"
    path.write_bytes(os.urandom(2**20))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{sha}  {path.name}\n")
    return path


@pytest.fixture
def raid1(tmp_path: Path) -> Iterator[disks.LoopRaid1]:
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    pair = disks.LoopRaid1(tmp_path / "raid", tmp_path / "mnt")
    (tmp_path / "raid").mkdir()
    pair.create()
    yield pair
    pair.destroy()
    proc.run(["btrfs", "device", "scan", "--forget"], ok_codes=proc.ANY_EXIT)


def flash(image: Path, device: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(build.REPO / "build.py"), "flash", "--image",
                           str(image), "--device", str(device), "--yes"],
                          capture_output=True, text=True, check=False)


def digest(device: Path) -> str:
    with device.open("rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def assert_refused(result: subprocess.CompletedProcess[str], said: str) -> None:
    assert result.returncode == 2, result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("build.py: ") and result.stderr.count("\n") == 1


def test_the_second_disk_of_a_mounted_raid1_is_refused(image: Path,
                                                       raid1: disks.LoopRaid1) -> None:
    second = raid1.devices[1]
    before = digest(second)
    assert_refused(flash(image, second), "mounted")
    assert digest(second) == before


def test_a_disk_the_kernel_holds_open_is_refused_not_a_traceback(image: Path,
                                                                 tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    device = disks.attach(disks.sparse_file(tmp_path / "held.img", 8 * 2**20))
    try:
        before = digest(device)
        # What a RAID or a mapper does to a disk it uses: an exclusive open.
        holder = os.open(device, os.O_RDONLY | os.O_EXCL)
        try:
            assert_refused(flash(image, device), "is in use")
        finally:
            os.close(holder)
        assert digest(device) == before
    finally:
        disks.detach(device)


def test_an_image_without_its_checksum_is_refused(image: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    image.with_name(image.name + ".sha256").unlink()
    device = disks.attach(disks.sparse_file(tmp_path / "disk.img", 8 * 2**20))
    try:
        before = digest(device)
        assert_refused(flash(image, device), ".sha256 is missing")
        assert digest(device) == before
    finally:
        disks.detach(device)
