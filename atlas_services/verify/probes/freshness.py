"""sync: on a secondary, the last sync is fresh and nothing drifted incompatibly from the
primary — judged by the Synchronizer's own rule (sync.state.freshness), as `atlas sync
status` shows it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from atlas_services import clock
from atlas_services.errors import AtlasError
from atlas_services.results import Outcome
from atlas_services.roles import Role
from atlas_services.sync import state as sync_state
from atlas_services.verify.probes import Probe


def sync_outcome(role: Role, state: sync_state.SyncState, now: dt.datetime,
                 stale_after_s: int) -> Outcome:
    """Freshness and drift of the secondary's copy of the primary (pure)."""
    if role is not Role.SECONDARY:
        return Outcome.ok(f"not a secondary ({role}): nothing to sync from")
    return sync_state.freshness(state, now, stale_after_s)


@dataclass
class SyncProbe(Probe):
    """*On a secondary, the last sync is fresh and nothing drifted incompatibly from the primary.*"""

    role: Role
    stale_after_s: int
    state_file: Path
    now: Callable[[], dt.datetime] = field(default=clock.utcnow)
    timeout: float = 2.0
    name: str = "sync"

    @property
    def target(self) -> str:
        return str(self.state_file)

    def check(self) -> Outcome:
        try:
            state = sync_state.read(self.state_file)
        except AtlasError as err:
            return Outcome.failed(f"sync state unreadable: {err.what}")
        return sync_outcome(self.role, state, self.now(), self.stale_after_s)
