"""The image tier: one server booted from the built image (built once per run by
tests/conftest.py), the way it leaves the factory and the way its disks decide its role.

Booting under software emulation takes minutes, so the tier shares its boots: `server`
is the first server, booted without a data set but with two blank disks in its bays; the
image checks look at it as it comes up (standby), then test_roles.py carries on with the
same server and its disks. The tier's machines are package-scoped: they are shut down
when the tier ends, so they never run beside the lab tier's pair.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import build
from testkit.lab import pair
from testkit.lab.machine import BuiltImage, Lab, Machine


@pytest.fixture(scope="package")
def lab(built_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("image")
    with Lab(workdir, built_image) as the_lab:
        yield the_lab


@pytest.fixture(scope="package")
def booted(lab: Lab) -> Iterator[Machine]:
    """The first server, booted by direct kernel boot with two blank data disks: standby."""
    machine = lab.machine("x", disks=[lab.disk("x-1"), lab.disk("x-2")])
    machine.start()
    machine.wait_booted()
    yield machine
    machine.shutdown()


@pytest.fixture(scope="package")
def foreign_cluster(lab: Lab) -> Path:
    """Another cluster's directory, for disks that belong elsewhere."""
    theirs = lab.workdir / "theirs"
    pair.make_cluster(theirs)
    return theirs


@pytest.fixture
def output_dir() -> Path:
    return build.DEFAULT_OUTPUT
