"""The lab never runs a third guest: two host-wide slots, held by the QEMUs themselves."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlas_services.errors import AtlasError
from testkit.lab import machine
from testkit.lab.machine import BuiltImage, Lab


@pytest.fixture
def slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "slots"
    monkeypatch.setattr(machine, "SLOT_DIR", directory)
    return directory


def hold(slot: Path, holder: str) -> int:
    """Hold a slot the way a running QEMU does (an flock on an open descriptor)."""
    fd = os.open(slot, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, holder.encode())
    return fd


@pytest.fixture
def two_running(slots: Path) -> Iterator[None]:
    slots.mkdir()
    fds = [hold(slots / f"guest-{n}", f"server{n + 1} of /lab") for n in range(machine.GUEST_SLOTS)]
    yield
    for fd in fds:
        os.close(fd)


def test_a_free_slot_is_taken_and_freed_with_its_holder(slots: Path) -> None:
    first = machine.take_guest_slot("a")
    second = machine.take_guest_slot("b")
    with pytest.raises(AtlasError):
        machine.take_guest_slot("c")
    os.close(first)
    os.close(machine.take_guest_slot("c"))
    os.close(second)


def test_a_third_guest_is_refused_naming_the_two_that_run(two_running: None, tmp_path: Path) -> None:
    image = BuiltImage(image=tmp_path / "missing.raw", kernel=tmp_path / "vmlinuz",
                       initrd=tmp_path / "initrd", cmdline="", manifest={})
    lab = Lab(tmp_path / "lab", image)
    third = lab.machine("server3")
    with pytest.raises(AtlasError) as refused:
        third.start()
    assert "server1 of /lab" in str(refused.value) and "server2 of /lab" in str(refused.value)
    assert "a third would starve them" in str(refused.value)
    assert not third.running() and not third.directory.exists(), "nothing was made for the refused guest"
    lab.close()
