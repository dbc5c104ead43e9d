"""A pair for the update's tests and benchmark: the Synchronizer's pair (syncpair.py) plus the
secondary's own door — a second private sshd with the secondary's host keys that lets the
sync key in only for `sync-serve` on the secondary's stores, as role apply sets it up — so
the primary can ask the secondary about its trial. The secondary's Verifier cycles are real
cycles (run_cycle, published to its history) of real probes: free space on its store, and
its sync state with the drift report."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from atlas_services import cluster
from atlas_services.paths import Layout
from atlas_services.peer import keys
from atlas_services.results import Cycle
from atlas_services.roles import Role
from atlas_services.update import view
from atlas_services.verify import report
from atlas_services.verify.cycle import modules_in_use
from atlas_services.verify.probes.freshness import SyncProbe
from atlas_services.verify.probes.space import SpaceProbe
from atlas_services.verify.runner import run_cycle
from testkit.repo import REPO, TEST_PUB
from testkit.syncpair import Pair, PrivateSshd, make_pair, serve_command


@dataclass
class UpdatePair:
    pair: Pair
    door: PrivateSshd  # the secondary's sshd

    def __post_init__(self) -> None:
        for layout in (self.primary_layout, self.secondary_layout):
            layout.vendor_key.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(TEST_PUB, layout.vendor_key)
        self.set_settings(promote_green_cycles=3)

    def set_settings(self, **values: object) -> None:
        """The same settings on both servers (atlas.json, as `atlas config apply` renders it)."""
        for layout in (self.primary_layout, self.secondary_layout):
            layout.settings_file.parent.mkdir(parents=True, exist_ok=True)
            layout.settings_file.write_text(json.dumps(values) + "\n")

    @property
    def primary_layout(self) -> Layout:
        return self.pair.primary.layout

    @property
    def secondary_layout(self) -> Layout:
        return self.pair.secondary.layout

    @property
    def trial_layout(self) -> Layout:
        """Where the secondary keeps its trials (its own layout)."""
        return self.pair.secondary.layout

    @property
    def secondary(self) -> str:
        """Where the primary reaches the secondary's door (ADDRESS:PORT)."""
        return f"127.0.0.1:{self.door.port}"

    def door_command(self) -> str:
        return serve_command(self.pair.secondary.root)

    # ------------------------------------------------------------ the secondary's Verifier

    def cycle(self, *, green: bool = True) -> Cycle:
        """One Verifier cycle on the secondary, with the module versions it runs recorded:
        green when its store has room and its sync is fresh and without incompatible drift;
        red when told (a file system that is not there)."""
        s = self.pair.secondary.root
        layout = self.secondary_layout
        space = SpaceProbe([s if green else s / "unmounted"], 5)
        sync = SyncProbe(Role.SECONDARY, 900, layout.sync_state)
        result = run_cycle([space, sync], role=Role.SECONDARY, host="shop2",
                           modules=modules_in_use(layout))
        report.Publisher(layout=layout, journal=lambda entry: None,
                         update_lines=lambda role: view.lines(role, 3, layout)).publish(result)
        return result

    # ------------------------------------------------------------ the command line

    def cli(self, *args: str, on: str = "primary") -> subprocess.CompletedProcess[str]:
        """`atlas update ...` on the primary (or the secondary), pointed at its stores."""
        layout = self.primary_layout if on == "primary" else self.secondary_layout
        argv = [sys.executable, "-m", "atlas_services", "--root", str(layout.root), "update"]
        if on == "primary":
            argv += ["--secondary", self.secondary]
        return subprocess.run([*argv, *args], capture_output=True, text=True, check=False, cwd=REPO,
                              env=dict(os.environ), timeout=120)


@contextlib.contextmanager
def make_update_pair(tmp_path: Path) -> Iterator[UpdatePair]:
    run_dir = Path(tempfile.mkdtemp(prefix="atlas-test-door-", dir="/run"))
    try:
        with make_pair(tmp_path) as the_pair:
            door = PrivateSshd(run_dir, cluster.host_key_files(the_pair.cluster_dir, Role.SECONDARY))
            up = UpdatePair(the_pair, door)
            keys.install_sync_access(the_pair.secondary.layout, target_dir=door.authorized_keys_dir,
                                       command=up.door_command(), sources=["127.0.0.1"])
            door.start()
            try:
                yield up
            finally:
                door.stop()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
