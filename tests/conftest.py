"""Test tiers, real-part fixtures, and the rule that CI never skips a tier silently."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from testkit.lab.machine import BuiltImage

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TIERS = ("unit", "btrfs", "ssh", "services", "image", "lab")
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ARTIFACTS = REPO / "test-artifacts"
logger = logging.getLogger("tests")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test's tier is the directory of tests/ it lives in.
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        if len(parts) > 1 and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI timeout, `kill`) ends the run the way Ctrl-C does: guests killed at
    # once, then pytest's summary of what failed, instead of dying without one. SIGINT is
    # set too: a shell starts a background job with SIGINT ignored, and `kill -INT` must
    # still stop the suite.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    # Before pytest tears the fixtures down: kill every guest and hub now, so that teardown
    # has nothing to wait for (powering guests off could take minutes).
    from testkit.lab import machine

    machine.kill_everything()


@pytest.hookimpl(hookwrapper=True)  # type: ignore[misc]  # pytest's decorator is untyped
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    # Under CI a tier that cannot run is a failure, not a quiet skip.
    if UNDER_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI (CI=true makes that a failure): {reason}"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture(scope="session")
def built_image() -> BuiltImage:
    """The image of this tree: output/ if it was built from exactly these inputs, else built now."""
    import build
    from testkit.lab.machine import BuiltImage

    if os.geteuid() != 0:
        pytest.skip("building and booting the image needs root")
    try:
        image = BuiltImage.load(build.DEFAULT_OUTPUT)
        if (image.manifest.get("build_inputs_sha256") == build.current_inputs_hash()
                and image.image.exists()):
            logger.info("image: output/ is up to date with this tree, not rebuilding")
            return image
    except Exception:
        pass
    logger.info("image: building with ./build.py (this takes a few minutes)")
    build.build(build.BuildRequest(output_dir=build.DEFAULT_OUTPUT,
                                   image_version=build.ATLAS_VERSION, clean=False, verbose=False))
    return BuiltImage.load(build.DEFAULT_OUTPUT)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
