"""Choose QEMU's accelerator: KVM only where a quick probe proves it boots, else TCG."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

PROBE_SECONDS = 20


@functools.cache
def kvm_boots(kernel: Path) -> bool:
    """Boot the image's kernel under KVM without a root file system.

    A working KVM reaches the kernel's no-root panic within seconds (QEMU then exits,
    -no-reboot); on hosts with broken nested KVM the guest hangs and the probe times out.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "kvm", "-cpu", "host",
            "-m", "256", "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"]
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=PROBE_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return False
    return b"Kernel panic" in result.stdout or b"VFS: Unable to mount root" in result.stdout


def accelerator(kernel: Path) -> list[str]:
    """QEMU arguments for the fastest accelerator that works here (ATLAS_LAB_ACCEL overrides)."""
    choice = os.environ.get("ATLAS_LAB_ACCEL", "auto")
    if choice == "kvm" or (choice == "auto" and kvm_boots(kernel)):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]
