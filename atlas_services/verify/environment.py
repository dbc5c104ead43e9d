"""The verifier's own test environment: accounts and objects with least privilege, made idempotently.

`ensure()` is what `atlas verify setup` runs; the Synchronizer calls it on the secondary
after each sync, provisioning on the primary. Every step first checks, then acts only
where something is missing or different, and says what it did. What it creates:

    unix/SMB user  atlas-verifier: system user, no shell, no home; SMB password in the
                   data set's passdb; admitted to its own share only (smb.conf)
    share          <data>/verifier/share, owned by atlas-verifier, mode 0700
    mailbox        atlas-verifier@DOMAIN in the mail users file and the recipients map
    database       role atlas_verifier (login, nothing else) in database atlas_verifier,
                   schema atlas_verifier, table canary: SELECT/INSERT/DELETE only
                   (pg_hba admits the role to that database alone)
    web canary     <data>/verifier/web/canary.html, content pinned by the account file
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from atlas_services import fsutil, paths, proc, tls
from atlas_services.errors import AtlasError
from atlas_services.verify import account
from atlas_services.verify.account import VerifierAccount

MAIL_USER = "mail"  # Debian's: owns every mailbox (dovecot.conf: mail_uid)
MAIL_AUTH_GROUP = "dovecot"  # dovecot's auth process reads the users file as this group
# dovecot looks at a passwd-file's mtime at most once a second: a user added within the
# second of its last look is unknown to LMTP (a 550 bounce) until the next second.
PASSWD_FILE_RESCAN_S = 1.1


@dataclass(frozen=True)
class DbAdmin:
    """How setup reaches PostgreSQL as administrator: over the local socket, root mapped to postgres."""

    socket_dir: Path = Path("/var/run/postgresql")
    port: int = 5432
    user: str = "postgres"

    def connect(self, dbname: str = "postgres", **extra: Any) -> Any:
        try:
            conn = psycopg2.connect(host=str(self.socket_dir), port=self.port, user=self.user,
                                    dbname=dbname, connect_timeout=10, **extra)
        except psycopg2.Error as err:
            raise AtlasError(f"cannot reach PostgreSQL as {self.user} at {self.socket_dir}:{self.port}: "
                             f"{str(err).strip().splitlines()[0]}",
                             "start postgresql (and check pg_ident.conf maps root to postgres)") from None
        conn.autocommit = True
        return conn


@dataclass(frozen=True)
class Environment:
    """Where setup acts; on the box the defaults, in tests a fixture's private services."""

    data_root: Path
    domain: str
    hostname: str
    config_root: Path = Path("/")  # where etc/samba/smb.conf and etc/postfix/ are
    db: DbAdmin = DbAdmin()

    @property
    def smb_conf(self) -> Path:
        return self.config_root / "etc/samba/smb.conf"

    @property
    def postfix_dir(self) -> Path:
        return self.config_root / "etc/postfix"


def _ids(user: str, group: str | None = None) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    return entry.pw_uid, gid


def _group_or_root(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return 0


def _ensure_dir(path: Path, mode: int, owner: tuple[int, int] = (0, 0)) -> bool:
    """Make a directory or put its mode and owner right; True if anything changed."""
    created = False
    if not path.is_dir():
        path.mkdir(parents=True)
        created = True
    st = path.stat()
    if (st.st_mode & 0o7777) != mode or (st.st_uid, st.st_gid) != owner:
        os.chown(path, *owner)
        path.chmod(mode)
        return True
    return created


# ---------------------------------------------------------------- passwords


def ssha512(password: str, salt: bytes | None = None) -> str:
    """Dovecot's {SSHA512} scheme: base64(sha512(password + salt) + salt)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode()


def ssha512_matches(password: str, stored: str) -> bool:
    if not stored.startswith("{SSHA512}"):
        return False
    try:
        raw = base64.b64decode(stored.removeprefix("{SSHA512}"), validate=True)
    except ValueError:
        return False
    return len(raw) > 64 and secrets.compare_digest(ssha512(password, raw[64:]), stored)


# ---------------------------------------------------------------- steps


def _account(env: Environment) -> tuple[VerifierAccount, list[str]]:
    try:
        current = account.load(env.data_root)
    except AtlasError:
        if account.account_file(env.data_root).exists():
            raise  # damaged: never silently replace credentials
        made = VerifierAccount.create(env.domain)
        account.save(env.data_root, made)
        return made, ["created the verifier's credentials"]
    wanted = f"{account.UNIX_USER}@{env.domain}"
    if current.mail_address != wanted:
        current = replace(current, mail_address=wanted)
        account.save(env.data_root, current)
        return current, [f"verifier mail address is now {wanted}"]
    return current, []


def _certificate(env: Environment) -> list[str]:
    directory = env.data_root / paths.DATASET_META / paths.SECRETS_DIR / paths.DATASET_TLS
    fqdn = f"{env.hostname}.{env.domain}" if env.domain and env.domain != env.hostname else env.hostname
    if tls.ensure_self_signed(directory, fqdn):
        return [f"made a self-signed certificate for {fqdn}"]
    return []


def _id_free(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        try:
            grp.getgrgid(uid)
        except KeyError:
            return True
    return False


def _unix_user() -> list[str]:
    """The image makes the user (sysusers.d); elsewhere, the same user with the same ID if free."""
    try:
        pwd.getpwnam(account.UNIX_USER)
        return []
    except KeyError:
        pass
    ids = ["--uid", str(account.UNIX_ID), "--gid", str(account.UNIX_ID)] \
        if _id_free(account.UNIX_ID) else []
    if ids:
        proc.run(["groupadd", "--system", "--gid", str(account.UNIX_ID), account.UNIX_USER])
    else:
        ids = ["--user-group"]
    proc.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
              "--shell", "/usr/sbin/nologin", "--comment", "ATLAS verifier", *ids, account.UNIX_USER])
    return [f"created system user {account.UNIX_USER}"]


def _web_canary(env: Environment, acct: VerifierAccount) -> list[str]:
    directory = env.data_root / paths.VERIFIER_WEB
    done = ["made the verifier's web directory"] if _ensure_dir(directory, 0o755) else []
    canary = directory / account.CANARY_FILE
    if not canary.exists() or canary.read_bytes() != acct.canary_content:
        fsutil.write_atomic(canary, acct.canary_content, 0o644)
        done.append("wrote the web canary page")
    return done


def _replace_line(path: Path, key: str, line: str | None, *, mode: int, owner: tuple[int, int],
                  matches: Any) -> bool:
    """Keep every other line of a user list; make the one for `key` equal `line`."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    mine = [x for x in lines if x.startswith(key)]
    if len(mine) == 1 and matches(mine[0]):
        st = path.stat()
        if (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (mode, *owner):
            return False
    kept = [x for x in lines if not x.startswith(key)]
    if line is not None:
        kept.append(line)
    fsutil.write_atomic(path, "".join(f"{x}\n" for x in kept), mode, owner=owner)
    return True


def _mailbox(env: Environment, acct: VerifierAccount) -> list[str]:
    done = []
    mail_dir = env.data_root / "mail"
    mail_dir.mkdir(parents=True, exist_ok=True)
    boxes = env.data_root / paths.MAIL_BOXES
    if not boxes.is_dir():
        _ensure_dir(boxes, 0o770, _ids(MAIL_USER))
        done.append("made the mailbox directory")
    address = acct.mail_address
    prefix = f"{account.UNIX_USER}@"
    users = env.data_root / paths.MAIL_USERS
    if _replace_line(users, prefix, f"{address}:{ssha512(acct.mail_password)}", mode=0o640,
                     owner=(0, _group_or_root(MAIL_AUTH_GROUP)),
                     matches=lambda x: x.split(":")[0] == address
                     and ssha512_matches(acct.mail_password, x.split(":")[1])):
        done.append(f"set the mail account {address}")
        time.sleep(PASSWD_FILE_RESCAN_S)
    recipients = env.data_root / paths.MAIL_RECIPIENTS
    if _replace_line(recipients, prefix, f"{address} OK", mode=0o644, owner=(0, 0),
                     matches=lambda x: x == f"{address} OK") or not _indexed(recipients):
        # postfix reads the indexed copy, and its daemons notice a new one by themselves.
        proc.run(["postmap", "-c", env.postfix_dir, f"hash:{recipients}"], timeout=30)
        done.append(f"listed {address} as a recipient")
    return done


def _indexed(table: Path) -> bool:
    db = table.with_name(table.name + ".db")
    return db.exists() and db.stat().st_mtime >= table.stat().st_mtime


def _can_log_in(env: Environment, acct: VerifierAccount) -> bool:
    try:
        conn = psycopg2.connect(host=str(env.db.socket_dir), port=env.db.port, user=account.DB_ROLE,
                                dbname=account.DB_NAME, password=acct.db_password, connect_timeout=10)
    except psycopg2.Error:
        return False
    conn.close()
    return True


def _database(env: Environment, acct: VerifierAccount) -> list[str]:
    done = []
    role, db, schema = (sql.Identifier(x) for x in (account.DB_ROLE, account.DB_NAME, account.DB_SCHEMA))
    table = sql.Identifier(account.DB_SCHEMA, account.DB_TABLE)
    conn = env.db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (account.DB_ROLE,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
                done.append(f"created database role {account.DB_ROLE}")
            # Whatever the role was, it is now this and no more.
            cur.execute(sql.SQL("ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                                "NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 4").format(role))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (account.DB_NAME,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER postgres").format(db))
                done.append(f"created database {account.DB_NAME}")
            cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, role))
            cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(role, db, schema))
    finally:
        conn.close()
    conn = env.db.connect(account.DB_NAME)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (f"{account.DB_SCHEMA}.{account.DB_TABLE}",))
            row = cur.fetchone()
            if row is None or row[0] is None:
                done.append(f"created table {account.DB_SCHEMA}.{account.DB_TABLE}")
            cur.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION postgres").format(schema))
            cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
            cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, payload text NOT NULL, "
                                "created timestamptz NOT NULL DEFAULT now())").format(table))
            cur.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(table))
            cur.execute(sql.SQL("GRANT SELECT, INSERT, DELETE ON {} TO {}").format(table, role))
            if not _can_log_in(env, acct):
                # psycopg2 quotes the parameter client-side; ALTER ROLE takes no bind parameters.
                cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(role), (acct.db_password,))
                done.append(f"set the password of database role {account.DB_ROLE}")
    finally:
        conn.close()
    return done


def _share(env: Environment, acct: VerifierAccount) -> list[str]:
    done = []
    share = env.data_root / paths.VERIFIER_SHARE
    if _ensure_dir(share, 0o700, _ids(account.UNIX_USER)):
        done.append(f"set up the verifier's share directory {share}")
    secrets_dir = env.data_root / paths.DATASET_META / paths.SECRETS_DIR
    _ensure_dir((secrets_dir / paths.SAMBA_PASSDB).parent, 0o700)
    listed = proc.run(["pdbedit", "-s", env.smb_conf, "-L"], ok_codes=proc.ANY_EXIT, timeout=30).stdout
    known = any(line.split(":")[0] == account.UNIX_USER for line in listed.splitlines())
    # smbpasswd cannot say whether a password is already right: setting it is idempotent.
    proc.run(["smbpasswd", "-c", env.smb_conf, "-s", "-a", account.UNIX_USER],
             input=f"{acct.smb_password}\n{acct.smb_password}\n", timeout=30)
    if not known:
        done.append(f"created SMB account {account.UNIX_USER}")
    return done


def ensure(env: Environment) -> list[str]:
    """Create or repair the verifier's accounts and objects; return what was done (empty: nothing)."""
    acct, done = _account(env)
    done += _certificate(env)
    done += _unix_user()
    done += _web_canary(env, acct)
    done += _mailbox(env, acct)
    done += _database(env, acct)
    done += _share(env, acct)
    return done
