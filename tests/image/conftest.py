"""The image tier: boot the built image (built once per run by tests/conftest.py).

The tier's machines are package-scoped: they are shut down when the tier ends, so they
never run beside the lab tier's guests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import build
from testkit.lab.machine import BuiltImage, Lab, Machine


@pytest.fixture(scope="package")
def lab(built_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), built_image) as the_lab:
        yield the_lab


@pytest.fixture(scope="package")
def booted(lab: Lab) -> Iterator[Machine]:
    """One machine booted from the image by direct kernel boot, shared by the tier."""
    machine = lab.machine("plain")
    machine.start()
    machine.wait_booted()
    yield machine
    machine.shutdown()


@pytest.fixture
def output_dir() -> Path:
    return build.DEFAULT_OUTPUT
