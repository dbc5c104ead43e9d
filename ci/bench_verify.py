#!/usr/bin/python3
"""Benchmark the Verifier against real services on loopback (as root; ci/setup installs them).

    ci/bench_verify.py [--cycles N] [--repeat N] [--json FILE]

Prints medians: wall time of a full cycle (goal < 5 s), CPU seconds the verifier spends
per cycle (its own process plus the clients it runs, e.g. smbclient), and for each fault
the detection latency: from the moment the fault is in place to the end of the first
cycle that reports it (with the timer's period P on top in the worst case, so the goal
"detected within one period" holds when it is seen by the first cycle). Ends with what a
failing cycle looks like in `atlas status`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlas_services import __version__
from atlas_services.status import ServerStatus
from atlas_services.verify import report
from atlas_services.verify.cli import format_cycle
from testkit.faults import FAULTS
from testkit.services import ServiceStack, running_stack

CYCLE_GOAL_S = 5.0
MAX_CYCLES_TO_DETECT = 3


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_cycles(stack: ServiceStack, cycles: int) -> dict[str, Any]:
    stack.cycle()  # warm up: first connections, caches
    walls, cpus = [], []
    for _ in range(cycles):
        cpu0, t0 = cpu_seconds(), time.monotonic()
        c = stack.cycle()
        walls.append(time.monotonic() - t0)
        cpus.append(cpu_seconds() - cpu0)
        if c.problems():
            print(f"warning: a healthy cycle was not green: {c.summary()}", file=sys.stderr)
    return {"cycles": cycles, "cycle_s_median": statistics.median(walls), "cycle_s_max": max(walls),
            "cpu_s_median": statistics.median(cpus)}


def bench_fault(stack: ServiceStack, fault_name: str, repeat: int) -> dict[str, Any]:
    fault = next(f for f in FAULTS if f.name == fault_name)
    latencies, needed, others_green = [], [], True
    for _ in range(repeat):
        stack.ensure_running()
        stack.cycle()
        with fault.inject(stack):
            t0 = time.monotonic()
            for n in range(1, MAX_CYCLES_TO_DETECT + 1):
                c = stack.cycle()
                if not c.by_probe()[fault.probe].ok:
                    latencies.append(time.monotonic() - t0)
                    needed.append(n)
                    others_green &= all(r.ok for r in c.results if r.probe != fault.probe)
                    break
            else:
                needed.append(0)
        stack.ensure_running()
    return {"fault": fault.name, "probe": fault.probe,
            "detection_s_median": statistics.median(latencies) if latencies else None,
            "cycles_to_detect": max(needed) if all(needed) else None, "others_green": others_green}


def failing_status(stack: ServiceStack) -> str:
    """What `atlas status` shows after a failing cycle (the box's layout, under the stack's root)."""
    fault = next(f for f in FAULTS if f.name == "mail-never-delivered")
    with fault.inject(stack):
        c = stack.cycle()
    verify = report.summary_line(stack.layout)
    status = ServerStatus(hostname=c.host, atlas_version=__version__, image_id="atlas",
                          image_version=__version__, role=c.role, role_reason="", verify=verify)
    return f"$ atlas status\n{status.to_text()}\n\n$ atlas verify status\n{format_cycle(c, 'this server')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20, help="healthy cycles to time (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="injections per fault (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_verify: needs root (it starts the business services)", file=sys.stderr)
        return 2
    with running_stack() as stack:
        cycles = bench_cycles(stack, args.cycles)
        faults = [bench_fault(stack, f.name, args.repeat) for f in FAULTS]
        example = failing_status(stack)
    print(f"cycle time, median of {cycles['cycles']}: {cycles['cycle_s_median']:.3f} s "
          f"(max {cycles['cycle_s_max']:.3f} s; goal < {CYCLE_GOAL_S:g} s)")
    print(f"verifier CPU per cycle, median: {cycles['cpu_s_median']:.3f} s")
    print(f"detection latency per fault, median of {args.repeat} (probe timeout 5 s):")
    for f in faults:
        seen = f["detection_s_median"]
        latency = f"{seen:.2f} s" if seen is not None else "NOT DETECTED"
        print(f"  {f['fault']:<22} {f['probe']:<11} {latency:>9}  in cycle {f['cycles_to_detect']}"
              f"{'' if f['others_green'] else '  (other probes went red too)'}")
    print()
    print(example)
    if args.json:
        args.json.write_text(json.dumps({"cycles": cycles, "faults": faults}, indent=2) + "\n")
    ok = cycles["cycle_s_median"] < CYCLE_GOAL_S and all(f["cycles_to_detect"] == 1 for f in faults)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
