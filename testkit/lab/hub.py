"""A private Ethernet segment for lab machines: a hub relaying QEMU datagram frames.

Each machine's NIC is `-netdev dgram` bound to DIR/<name>.sock with DIR/hub.sock as
its peer. The hub repeats every frame to every other machine's socket. Nothing here
touches a host interface. Creating DIR/cut isolates every machine (a network cut).

    python3 -m testkit.lab.hub DIR
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
from pathlib import Path

HUB_SOCKET = "hub.sock"
CUT_FILE = "cut"
MAX_FRAME = 65536


def peers(directory: Path, sender: str) -> list[str]:
    return [str(p) for p in directory.glob("*.sock")
            if p.name != HUB_SOCKET and str(p) != sender]


def serve(directory: Path) -> None:
    hub_path = directory / HUB_SOCKET
    hub_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(hub_path))
    cut = directory / CUT_FILE
    while True:
        frame, sender = sock.recvfrom(MAX_FRAME)
        if cut.exists():
            continue
        for peer in peers(directory, sender):
            try:
                sock.sendto(frame, peer)
            except OSError as err:
                # A machine that is powered off has no socket listening: its frames are lost,
                # as on a real wire.
                if err.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN, errno.ENOBUFS):
                    raise


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    serve(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
