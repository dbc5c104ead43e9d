"""Whether a reloaded service serves its new configuration yet, seen from the processes.

A reload returns before the service has switched: systemd's reload job for nginx ends as
soon as `nginx -s reload` has sent SIGHUP, while the master is still parsing the files and
starting new workers; until the old workers are told to quit, a request may still be
served under the old configuration. Apply waits here until that switch has happened.
"""

from __future__ import annotations

import time
from pathlib import Path

PROC = Path("/proc")
NGINX_WORKER = b"nginx: worker process"
SHUTTING_DOWN = b"is shutting down"
POLL_S = 0.05


def _children(parent: int, proc_root: Path = PROC) -> list[int]:
    found = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def nginx_workers(master: int, proc_root: Path = PROC) -> set[int]:
    """The master's workers that accept requests (not those finishing their last ones)."""
    workers = set()
    for pid in _children(master, proc_root):
        try:
            title = (proc_root / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(NGINX_WORKER) and SHUTTING_DOWN not in title:
            workers.add(pid)
    return workers


def wait_nginx(master: int, before: set[int], timeout: float) -> bool:
    """Wait until none of the workers that served `before` the reload accepts requests and a
    new one does; False if that did not happen within `timeout` s (the new configuration
    was not taken: nginx keeps the old one when it cannot load the new)."""
    deadline = time.monotonic() + timeout
    while True:
        now = nginx_workers(master)
        if now and not now & before:
            # A worker changes its title just before it closes its listening sockets.
            time.sleep(POLL_S)
            return True
        if time.monotonic() >= deadline or not (PROC / str(master)).exists():
            return False
        time.sleep(POLL_S)
