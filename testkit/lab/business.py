"""Business data the failover drill writes and reads back through real clients from the
host: a web page (SFTP up, HTTP down), a mail (SMTP in, IMAP out), a table row
(PostgreSQL protocol) and a file on a user share (SMB). None of it is the Verifier's.
"""

from __future__ import annotations

import imaplib
import smtplib
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import psycopg2

from atlas_services import paths, proc
from atlas_services.paths import Layout
from testkit.lab.guestprov import DOMAIN
from testkit.lab.machine import Machine
from testkit.lab.pace import PACE

OWNER = "owner"
MAIL_ADDRESS = f"{OWNER}@{DOMAIN}"
# A business account needs the same Unix id on both servers: its files on the share
# keep their owner when the data set moves.
OWNER_UID = 2001
DB_NAME = "shop"
PAGE = "drill.html"
WEB_ROOT = Layout().data_root / paths.WEB_ROOT
CLIENT_BASE_S = 30.0  # one SMTP, IMAP, HTTP, SQL or SMB operation, on the reference machine


def client_timeout() -> float:
    """How long one client operation may take against a lab guest, sized from the run's pace."""
    return PACE.limit(CLIENT_BASE_S)


@dataclass
class BusinessData:
    """What was written, to be found again on whichever server is primary."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    password: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def page(self) -> str:
        return f"<!doctype html><title>drill</title><p>order {self.tag}</p>\n"

    @property
    def subject(self) -> str:
        return f"order {self.tag}"

    @property
    def file_content(self) -> bytes:
        return f"invoice {self.tag}\n".encode()


def create_owner_account(machine: Machine) -> None:
    """The Unix account, on each server (an administrator's step on both boxes)."""
    machine.ssh(f"id -u {OWNER} >/dev/null 2>&1 || useradd --uid {OWNER_UID} --user-group "
                f"--no-create-home --shell /usr/sbin/nologin {OWNER}")


def create_business_accounts(primary: Machine, data: BusinessData) -> None:
    """Mail user, database and share account for the owner, on the primary's data set."""
    pw = data.password
    primary.ssh(
        "set -e; "
        f"hash=$(doveadm pw -s SSHA512 -p {pw}); "
        f"grep -q '^{MAIL_ADDRESS}:' /srv/atlas/mail/users || "
        f"echo \"{MAIL_ADDRESS}:$hash\" >> /srv/atlas/mail/users; "
        f"grep -q '^{MAIL_ADDRESS} ' /srv/atlas/mail/recipients || "
        f"echo '{MAIL_ADDRESS} OK' >> /srv/atlas/mail/recipients; "
        "postmap hash:/srv/atlas/mail/recipients; "
        f"runuser -u postgres -- psql -q -c \"CREATE ROLE {OWNER} LOGIN PASSWORD '{pw}'\"; "
        f"runuser -u postgres -- psql -q -c \"CREATE DATABASE {DB_NAME} OWNER {OWNER}\"; "
        f"chgrp {OWNER} /srv/atlas/shares/files; "
        f"printf '%s\\n%s\\n' {pw} {pw} | smbpasswd -s -a {OWNER}")
    # dovecot re-reads its passwd-file at most once a second.
    primary.ssh("sleep 1.1")


def host_port(machine: Machine, service: str) -> int:
    return machine.ports[service]


def write_all(primary: Machine, data: BusinessData) -> None:
    upload_page(primary, data)
    send_mail(primary, data)
    insert_row(primary, data)
    put_file(primary, data)


def upload_page(machine: Machine, data: BusinessData) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".html") as page:
        page.write(data.page)
        page.flush()
        proc.run(["scp", "-q", "-i", str(machine.lab.key), "-P", str(machine.ssh_port),
                  "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                  "-o", "LogLevel=ERROR", page.name, f"root@127.0.0.1:{WEB_ROOT / PAGE}"])
    machine.ssh(f"chmod 0644 {WEB_ROOT / PAGE}")


def send_mail(machine: Machine, data: BusinessData) -> None:
    message = EmailMessage()
    message["From"] = f"customer@{DOMAIN}"
    message["To"] = MAIL_ADDRESS
    message["Subject"] = data.subject
    message.set_content(f"Please ship order {data.tag}.\n")
    with smtplib.SMTP("127.0.0.1", host_port(machine, "smtp"), timeout=client_timeout()) as smtp:
        smtp.send_message(message)


def insert_row(machine: Machine, data: BusinessData) -> None:
    with _db(machine, data) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS orders (tag text PRIMARY KEY)")
        cur.execute("INSERT INTO orders VALUES (%s)", (data.tag,))


def put_file(machine: Machine, data: BusinessData) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "invoice.txt"
        local.write_bytes(data.file_content)
        _smb(machine, data, f"put {local} invoice-{data.tag}.txt")


# ---------------------------------------------------------------- reading back


def read_page(machine: Machine) -> str:
    url = f"http://127.0.0.1:{host_port(machine, 'http')}/{PAGE}"
    with urllib.request.urlopen(url, timeout=client_timeout()) as response:
        body: bytes = response.read()
    return body.decode()


def mail_subjects(machine: Machine, data: BusinessData) -> list[str]:
    with imaplib.IMAP4("127.0.0.1", host_port(machine, "imap"), timeout=client_timeout()) as imap:
        imap.starttls()
        imap.login(MAIL_ADDRESS, data.password)
        imap.select("INBOX", readonly=True)
        _, ids = imap.search(None, "ALL")
        subjects = []
        for num in ids[0].split():
            _, parts = imap.fetch(num, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            header = parts[0][1].decode() if isinstance(parts[0], tuple) else ""
            subjects.append(header.partition(":")[2].strip())
        return subjects


def row_present(machine: Machine, data: BusinessData) -> bool:
    with _db(machine, data) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders WHERE tag = %s", (data.tag,))
        row = cur.fetchone()
        return bool(row and row[0] == 1)


def read_file(machine: Machine, data: BusinessData) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "back.txt"
        _smb(machine, data, f"get invoice-{data.tag}.txt {local}")
        return local.read_bytes()


def _db(machine: Machine, data: BusinessData) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(host="127.0.0.1", port=host_port(machine, "postgresql"), user=OWNER,
                            password=data.password, dbname=DB_NAME, connect_timeout=int(client_timeout()))
    conn.autocommit = True
    return conn


def _smb(machine: Machine, data: BusinessData, command: str) -> None:
    with tempfile.NamedTemporaryFile("w") as auth:
        auth.write(f"username = {OWNER}\npassword = {data.password}\n")
        auth.flush()
        proc.run(["smbclient", "//127.0.0.1/files", "-p", str(host_port(machine, "smb")),
                  "-A", auth.name, "-m", "SMB3", "-c", command], timeout=client_timeout())

