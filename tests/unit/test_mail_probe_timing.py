"""The mail probe against an SMTP server on loopback that greets late, as a cold smtpd on a
loaded box does: a greeting within the probe's budget is waited for (the probe then fails
further on, at IMAP, where nothing listens); one later than the budget fails the submission."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from atlas_services.verify.probes.mail import MailProbe
from testkit.net import free_port

TIMEOUT_S = 3.0


@pytest.fixture
def late_smtp(request: pytest.FixtureRequest) -> Iterator[int]:
    delay: float = request.param
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                if stop.wait(delay):
                    return
                conn.sendall(b"220 late ESMTP\r\n")
                conn.settimeout(TIMEOUT_S)
                for line in client_lines(conn):
                    verb = line[:4].upper()
                    if verb == b"DATA":
                        conn.sendall(b"354 go on\r\n")
                    elif line == b".\r\n":
                        conn.sendall(b"250 queued\r\n")
                    elif verb == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        break
                    elif verb in (b"EHLO", b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                        conn.sendall(b"250 ok\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def client_lines(conn: socket.socket) -> Iterator[bytes]:
    """The lines a client sends, until it closes or is quiet for the socket's timeout."""
    with conn.makefile("rb") as stream:
        try:
            yield from iter(stream.readline, b"")
        except OSError:
            return


def probe(smtp_port: int) -> MailProbe:
    return MailProbe("127.0.0.1", smtp_port, free_port(), "atlas-verifier@shop.test", "pw",
                     timeout=TIMEOUT_S)


@pytest.mark.parametrize("late_smtp", [TIMEOUT_S / 2], indirect=True)
def test_a_greeting_that_comes_late_but_within_the_budget_is_waited_for(late_smtp: int) -> None:
    started = time.monotonic()
    outcome = probe(late_smtp).check()
    assert "IMAP connect failed" in outcome.message, outcome.message
    assert time.monotonic() - started < TIMEOUT_S + 1


@pytest.mark.parametrize("late_smtp", [TIMEOUT_S * 2], indirect=True)
def test_a_greeting_later_than_the_budget_fails_the_submission(late_smtp: int) -> None:
    started = time.monotonic()
    outcome = probe(late_smtp).check()
    assert "SMTP submit failed" in outcome.message, outcome.message
    assert time.monotonic() - started < TIMEOUT_S + 1
