"""The verifier's identity: fixed account names, and its credentials file on the data set.

The credentials live with the data set (`.atlas/secrets/verifier.json`, mode 0600), like
the accounts they open (mail users file, PostgreSQL cluster, SMB passdb): whichever
server the data set is in, its verifier can log in to its services. atlas-verify.service
runs as the verifier's own user, which cannot read the secrets: systemd hands it this one
file as a credential (LoadCredential=, $CREDENTIALS_DIRECTORY), and `load` prefers that.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from atlas_services import fsutil, paths, untrusted
from atlas_services.errors import AtlasError, Refused

ACCOUNT_FORMAT = 1
# One name per kind of account; PostgreSQL's without a hyphen so it needs no quoting.
UNIX_USER = "atlas-verifier"  # also the SMB user and the mailbox's local part
# Fixed, as in the image's sysusers.d/atlas.conf: files on a data set keep their owner
# when the data set moves to the other server.
UNIX_ID = 950
SHARE = "atlas-verifier"
DB_ROLE = "atlas_verifier"
DB_NAME = "atlas_verifier"
DB_SCHEMA = "atlas_verifier"
DB_TABLE = "canary"
CANARY_PATH = "/atlas-verifier/canary.html"  # URL path; nginx maps it to paths.VERIFIER_WEB
CANARY_FILE = "canary.html"
SETUP_HINT = "run 'atlas verify setup' to create the verifier's accounts"


def account_file(data_root: Path) -> Path:
    return data_root / paths.DATASET_META / paths.SECRETS_DIR / paths.VERIFIER_ACCOUNT


def new_password() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class VerifierAccount:
    """Credentials of the verifier's accounts, and what its canary page must contain."""

    mail_address: str
    mail_password: str
    db_password: str
    smb_password: str
    canary_token: str

    @classmethod
    def create(cls, domain: str) -> VerifierAccount:
        return cls(mail_address=f"{UNIX_USER}@{domain}", mail_password=new_password(),
                   db_password=new_password(), smb_password=new_password(),
                   canary_token=secrets.token_hex(16))

    @property
    def canary_content(self) -> bytes:
        return (f"<!doctype html>\n<title>ATLAS verifier canary</title>\n"
                f"<p>ATLAS verifier canary {self.canary_token}</p>\n").encode()

    @property
    def canary_sha256(self) -> str:
        return hashlib.sha256(self.canary_content).hexdigest()

    @classmethod
    def from_json(cls, data: Any, source: str = "verifier account") -> VerifierAccount:
        if not isinstance(data, dict):
            raise Refused(f"{source}: expected a JSON object")
        if data.get("format") != ACCOUNT_FORMAT:
            raise Refused(f"{source}: format {data.get('format')!r} is not {ACCOUNT_FORMAT}")
        values = {}
        for f in fields(cls):
            value = data.get(f.name)
            if not isinstance(value, str) or not value:
                raise Refused(f"{source}: {f.name} must be a non-empty string")
            values[f.name] = value
        if "@" not in values["mail_address"]:
            raise Refused(f"{source}: mail_address must be an address")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {"format": ACCOUNT_FORMAT, **asdict(self)}


def load(data_root: Path) -> VerifierAccount:
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    handed = Path(credentials) / paths.VERIFIER_ACCOUNT if credentials else None
    path = handed if handed is not None and handed.is_file() else account_file(data_root)
    try:
        data = untrusted.load_json(path)
    except FileNotFoundError:
        raise AtlasError(f"the verifier account is missing ({path})", SETUP_HINT) from None
    except (OSError, ValueError) as err:
        raise AtlasError(f"the verifier account is unreadable ({path}): {err}", SETUP_HINT) from None
    return VerifierAccount.from_json(data, str(path))


def save(data_root: Path, account: VerifierAccount) -> None:
    path = account_file(data_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fsutil.write_atomic(path, json.dumps(account.to_json(), indent=2) + "\n", 0o600)
