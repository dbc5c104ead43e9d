"""clock: the wall clock is later than the software's build, did not jump back, and is
synchronized. What the kernel says comes through a thin injectable layer (adjtimex)."""

from __future__ import annotations

import ctypes
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from atlas_services import clock
from atlas_services.results import Outcome
from atlas_services.verify.probes import Probe

# How far the clock may seem to go back between cycles before it counts as a jump.
BACKWARDS_TOLERANCE = dt.timedelta(minutes=5)


def clock_outcome(now: dt.datetime, floor: dt.datetime, last_seen: dt.datetime | None,
                  synchronized: bool | None, sync_required: bool = True) -> Outcome:
    """Is the wall clock believable (pure)? floor: no real time is earlier (the build time)."""
    if now < floor:
        return Outcome.failed(f"clock reads {now:%Y-%m-%d %H:%M} UTC, before this software was built")
    if last_seen is not None and now < last_seen - BACKWARDS_TOLERANCE:
        return Outcome.failed(f"clock went back: now {now:%Y-%m-%d %H:%M:%S}, "
                              f"last cycle {last_seen:%Y-%m-%d %H:%M:%S} UTC")
    if synchronized is False and sync_required:
        return Outcome.degraded("clock is not synchronized (NTP)")
    if synchronized is False:
        return Outcome.ok(f"{now:%Y-%m-%d %H:%M:%S} UTC, not synchronized (not required here)")
    state = "synchronized" if synchronized else "sync state unknown"
    return Outcome.ok(f"{now:%Y-%m-%d %H:%M:%S} UTC, {state}")


_TIME_ERROR = 5  # adjtimex(2): the kernel's clock is not synchronized


def kernel_clock_synchronized() -> bool | None:
    """The kernel's view (adjtimex, read-only): True/False, or None when it cannot be asked."""
    buf = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 only reads
    libc = ctypes.CDLL(None, use_errno=True)
    state = libc.adjtimex(buf)
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


def software_floor() -> dt.datetime:
    # In a reproducible image every file's mtime is the build's SOURCE_DATE_EPOCH:
    # no correct clock can read earlier than the package it runs.
    mtime = Path(__file__).stat().st_mtime
    return dt.datetime.fromtimestamp(mtime, dt.UTC)


@dataclass
class ClockProbe(Probe):
    """*The clock is later than the software's build, did not jump back, and is synchronized.*"""

    last_seen: dt.datetime | None = None
    synchronized: Callable[[], bool | None] = kernel_clock_synchronized
    sync_required: bool = True
    floor: Callable[[], dt.datetime] = software_floor
    now: Callable[[], dt.datetime] = field(default=clock.utcnow)
    timeout: float = 2.0
    name: str = "clock"

    @property
    def target(self) -> str:
        return "system clock"

    def check(self) -> Outcome:
        return clock_outcome(self.now(), self.floor(), self.last_seen, self.synchronized(),
                             self.sync_required)
