"""The services tier: one data set (btrfs raid1 on loop devices) and one full service stack
per session, started from ATLAS's templates on 127.0.0.1 in a private temp dir (see
testkit.services.running_stack for why not pytest's); every test leaves it healthy."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.services import ServiceStack, running_stack

NEEDED = ("nginx", "postfix", "dovecot", "smbd", "smbclient", "mkfs.btrfs", "losetup")


@pytest.fixture(scope="session")
def stack() -> Iterator[ServiceStack]:
    if os.geteuid() != 0:
        pytest.skip("starting the business services needs root")
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing or not Path("/usr/lib/postgresql/15/bin/postgres").exists():
        pytest.skip(f"service packages missing ({', '.join(missing) or 'postgresql'}): run ci/setup")
    with running_stack() as services:
        yield services


@pytest.fixture
def services(stack: ServiceStack) -> Iterator[ServiceStack]:
    """The stack, healthy before the test and made healthy again after it."""
    stack.ensure_running()
    yield stack
    stack.ensure_running()
