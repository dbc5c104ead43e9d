"""The Verifier runs as its own unprivileged user (atlas-verify.service: User=atlas-verifier):
what it reads as that user works — the RAID state from sysfs on the real raid1 data set, its
credentials as systemd hands them (LoadCredential=) — and the data set's secrets do not."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from atlas_services.verify import account
from testkit.repo import REPO
from testkit.services import ServiceStack

SCRIPT = """
import json, sys
from pathlib import Path
from atlas_services.errors import AtlasError
from atlas_services.verify import account
from atlas_services.verify.probes.raid import RaidProbe
data_root = Path(sys.argv[1])
outcome = RaidProbe(data_root).check()
try:
    acct = account.load(data_root)
    loaded = bool(acct.canary_token)
except AtlasError as err:
    loaded = str(err)
print(json.dumps({"raid": [str(outcome.status), outcome.message], "account": loaded}))
"""


def as_verifier(data_root: Path, credentials: Path | None) -> dict[str, object]:
    env = {"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1"}
    if credentials is not None:
        env["CREDENTIALS_DIRECTORY"] = str(credentials)
    result = subprocess.run(["setpriv", f"--reuid={account.UNIX_USER}", f"--regid={account.UNIX_USER}",
                             "--clear-groups", "--", sys.executable, "-c", SCRIPT, str(data_root)],
                            cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    reply: dict[str, object] = json.loads(result.stdout)
    return reply


def test_the_verifier_reads_the_raid_state_and_its_credentials_as_its_own_user(
        services: ServiceStack) -> None:
    services.setup_verifier()
    data_root = services.data_root
    # What LoadCredential= makes: a private copy, readable by the service's user only.
    credentials = Path(tempfile.mkdtemp(prefix="atlas-credentials-"))
    try:
        _check(data_root, credentials)
    finally:
        shutil.rmtree(credentials)


def _check(data_root: Path, credentials: Path) -> None:
    shutil.copy(account.account_file(data_root), credentials / "verifier.json")
    shutil.chown(credentials, account.UNIX_USER, account.UNIX_USER)
    shutil.chown(credentials / "verifier.json", account.UNIX_USER, account.UNIX_USER)
    (credentials / "verifier.json").chmod(0o400)
    handed = as_verifier(data_root, credentials)
    assert handed["raid"][0] == "ok", handed  # type: ignore[index]
    assert "raid1" in str(handed["raid"][1]), handed  # type: ignore[index]
    assert handed["account"] is True
    # Without the credential, the data set's root-only secrets stay closed to it.
    alone = as_verifier(data_root, None)
    assert "unreadable" in str(alone["account"]) and "Permission denied" in str(alone["account"])
