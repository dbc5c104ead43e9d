"""Real btrfs file systems on loop devices, made and destroyed per test."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SIZE = "256M"  # mkfs.btrfs needs a little over 100 MiB for its default profile


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("real btrfs on loop devices needs root")


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def loop_btrfs(label: str) -> Iterator[Path]:
    """A freshly made btrfs on a loop device, mounted; unmounted and detached afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"atlas-{label}-") as tmp:
        image = Path(tmp) / "disk.img"
        mountpoint = Path(tmp) / "mnt"
        mountpoint.mkdir()
        subprocess.run(["truncate", "-s", SIZE, str(image)], check=True)
        device = _run("losetup", "--find", "--show", str(image))
        mounted = False
        try:
            _run("mkfs.btrfs", "-q", "-L", label, device)
            _run("mount", device, str(mountpoint))
            mounted = True
            yield mountpoint
        finally:
            if mounted:
                subprocess.run(["umount", str(mountpoint)], check=False)
            subprocess.run(["losetup", "-d", device], check=False)


@pytest.fixture
def btrfs() -> Iterator[Path]:
    """Root of a real, empty btrfs file system (the OS disk's /var/lib/atlas stand-in)."""
    require_root()
    with loop_btrfs("atlas-os") as root:
        yield root


@pytest.fixture
def dataset() -> Iterator[Path]:
    """Root of a second btrfs file system standing in for a mounted data set."""
    require_root()
    with loop_btrfs("atlas-data") as root:
        yield root
