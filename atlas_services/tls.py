"""The role's TLS certificate on the data set: a self-signed one when none was provided."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from atlas_services import fsutil

# cryptography is imported where a certificate is made or read, not here: loading it takes
# most of a second on a slow or emulated CPU, and the role service, which only checks that
# a certificate exists, sits on the boot's critical path.

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALIDITY = dt.timedelta(days=3650)


def make_self_signed(hostname: str, *, not_before: dt.datetime,
                     not_after: dt.datetime) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for `hostname`, valid in the window given."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def install(directory: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Write a certificate and key; the key first, so a cert never points at a missing key."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    fsutil.write_atomic(directory / KEY_FILE, key_pem, 0o600)
    fsutil.write_atomic(directory / CERT_FILE, cert_pem, 0o644)


def ensure_self_signed(directory: Path, hostname: str) -> bool:
    """Make a self-signed certificate for `hostname` unless one is there. True if made.

    An administrator's own certificate (same file names) is never replaced.
    """
    if (directory / CERT_FILE).exists() and (directory / KEY_FILE).exists():
        return False
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert, key = make_self_signed(hostname, not_before=now - dt.timedelta(days=1),
                                 not_after=now + VALIDITY)
    install(directory, cert, key)
    return True


def validity(der: bytes) -> tuple[dt.datetime, dt.datetime]:
    """(not before, not after) of a DER certificate, as aware UTC datetimes."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return (cert.not_valid_before.replace(tzinfo=dt.UTC),
            cert.not_valid_after.replace(tzinfo=dt.UTC))
