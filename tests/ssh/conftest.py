"""The ssh tier: a primary and a secondary on their own loop-device btrfs, the primary behind
a private sshd on 127.0.0.1 (see testkit/syncpair.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.syncpair import Pair, Unavailable, check_available, make_pair
from testkit.updatepair import UpdatePair, make_update_pair


@contextlib.contextmanager
def _pair(tmp_path: Path) -> Iterator[Pair]:
    try:
        check_available()
    except Unavailable as err:
        pytest.skip(str(err))
    with make_pair(tmp_path) as the_pair:
        yield the_pair


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    with _pair(tmp_path) as the_pair:
        yield the_pair


@pytest.fixture(scope="module")
def shared_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """One pair for a module of tests that only read from it."""
    with _pair(tmp_path_factory.mktemp("pair")) as the_pair:
        yield the_pair


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpdatePair]:
    """The pair, with the secondary's own door (a second sshd) for the primary's questions."""
    try:
        check_available()
    except Unavailable as err:
        pytest.skip(str(err))
    with make_update_pair(tmp_path) as the_pair:
        yield the_pair
