"""The sync key on the primary: it opens nothing but `sync-serve`, which answers only its read
verbs. Every attack here is made through the real sshd with the real key."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from atlas_services.errors import EXIT_REFUSED
from atlas_services.peer.client import TRANSPORT_EXIT, ssh_argv
from testkit.net import free_port
from testkit.syncpair import Pair

# Shell commands, other verbs and argument injection: each must be refused by sync-serve.
ATTACKS = [
    "sh",
    "bash -i",
    "id",
    "ls /",
    "cat /etc/shadow",
    "rm -rf /srv/atlas",
    "list; id",
    "list && id",
    "list | id",
    "list\nid",
    "hello`id`",
    "send-config 1 $(id)",
    "send-config 1 ${IFS}",
    "send-config ../1",
    "send-config 1/../../etc",
    "send-config 1 2 3",
    "send-config 0",
    "send-config -1",
    "send-config 01",
    "send-config 99999999999",
    "send-config",
    "send-module demo ../../../etc",
    "send-module demo selected",
    "send-module demo 1.0 --config-store",
    "send-module ../demo 1.0",
    "send-module Demo 1.0",
    "list --config-store /",
    "manifest --system-root /tmp",
    "results x",
    "hello  ",
    " hello",
    "HELLO",
    "scp -t /tmp",
    "rsync --server -e.Lsfx . /tmp",
    "git-upload-pack '/srv'",
    "receive-config 1",
    "delete-config 1",
    "select demo 1.0",
    "x" * 300,
]


@pytest.mark.parametrize("request_text", ATTACKS, ids=lambda r: repr(r[:40]))
def test_sync_serve_refuses_anything_but_its_read_verbs(shared_pair: Pair, request_text: str) -> None:
    pair = shared_pair
    before = sorted(p.name for p in pair.primary.config.generations_dir.iterdir())
    result = pair.ssh(request_text)
    assert result.returncode == EXIT_REFUSED, result
    assert b"refused" in result.stderr
    assert result.stdout == b""
    assert sorted(p.name for p in pair.primary.config.generations_dir.iterdir()) == before


def test_the_sync_key_opens_no_shell(shared_pair: Pair) -> None:
    pair = shared_pair
    result = pair.ssh("")  # ssh without a command asks for a shell
    assert result.returncode == EXIT_REFUSED
    assert b"cannot open a shell" in result.stderr


def test_the_sync_key_opens_no_subsystem(shared_pair: Pair) -> None:
    pair = shared_pair
    result = pair.ssh("sftp", extra=["-s"])  # the forced command runs instead, and refuses
    assert result.returncode == EXIT_REFUSED
    assert result.stdout == b""


def forwarding_argv(pair: Pair, forward: list[str]) -> list[str]:
    """ssh with the sync key asking only for a forwarding (-N: no command), without the
    client's own ClearAllForwardings, as an attacker would."""
    argv = ssh_argv(pair.target, [""])[:-1]
    at = argv.index("ClearAllForwardings=yes")
    return [argv[0], "-N", *forward, *argv[1:at - 1], *argv[at + 1:]]


def test_the_sync_key_cannot_forward_a_remote_port(shared_pair: Pair) -> None:
    pair = shared_pair
    argv = forwarding_argv(pair, ["-o", "ExitOnForwardFailure=yes",
                                  "-R", f"127.0.0.1:{free_port()}:127.0.0.1:{pair.sshd.port}"])
    result = subprocess.run(argv, capture_output=True, check=False, timeout=20)
    assert result.returncode == TRANSPORT_EXIT
    assert b"forwarding failed" in result.stderr


def test_the_sync_key_cannot_forward_a_local_port(shared_pair: Pair) -> None:
    pair = shared_pair
    port = free_port()
    argv = forwarding_argv(pair, ["-L", f"127.0.0.1:{port}:127.0.0.1:{pair.sshd.port}"])
    tunnel = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "ssh -L never listened"
                time.sleep(0.1)
        with connection:
            # Forwarded, this would read the test sshd's banner; refused, the channel closes.
            assert connection.recv(100) == b""
    finally:
        tunnel.kill()
        tunnel.wait()


def test_a_generation_that_does_not_exist_is_refused(shared_pair: Pair) -> None:
    pair = shared_pair
    result = pair.ssh("send-config 7")
    assert result.returncode == EXIT_REFUSED
    assert b"generation 7 does not exist" in result.stderr


def test_hello_names_the_primary(shared_pair: Pair) -> None:
    pair = shared_pair
    result = pair.ssh("hello")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["protocol"] == 1 and reply["role"] == "primary"
    assert reply["cluster_id"] == json.loads((pair.cluster_dir / "cluster.json").read_text())["cluster_id"]


def test_the_key_is_refused_from_another_address(pair: Pair) -> None:
    pair.authorize(sources=["10.77.0.11"])  # what the box writes: the secondary's address only
    result = pair.ssh("hello")
    assert result.returncode == TRANSPORT_EXIT
    assert b"Permission denied" in result.stderr
