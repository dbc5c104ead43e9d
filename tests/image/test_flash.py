"""build.py flash writes the image to a disk and proves it by reading it back; it refuses
every target that would destroy the wrong thing, and then writes nothing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import build
from atlas_services import blockdev
from atlas_services.errors import Refused
from testkit import disks
from testkit.lab.machine import BuiltImage


def run_build_py(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(build.REPO / "build.py"), *args],
                          capture_output=True, text=True, check=False)


def sha256_of(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        digest.update(stream.read(size))
    return digest.hexdigest()


class LoopDisk:
    def __init__(self, backing: Path, size: int) -> None:
        self.backing = disks.sparse_file(backing, size)
        self.device = disks.attach(backing)

    def detach(self) -> None:
        disks.detach(self.device)


@pytest.fixture
def loop_disk(tmp_path: Path, built_image: BuiltImage) -> Iterator[LoopDisk]:
    disk = LoopDisk(tmp_path / "disk.img", built_image.image.stat().st_size + 2**20)
    yield disk
    disk.detach()
    disk.backing.unlink()  # gigabytes: do not leave them to pytest's rotation


@pytest.fixture
def small_loop_disk(tmp_path: Path) -> Iterator[LoopDisk]:
    disk = LoopDisk(tmp_path / "small.img", 128 * 2**20)
    yield disk
    disk.detach()


def test_flash_writes_and_verifies(built_image: BuiltImage, loop_disk: LoopDisk) -> None:
    result = run_build_py("flash", "--image", str(built_image.image),
                          "--device", str(loop_disk.device), "--yes")
    assert result.returncode == 0, result.stderr
    assert "written and verified" in result.stdout
    assert "%" in result.stdout  # progress was shown
    size = built_image.image.stat().st_size
    assert sha256_of(loop_disk.device, size) == built_image.manifest["image_sha256"]


def test_flash_refuses_a_disk_smaller_than_the_image(built_image: BuiltImage,
                                                     small_loop_disk: LoopDisk) -> None:
    before = small_loop_disk.backing.read_bytes()
    result = run_build_py("flash", "--image", str(built_image.image),
                          "--device", str(small_loop_disk.device), "--yes")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "use a larger disk" in result.stderr
    assert small_loop_disk.backing.read_bytes() == before


def test_flash_refuses_a_mounted_disk(built_image: BuiltImage, small_loop_disk: LoopDisk,
                                      tmp_path: Path) -> None:
    # The host kernel has btrfs but not vfat.
    subprocess.run(["mkfs.btrfs", "-q", str(small_loop_disk.device)], check=True, capture_output=True)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    subprocess.run(["mount", str(small_loop_disk.device), str(mountpoint)], check=True)
    try:
        result = run_build_py("flash", "--image", str(built_image.image),
                              "--device", str(small_loop_disk.device), "--yes")
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)
    assert result.returncode == 2
    assert "mounted" in result.stderr and "Traceback" not in result.stderr


def test_flash_refuses_the_running_systems_disk(built_image: BuiltImage) -> None:
    root_disk = next(iter(blockdev.running_system_disks()), None)
    if root_disk is None:
        pytest.skip("the root file system is not on a block device here")
    # Called directly, never through the CLI: a broken guard must not be able to write here.
    request = build.FlashRequest(image=built_image.image, device=Path(f"/dev/{root_disk}"),
                                 confirmed=True)
    with pytest.raises(Refused, match="running system"):
        build.check_flash_target(request)


def test_flash_refuses_a_tampered_image(built_image: BuiltImage, tmp_path: Path,
                                        small_loop_disk: LoopDisk) -> None:
    image = tmp_path / "tampered.raw"
    image.write_bytes(b"\0" * 2**20)
    (tmp_path / "tampered.raw.sha256").write_text("0" * 64 + "  tampered.raw\n")
    before = small_loop_disk.backing.read_bytes()
    result = run_build_py("flash", "--image", str(image), "--device",
                          str(small_loop_disk.device), "--yes")
    assert result.returncode == 2
    assert "does not match" in result.stderr
    assert small_loop_disk.backing.read_bytes() == before


def test_flash_refuses_a_regular_file_as_device(built_image: BuiltImage, tmp_path: Path) -> None:
    target = tmp_path / "not-a-disk"
    target.write_bytes(b"keep")
    result = run_build_py("flash", "--image", str(built_image.image), "--device", str(target),
                          "--yes")
    assert result.returncode == 2
    assert "not a block device" in result.stderr
    assert target.read_bytes() == b"keep"


def test_flash_asks_before_overwriting(built_image: BuiltImage, small_loop_disk: LoopDisk) -> None:
    before = small_loop_disk.backing.read_bytes()
    result = subprocess.run([sys.executable, str(build.REPO / "build.py"), "flash", "--image",
                             str(built_image.image), "--device", str(small_loop_disk.device)],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 2
    assert small_loop_disk.backing.read_bytes() == before
