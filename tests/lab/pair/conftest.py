"""Two servers in their roles, shared by this package's modules: booting a pair under
software emulation takes minutes. Package-scoped, so it is shut down as soon as the last
module that needs it is done."""

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
