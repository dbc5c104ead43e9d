"""Runs a cycle's probes concurrently, each under its own timeout, and stamps their results.

One hung service must not stall the cycle: every probe runs in its own daemon thread
and the runner waits for each only until that probe's deadline. A probe still running
then is reported failed and abandoned (its own socket timeouts end it soon after; a
daemon thread never keeps the process alive).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from atlas_services import clock
from atlas_services.results import Cycle, Outcome, ProbeResult
from atlas_services.verify.probes import Probe, first_line

logger = logging.getLogger(__name__)

# Time the runner allows past a probe's own timeout before calling it hung.
GRACE_S = 1.0


@dataclass
class _Slot:
    probe: Probe
    outcome: Outcome | None = None
    latency_s: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


def _run(slot: _Slot) -> None:
    start = time.monotonic()
    try:
        slot.outcome = slot.probe.check()
    except Exception as err:  # a probe's own bug must not take the cycle down
        logger.debug("probe %s raised", slot.probe.name, exc_info=True)
        slot.outcome = Outcome.failed(f"probe error: {type(err).__name__}: {first_line(err)}")
    slot.latency_s = time.monotonic() - start
    slot.done.set()


def run_cycle(probes: Sequence[Probe], *, role: str, host: str, grace_s: float = GRACE_S,
              modules: Mapping[str, str] | None = None) -> Cycle:
    """Run every probe once, concurrently; return the cycle with one result per probe.
    `modules`: the module versions this cycle runs with, recorded in it."""
    started = clock.utcnow()
    start = time.monotonic()
    slots = [_Slot(p) for p in probes]
    for slot in slots:
        threading.Thread(target=_run, args=(slot,), name=f"probe-{slot.probe.name}",
                         daemon=True).start()
    results = []
    for slot in slots:
        deadline = start + slot.probe.timeout + grace_s
        finished = slot.done.wait(max(0.0, deadline - time.monotonic()))
        if finished and slot.outcome is not None:
            outcome, latency = slot.outcome, slot.latency_s
        else:
            outcome = Outcome.failed(f"no answer within {slot.probe.timeout:g} s (service hung?)")
            latency = time.monotonic() - start
        results.append(ProbeResult(
            probe=slot.probe.name, target=slot.probe.target, status=outcome.status,
            latency_s=latency, message=outcome.message, timestamp=clock.utcnow(), role=role, host=host))
    return Cycle(host=host, role=role, started=started, finished=clock.utcnow(), results=tuple(results),
                 modules=dict(modules or {}))
