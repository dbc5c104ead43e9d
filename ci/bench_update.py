#!/usr/bin/python3
"""Benchmarks of updates on real btrfs (two loop devices), the secondary pulling through a
private sshd on 127.0.0.1 and answering the primary through its own; prints medians.

    sudo ci/bench_update.py [--runs N]

Figures (issue 9): the time from `atlas update stage` to the secondary running the version
(stage, then an explicit `atlas sync --now` on the secondary), `atlas update promote`, and
`atlas update rollback` on each server (goal: under 1 s each, not counting the wait for the
secondary's sync timer): on the primary the command itself; on the secondary the sync that
carries it, and the moment within that sync at which the previous version is selected.
Commands are timed as an administrator runs them (a new `atlas` process each) and, apart,
the step alone inside one process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atlas_services.update import primary  # noqa: E402
from testkit.bundles import make_bundle  # noqa: E402
from testkit.syncpair import Unavailable, check_available  # noqa: E402
from testkit.updatepair import UpdatePair, make_update_pair  # noqa: E402

GREEN_CYCLES = 3


def report(name: str, samples: list[float], goal: str = "") -> None:
    print(f"{name:<72} median {statistics.median(samples):8.1f} ms  "
          f"(min {min(samples):.1f}, max {max(samples):.1f}, n={len(samples)})"
          + (f"  goal {goal}" if goal else ""), flush=True)


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return ms_since(start)


def cli(up: UpdatePair, *args: str) -> float:
    start = time.perf_counter()
    result = up.cli(*args)
    elapsed = ms_since(start)
    assert result.returncode == 0, result.stderr
    return elapsed


def sync_until_selected(up: UpdatePair, version: str) -> tuple[float, float]:
    """`atlas sync --now` on the secondary; returns (ms until it selected `version`, ms for
    the whole command)."""
    selected_link = up.pair.secondary.root / "modules/demo/selected"
    seen: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if selected_link.readlink().name == version:
                seen.append(time.perf_counter())
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    start = time.perf_counter()
    watcher.start()
    result = up.pair.cli("--now")
    total = ms_since(start)
    done.set()
    watcher.join()
    assert result.returncode == 0, result.stdout + result.stderr
    assert seen, f"the secondary did not select {version}"
    return (seen[0] - start) * 1000, total


def bench(up: UpdatePair, runs: int, scratch: Path) -> None:
    up.set_settings(promote_green_cycles=GREEN_CYCLES)
    layout = up.primary_layout
    stage_cli, stage_sync, stage_total = [], [], []
    promote_cli, promote_step = [], []
    rollback_cli, rollback_step, rollback_sel, rollback_sync = [], [], [], []
    trial_rollback_cli, trial_rollback_sel = [], []
    for n in range(runs):
        version = f"{n + 2}.0"
        archive = make_bundle(scratch / f"r{n}", version)
        # stage → the secondary runs it
        t_stage = cli(up, "stage", str(archive))
        t_selected, _ = sync_until_selected(up, version)
        stage_cli.append(t_stage)
        stage_sync.append(t_selected)
        stage_total.append(t_stage + t_selected)
        for _ in range(GREEN_CYCLES):
            up.cycle()
        # promote (asks the secondary through its door), once as a command, once as a step
        if n % 2 == 0:
            promote_cli.append(cli(up, "promote"))
        else:
            promote_step.append(timed(lambda: primary.promote(layout, secondary=up.secondary)))
        up.pair.sync()
        # rollback on the primary, then the secondary's sync that carries it
        if n % 2 == 0:
            rollback_cli.append(cli(up, "rollback"))
        else:
            rollback_step.append(timed(lambda: primary.rollback(layout)))
        selected_at, total = sync_until_selected(up, "1.0")
        rollback_sel.append(selected_at)
        rollback_sync.append(total)
        # a version on trial rolled back: the primary never ran it
        archive = make_bundle(scratch / f"t{n}", f"{n + 2}.5")
        cli(up, "stage", str(archive))
        sync_until_selected(up, f"{n + 2}.5")
        trial_rollback_cli.append(cli(up, "rollback"))
        trial_rollback_sel.append(sync_until_selected(up, "1.0")[0])
        print(f"run {n + 1}/{runs} done", flush=True)
    report("stage: `atlas update stage` on the primary", stage_cli)
    report("stage: the secondary's `atlas sync --now` until it selects the version", stage_sync)
    report("stage → the secondary runs the version (the two above)", stage_total)
    report("promote: `atlas update promote` (asks the secondary)", promote_cli)
    if promote_step:
        report("promote: the step alone (ask, decide, select, record)", promote_step)
    report("rollback, primary: `atlas update rollback`", rollback_cli, "< 1000 ms")
    if rollback_step:
        report("rollback, primary: the step alone (reselect, record)", rollback_step)
    report("rollback, secondary: `atlas sync --now` start until the previous one is selected", rollback_sel,
           "< 1000 ms")
    report("rollback, secondary: the whole `atlas sync --now` that carries it", rollback_sync)
    report("rollback of a trial: `atlas update rollback` on the primary", trial_rollback_cli)
    report("rollback of a trial, secondary: sync start until it is dropped", trial_rollback_sel)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    try:
        check_available()
    except Unavailable as err:
        print(f"bench_update: {err}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="atlas-bench-update-") as tmp, \
            make_update_pair(Path(tmp)) as up:
        bench(up, args.runs, Path(tmp) / "scratch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
