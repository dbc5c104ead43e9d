"""Probes: small objects that each exercise one thing and say how it went.

A probe has a `name` (the service label in reports), a `target` (what it talks to, for
people) and a `timeout`, and one `check()` returning an Outcome with its reason. The
runner, not the probe, handles concurrency, timeouts and reporting; a probe only keeps
its own network calls within `timeout` so that a hung service costs no more than that.
"""

from __future__ import annotations

import abc

from atlas_services.results import Outcome


class Probe(abc.ABC):
    name: str
    timeout: float

    @property
    @abc.abstractmethod
    def target(self) -> str:
        """What the probe talks to, for people: host:port/path, a share, a file system."""

    @abc.abstractmethod
    def check(self) -> Outcome:
        """Exercise the target once; never raise for a failure of the target itself."""


class Unavailable(Probe):
    """Stands in for a probe that cannot be built (no verifier account yet, say)."""

    def __init__(self, name: str, target: str, reason: str) -> None:
        self.name = name
        self._target = target
        self.timeout = 1.0
        self.reason = reason

    @property
    def target(self) -> str:
        return self._target

    def check(self) -> Outcome:
        return Outcome.failed(self.reason)


def first_line(err: BaseException | str) -> str:
    """An error's first line, for a one-sentence probe message."""
    text = (str(err).strip() or type(err).__name__) if isinstance(err, BaseException) else err.strip()
    return text.splitlines()[0] if text else "no detail"
