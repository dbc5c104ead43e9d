#!/usr/bin/python3
"""Benchmarks of the Synchronizer on real btrfs (two loop devices) through a private sshd on
127.0.0.1; prints medians.

    sudo ci/bench_sync.py [--runs N]

Figures (issue 6): full vs incremental stream bytes after one changed file in a
10,000-file configuration tree (goal: incremental < 1 % of full), and the wall time of a
sync that brings one changed file over (hello, list, one stream, results, manifest and
drift, apply), beside a sync with nothing new.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atlas_services.store import subvol  # noqa: E402
from testkit.syncpair import Pair, Unavailable, check_available, make_pair  # noqa: E402

FILES = 10_000


def report(name: str, samples: list[float], unit: str, goal: str = "") -> None:
    print(f"{name:<52} median {statistics.median(samples):10.1f} {unit}  "
          f"(min {min(samples):.1f}, max {max(samples):.1f}, n={len(samples)})"
          + (f"  goal {goal}" if goal else ""), flush=True)


def big_tree(pair: Pair) -> Path:
    static = pair.primary.config.work / "static"
    for n in range(FILES):
        directory = static / f"d{n // 100:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"page{n:05d}.html").write_text(f"<p>page {n} of the shop's site</p>\n" * 4)
    pair.primary.config.commit(f"{FILES:,} files")
    return static


def bench(pair: Pair, runs: int, scratch: Path) -> None:
    static = big_tree(pair)
    start = time.perf_counter()
    first = pair.sync()
    first_ms = (time.perf_counter() - start) * 1000
    assert first.status == "ok", first.last_error
    report(f"first sync, {FILES:,}-file tree (full streams)", [first_ms], "ms")
    full, incremental, walls, noop = [], [], [], []
    for n in range(runs):
        (static / "d047" / "page04711.html").write_text(f"<p>changed {n}</p>\n")
        generation = pair.primary.config.commit(f"change {n}").number
        os.sync()
        start = time.perf_counter()
        result = pair.sync()
        walls.append((time.perf_counter() - start) * 1000)
        assert result.status == "ok" and result.transfer.streams == 1, result.last_error
        incremental.append(float(result.transfer.bytes))
        stream = scratch / f"full-{n}.stream"
        subvol.send_to_file(pair.primary.config.path(generation), stream)
        full.append(float(stream.stat().st_size))
        stream.unlink()
        start = time.perf_counter()
        assert pair.sync().status == "ok"
        noop.append((time.perf_counter() - start) * 1000)
    report(f"full stream of a {FILES:,}-file generation", full, "bytes")
    report("incremental stream, one changed file", incremental, "bytes",
           f"< 1 % of full ({statistics.median(full) / 100:.0f} bytes)")
    ratio = 100 * statistics.median(incremental) / statistics.median(full)
    print(f"{'incremental / full':<52} {ratio:.3f} %")
    report("sync wall time, one changed file", walls, "ms")
    report("sync wall time, nothing new", noop, "ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    try:
        check_available()
    except Unavailable as err:
        print(f"bench_sync: {err}", file=sys.stderr)
        return 2
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (timings vary with it)")
    with tempfile.TemporaryDirectory(prefix="atlas-bench-sync-") as tmp, make_pair(Path(tmp)) as pair:
        bench(pair, args.runs, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
