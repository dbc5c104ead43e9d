"""mail: submit a tagged message over SMTP to the verifier's mailbox, fetch it over IMAP, delete it."""

from __future__ import annotations

import contextlib
import imaplib
import smtplib
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

from atlas_services.results import Outcome
from atlas_services.verify.probes import Probe, first_line

TAG_HEADER = "X-Atlas-Verify"
POLL_S = 0.1


class _Failed(Exception):
    """A step failed; its message is the probe's."""


# The share of the probe's time the SMTP submission may take (each socket step).
SUBMIT_SHARE = 2 / 3


@dataclass
class MailProbe(Probe):
    """*A message sent to the verifier's address over SMTP arrives in its IMAP inbox.*"""

    host: str
    smtp_port: int
    imap_port: int
    address: str
    password: str
    timeout: float = 10.0
    name: str = "mail"

    @property
    def target(self) -> str:
        return f"{self.address} via {self.host}:{self.smtp_port} → :{self.imap_port}"

    def _message(self, tag: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.address
        msg["To"] = self.address
        msg["Subject"] = f"ATLAS verifier {tag}"
        msg["Message-ID"] = make_msgid("atlas-verify", self.address.partition("@")[2] or None)
        msg[TAG_HEADER] = tag
        msg.set_content("Sent by the ATLAS verifier to itself; it deletes this message.\n")
        return msg

    def _submit(self, tag: str, step_timeout: float) -> None:
        try:
            with smtplib.SMTP(self.host, self.smtp_port, timeout=step_timeout) as smtp:
                smtp.send_message(self._message(tag))
        except smtplib.SMTPRecipientsRefused as err:
            code, text = next(iter(err.recipients.values()))
            raise _Failed(f"SMTP refused the verifier's address: {code} {text.decode(errors='replace')}") \
                from None
        except (OSError, smtplib.SMTPException) as err:
            raise _Failed(f"SMTP submit failed: {first_line(err)}") from None

    def _login(self, step_timeout: float) -> imaplib.IMAP4:
        try:
            imap = imaplib.IMAP4(self.host, self.imap_port, timeout=step_timeout)
        except (OSError, imaplib.IMAP4.error) as err:
            raise _Failed(f"IMAP connect failed: {first_line(err)}") from None
        try:
            imap.login(self.address, self.password)
            imap.select("INBOX")
        except (OSError, imaplib.IMAP4.error) as err:
            imap.shutdown()
            raise _Failed(f"IMAP login failed: {first_line(err)}") from None
        return imap

    @staticmethod
    def _search(imap: imaplib.IMAP4, tag: str) -> list[bytes]:
        imap.noop()  # lets the server tell us about newly delivered mail
        _, data = imap.uid("SEARCH", "HEADER", TAG_HEADER, tag)
        found: list[bytes] = data[0].split() if data and data[0] else []
        return found

    @staticmethod
    def _delete_tagged(imap: imaplib.IMAP4) -> None:
        # Every message the verifier ever sent itself, including late arrivals from
        # earlier failed cycles: its mailbox holds nothing else worth keeping.
        _, data = imap.uid("SEARCH", "HEADER", TAG_HEADER, '""')
        uids = data[0].split() if data and data[0] else []
        if uids:
            imap.uid("STORE", b",".join(uids).decode(), "+FLAGS.SILENT", r"(\Deleted)")
            imap.expunge()

    @staticmethod
    def _close(imap: imaplib.IMAP4) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            imap.logout()

    def _fetch_back(self, imap: imaplib.IMAP4, tag: str, sent: float, deadline: float) -> float:
        try:
            while not self._search(imap, tag):
                if time.monotonic() + POLL_S > deadline:
                    raise _Failed(f"SMTP accepted the message but it did not arrive over IMAP "
                                  f"within {deadline - sent:.1f} s")
                time.sleep(POLL_S)
            delivered = time.monotonic() - sent
            self._delete_tagged(imap)
        except (OSError, imaplib.IMAP4.error) as err:
            raise _Failed(f"IMAP failed: {first_line(err)}") from None
        return delivered

    def check(self) -> Outcome:
        tag = uuid.uuid4().hex
        deadline = time.monotonic() + self.timeout
        try:
            # A cold smtpd on a loaded box can take seconds to greet: the submission may use
            # most of the budget; what is left is for the fetch, which is bounded by `deadline`.
            self._submit(tag, self.timeout * SUBMIT_SHARE)
            sent = time.monotonic()
            imap = self._login(max(0.5, deadline - sent))
            try:
                delivered = self._fetch_back(imap, tag, sent, deadline)
            finally:
                self._close(imap)
        except _Failed as failure:
            return Outcome.failed(str(failure))
        return Outcome.ok(f"delivered and fetched back in {delivered:.2f} s, deleted")
