"""The business services' data on a data set: laid out on first use, idempotently.

A data set fresh from `atlas disks init` holds only /.atlas. The first time a role is
taken on it (and whenever something is missing), this lays out what the services'
configuration expects under the data root: the web root, the mail users and recipients
(postmapped) and mailboxes, the file shares, the TLS certificate, and an initialised
PostgreSQL cluster. Nothing that exists is touched.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from pathlib import Path

from atlas_services import paths, proc, tls

logger = logging.getLogger(__name__)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
WELCOME_PAGE = "<!doctype html><title>Welcome</title><h1>This site is served by ATLAS</h1>\n"


def make_dir(path: Path, mode: int = 0o755, owner: str | None = None,
             group: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    entry = pwd.getpwnam(owner) if owner else None
    uid, gid = (entry.pw_uid, entry.pw_gid) if entry else (0, 0)
    if group:
        gid = grp.getgrnam(group).gr_gid
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


def _file(path: Path, mode: int, group: str | None) -> bool:
    if path.exists():
        return False
    path.touch()
    os.chown(path, 0, grp.getgrnam(group).gr_gid if group else 0)
    path.chmod(mode)
    return True


def tls_dir(data_root: Path) -> Path:
    return data_root / paths.DATASET_META / paths.SECRETS_DIR / paths.DATASET_TLS


def prepare(data_root: Path, fqdn: str, postfix_config: Path = Path("/etc/postfix")) -> list[str]:
    """Lay out whatever is missing; returns what was done (empty: all there)."""
    done: list[str] = []
    web = data_root / paths.WEB_ROOT
    if not web.exists():
        make_dir(web)
        (web / "index.html").write_text(WELCOME_PAGE)
        done.append("web root")
    make_dir(data_root / "mail")
    make_dir(data_root / paths.MAIL_BOXES, 0o770, "mail")
    created = _file(data_root / paths.MAIL_USERS, 0o640, "dovecot")
    recipients = data_root / paths.MAIL_RECIPIENTS
    created |= _file(recipients, 0o644, None)
    if created or not recipients.with_name(recipients.name + ".db").exists():
        proc.run(["postmap", "-c", postfix_config, f"hash:{recipients}"])
        done.append("mail users and recipients")
    if not (data_root / paths.SHARES / "files").exists():
        make_dir(data_root / paths.SHARES / "files", 0o770)
        done.append("file share")
    make_dir(data_root / paths.DATASET_META / paths.SECRETS_DIR, 0o700)
    if tls.ensure_self_signed(tls_dir(data_root), fqdn):
        done.append("TLS certificate")
    if _init_postgres(data_root / paths.POSTGRES_DATA):
        done.append("PostgreSQL cluster")
    if done:
        logger.info("service data on %s: laid out %s", data_root, ", ".join(done))
    return done


def _init_postgres(pg_data: Path) -> bool:
    if (pg_data / "PG_VERSION").exists():
        return False
    for parent in (pg_data.parent.parent, pg_data.parent):
        make_dir(parent, 0o755, "postgres", "postgres")
    proc.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
              PG_BIN / "initdb", "-D", pg_data, "--auth=peer", "--encoding=UTF8",
              "--locale=C.UTF-8", "-U", "postgres"], timeout=300)
    return True
