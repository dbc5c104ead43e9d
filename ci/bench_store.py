#!/usr/bin/python3
"""Benchmarks of the versioned store on a real btrfs (loop device); prints medians.

    sudo ci/bench_store.py [--runs N]

Goals (issue 5): commit of a 10,000-file tree < 1 s; module select / rollback < 100 ms;
`config log` with 1,000 generations flat and < 200 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from atlas_services.store.config import ConfigStore  # noqa: E402
from atlas_services.store.modules import ModuleStore  # noqa: E402
from testkit.bundles import make_bundle  # noqa: E402
from testkit.disks import loop_btrfs  # noqa: E402
from testkit.repo import TEST_PUB  # noqa: E402
from testkit.trees import box_root  # noqa: E402


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def report(name: str, samples: list[float], goal: str) -> None:
    print(f"{name:<48} median {statistics.median(samples):8.1f} ms  "
          f"(min {min(samples):.1f}, max {max(samples):.1f}, n={len(samples)})  goal {goal}", flush=True)


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "atlas_services", *args], check=True, cwd=REPO,
                   capture_output=True)


def bench_commit(root: Path, runs: int) -> None:
    default = root / "default"
    (default / "templates").mkdir(parents=True)
    (default / "atlas.json").write_text("{}\n")
    box = root / "commit"
    store = ConfigStore(box_root(box).config_store)
    store.init(default)
    for n in range(10_000):
        directory = store.work / "templates" / f"d{n // 100:03d}"
        directory.mkdir(exist_ok=True)
        (directory / f"f{n:05d}.conf").write_text(f"setting_{n} = {n}\n")
    store.commit("10,000 files")
    os.sync()
    api, command = [], []
    for n in range(runs):
        (store.work / "templates/d000/f00000.conf").write_text(f"changed {n}\n")
        os.sync()
        api.append(timed(lambda n=n: store.commit(f"api {n}")))  # type: ignore[misc]
        (store.work / "templates/d000/f00001.conf").write_text(f"changed {n}\n")
        os.sync()
        command.append(timed(lambda n=n: cli("--root", str(box), "config", "commit",  # type: ignore[misc]
                                             "-m", f"cli {n}")))
    report("config commit, 10,000-file tree (API)", api, "< 1000 ms")
    report("config commit, 10,000-file tree (atlas CLI)", command, "< 1000 ms")


def bench_select(root: Path, runs: int) -> None:
    box = root / "select"
    layout = box_root(box)
    store = ModuleStore(layout.module_store, layout.formats_file)
    for version in ("1.0.0", "2.0.0"):
        store.install(make_bundle(root, version, files=200), None, TEST_PUB)
    store.select("demo", "1.0.0")
    selects = [timed(lambda n=n: store.select("demo", "2.0.0" if n % 2 == 0 else "1.0.0"))  # type: ignore[misc]
               for n in range(runs * 4)]
    rollbacks = [timed(lambda: store.rollback("demo")) for _ in range(runs * 4)]
    common = ["--root", str(box), "module"]
    cli_rollbacks = [timed(lambda: cli(*common, "rollback", "demo")) for _ in range(runs)]
    report("module select (API)", selects, "< 100 ms")
    report("module rollback (API)", rollbacks, "< 100 ms")
    report("module rollback (atlas CLI, incl. Python start)", cli_rollbacks, "< 100 ms")


def bench_log(root: Path, runs: int) -> None:
    default = root / "default-log"
    (default / "templates").mkdir(parents=True)
    (default / "atlas.json").write_text("{}\n")
    box = root / "log"
    store = ConfigStore(box_root(box).config_store)
    store.init(default)
    for size in (10, 100, 1000):
        while len(store.generations()) < size:
            (store.work / "note.txt").write_text(str(len(store.generations())))
            store.commit("note")
        api = [timed(store.log) for _ in range(runs)]
        command = [timed(lambda: cli("--root", str(box), "config", "log")) for _ in range(runs)]
        report(f"config log, {size} generations (API)", api, "flat, < 200 ms")
        report(f"config log, {size} generations (atlas CLI)", command, "flat, < 200 ms")
    rollback = []
    for n in range(runs):
        target = 2 + n
        rollback.append(timed(lambda t=target: store.rollback(t)))  # type: ignore[misc]
    report("config rollback, 1,000 generations (API)", rollback, "< 100 ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="samples per figure (default 5)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_store: needs root (loop devices, mount)", file=sys.stderr)
        return 2
    with loop_btrfs("atlas-bench", "2G") as root:
        bench_commit(root, args.runs)
        bench_select(root, args.runs)
        bench_log(root, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
