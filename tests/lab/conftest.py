"""The lab tier: two servers booted from the built image (tests/conftest.py builds it),
provisioned in their roles on a private segment.

Booting a pair under software emulation takes minutes, so the tier's modules share one
(`the_pair`), package-scoped: it is shut down when the tier ends. Never more than two
guests run at once (testkit.lab.machine refuses a third).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.lab import pair
from testkit.lab.machine import BuiltImage


@pytest.fixture(scope="package")
def the_pair(built_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[pair.Pair]:
    the_pair = pair.up(tmp_path_factory.mktemp("pair"), built_image, die_with_parent=True)
    try:
        yield the_pair
    finally:
        the_pair.lab.close()
