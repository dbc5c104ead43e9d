"""The image tier: build the image once per run (reusing an up-to-date one), boot it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from atlaslab.machine import BuiltImage, Lab, Machine

import build

log = logging.getLogger("tests")


def _current_inputs_hash() -> str:
    return build.inputs_hash(build.REPO, [build.REPO / "build.py", build.IMAGE_DIR,
                                          build.OVERLAYS_DIR, build.PACKAGE_DIR,
                                          build.REPO / "README.md"])


@pytest.fixture(scope="session")
def built_image() -> BuiltImage:
    """The image of this tree: output/ if it was built from exactly these inputs, else built now."""
    if os.geteuid() != 0:
        pytest.skip("building and booting the image needs root")
    try:
        image = BuiltImage.load(build.DEFAULT_OUTPUT)
        if (image.manifest.get("build_inputs_sha256") == _current_inputs_hash()
                and image.image.exists()):
            log.info("image: output/ is up to date with this tree, not rebuilding")
            return image
    except Exception:
        pass
    log.info("image: building with ./build.py (this takes a few minutes)")
    build.build(build.BuildRequest(output_dir=build.DEFAULT_OUTPUT,
                                   image_version=build.ATLAS_VERSION, clean=False, verbose=False))
    return BuiltImage.load(build.DEFAULT_OUTPUT)


@pytest.fixture(scope="session")
def lab(built_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), built_image) as the_lab:
        yield the_lab


@pytest.fixture(scope="session")
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
