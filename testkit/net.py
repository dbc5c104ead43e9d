"""Free loopback ports for the private servers tests start (sshd, the service stack, QEMU's
forwards): the kernel picks them."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """`count` different free ports on 127.0.0.1 (each held open until all are chosen)."""
    held = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]
