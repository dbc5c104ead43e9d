"""The lab tier: QEMU machines booted from the built image (tests/conftest.py builds it).

Booting two servers under software emulation takes minutes, so the modules that need a
provisioned pair in its roles (test_pair_*.py) share one, made on first use and ended by
the last of them (see `end_the_pair`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.lab import pair
from testkit.lab.machine import BuiltImage


@pytest.fixture(scope="session")
def the_pair(built_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[pair.Pair]:
    the_pair = pair.up(tmp_path_factory.mktemp("pair"), built_image, die_with_parent=True)
    try:
        yield the_pair
    finally:
        the_pair.lab.close()


def end_the_pair(the_pair: pair.Pair) -> None:
    """Stop the shared pair once its last module is done, so its QEMUs do not slow the
    modules after it (closing twice is harmless)."""
    the_pair.lab.close()
