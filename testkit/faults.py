"""The fault catalogue: what can go wrong with a server's business services, each fault a
context manager that breaks one thing on a ServiceStack and repairs it afterwards, named
with the Verifier probe that must notice it."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from atlas_services import daemons, paths, proc, tls
from testkit.services import ServiceStack, wait_for


@dataclass(frozen=True)
class Fault:
    """Something that breaks one service the way real life does, and the probe that must see it."""

    name: str
    probe: str
    inject: Callable[[ServiceStack], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def stopped(stack: ServiceStack, service: str) -> Iterator[None]:
    stack.stop(service)
    try:
        yield
    finally:
        stack.start(service)


@contextlib.contextmanager
def hung(stack: ServiceStack, service: str) -> Iterator[None]:
    stack.pause(service)
    try:
        yield
    finally:
        stack.resume(service)


@contextlib.contextmanager
def canary_changed(stack: ServiceStack) -> Iterator[None]:
    canary = stack.data_root / paths.VERIFIER_WEB / "canary.html"
    canary.write_text("<p>defaced</p>\n")
    try:
        yield
    finally:
        stack.setup_verifier()  # rewrites the canary it owns


@contextlib.contextmanager
def mail_never_delivered(stack: ServiceStack) -> Iterator[None]:
    """postfix keeps accepting mail, but its way to dovecot (the LMTP socket) is gone:
    every message waits in the queue while IMAP still answers."""
    socket_path = stack.run_root / "var/spool/postfix/private/dovecot-lmtp"
    hidden = socket_path.with_name("dovecot-lmtp.moved")
    socket_path.rename(hidden)
    try:
        yield
    finally:
        hidden.rename(socket_path)
        proc.run(["postqueue", "-c", stack.postfix_dir, "-f"])


@contextlib.contextmanager
def db_password_changed(stack: ServiceStack) -> Iterator[None]:
    conn = stack.admin_db()
    with conn.cursor() as cur:
        cur.execute("ALTER ROLE atlas_verifier PASSWORD %s", ("someone-changed-it",))
    conn.close()
    try:
        yield
    finally:
        stack.setup_verifier()  # sets the verifier's password again


@contextlib.contextmanager
def share_read_only(stack: ServiceStack) -> Iterator[None]:
    share = stack.data_root / paths.VERIFIER_SHARE
    share.chmod(0o500)
    try:
        yield
    finally:
        stack.setup_verifier()  # puts the share's mode back


@contextlib.contextmanager
def disk_nearly_full(stack: ServiceStack, free_percent: float = 7.0) -> Iterator[None]:
    """Fill the data set until `free_percent` is left (below the 10% setting, above zero)."""
    filler = stack.data_root / "atlas-test-filler.bin"
    st = os.statvfs(stack.data_root)
    size = st.f_bavail * st.f_frsize - int(st.f_blocks * st.f_frsize * free_percent / 100)
    with filler.open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(size, 1))
    os.sync()
    try:
        yield
    finally:
        filler.unlink()
        os.sync()


def served_certificate(port: int) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port)))


@contextlib.contextmanager
def certificate_expired(stack: ServiceStack) -> Iterator[None]:
    cert_file, key_file = stack.tls_dir / tls.CERT_FILE, stack.tls_dir / tls.KEY_FILE
    original = cert_file.read_bytes(), key_file.read_bytes()
    now = dt.datetime.now(dt.UTC)
    expired = tls.make_self_signed(f"{stack.hostname}.{stack.domain}", not_before=now - dt.timedelta(days=30),
                                   not_after=now - dt.timedelta(days=1))

    def serve(cert: bytes, key: bytes) -> None:
        tls.install(stack.tls_dir, cert, key)
        stack.reload("nginx")
        wanted = x509.load_pem_x509_certificate(cert).fingerprint(hashes.SHA256())

        def serving() -> bool:
            return x509.load_der_x509_certificate(served_certificate(
                stack.ports["https"])).fingerprint(hashes.SHA256()) == wanted

        # After a reload the old workers may still take a connection or two: wait until
        # several in a row get the new certificate.
        wait_for("nginx serving the new certificate", lambda: all(serving() for _ in range(5)))

    try:
        serve(*expired)
        yield
    finally:
        serve(*original)


def _service_faults() -> list[Fault]:
    faults = []
    for service, probe in ((d.name, d.probe) for d in daemons.DAEMONS):
        faults.append(Fault(f"{service}-stopped", probe, functools.partial(stopped, service=service)))
        faults.append(Fault(f"{service}-hung", probe, functools.partial(hung, service=service)))
    return faults


FAULTS: tuple[Fault, ...] = (
    *_service_faults(),
    Fault("canary-changed", "web", canary_changed),
    Fault("mail-never-delivered", "mail", mail_never_delivered),
    Fault("db-password-changed", "database", db_password_changed),
    Fault("share-read-only", "files", share_read_only),
    Fault("disk-nearly-full", "disk-space", disk_nearly_full),
    Fault("certificate-expired", "web", certificate_expired),
)
