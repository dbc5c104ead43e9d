"""files: write, read back and delete a canary file on the verifier's SMB share (smbclient)."""

from __future__ import annotations

import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from atlas_services import proc
from atlas_services.results import Outcome
from atlas_services.verify import account
from atlas_services.verify.probes import Probe, first_line

_NT_STATUS = re.compile(r"NT_STATUS_[A-Z_]+")


def smbclient_failure(output: str) -> str:
    """The most telling line of smbclient's output: the first one naming an NT_STATUS."""
    for line in output.splitlines():
        if _NT_STATUS.search(line):
            return line.strip()
    return first_line(output) if output.strip() else "smbclient failed without a message"


@dataclass
class FilesProbe(Probe):
    """*The verifier can put a file on its share, get the same bytes back, and delete it.*"""

    host: str
    port: int
    password: str
    timeout: float = 5.0
    name: str = "files"
    user: str = account.UNIX_USER
    share: str = account.SHARE

    @property
    def target(self) -> str:
        return f"//{self.host}/{self.share} (port {self.port})"

    def check(self) -> Outcome:
        remote = f"atlas-canary-{secrets.token_hex(8)}.txt"
        content = f"ATLAS verifier canary {secrets.token_hex(16)}\n".encode()
        with tempfile.TemporaryDirectory(prefix="atlas-verify-") as scratch:
            sent, received = Path(scratch) / "sent", Path(scratch) / "received"
            sent.write_bytes(content)
            argv = ["smbclient", f"//{self.host}/{self.share}", "-p", str(self.port),
                    "-U", self.user, "-m", "SMB3", "-c",
                    f"put {sent} {remote}; get {remote} {received}; del {remote}"]
            try:
                # The password travels in smbclient's environment, never on its command line.
                result = proc.run(argv, env={"PASSWD": self.password}, ok_codes=proc.ANY_EXIT,
                                  timeout=self.timeout)
            except proc.CommandFailed as err:
                return Outcome.failed(err.what)
            output = result.stdout + result.stderr
            if result.returncode != 0 or _NT_STATUS.search(output):
                return Outcome.failed(smbclient_failure(output))
            if not received.exists() or received.read_bytes() != content:
                return Outcome.failed("the file read back differs from the file written")
        return Outcome.ok("file written, read back and deleted")
