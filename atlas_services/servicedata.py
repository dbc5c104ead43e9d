"""The business services' data on a data set: laid out on first use, idempotently.

A data set fresh from `atlas disks init` holds only /.atlas. The first time a role is
taken on it (and whenever something is missing), this lays out what the services'
configuration expects under the data root: the web root, the mail users and recipients
(postmapped) and mailboxes, the file shares, the TLS certificate, and an initialised
PostgreSQL cluster. Nothing that exists is touched.

The data set is untrusted, and the services own parts of it (postgres owns `postgresql/`):
every directory is reached and every owner and mode set through file descriptors opened
without following a symlink, so a link planted there can never make root hand another
directory (say /etc) to a service user. A path that is a link is refused, not followed.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import pwd
from pathlib import Path

from atlas_services import paths, proc, tls, untrusted
from atlas_services.errors import Refused

logger = logging.getLogger(__name__)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# initdb on a slow machine takes tens of seconds; a hung one must end inside the role
# unit's start timeout, so the role is still recorded (without a database).
INITDB_TIMEOUT_S = 150
WELCOME_PAGE = "<!doctype html><title>Welcome</title><h1>This site is served by ATLAS</h1>\n"


def _ids(owner: str | None, group: str | None) -> tuple[int, int]:
    entry = pwd.getpwnam(owner) if owner else None
    uid, gid = (entry.pw_uid, entry.pw_gid) if entry else (0, 0)
    if group:
        gid = grp.getgrnam(group).gr_gid
    return uid, gid


def _not_a_link(path: Path, err: OSError) -> Refused:
    what = ("a symbolic link or not a directory" if err.errno in (errno.ELOOP, errno.ENOTDIR)
            else err.strerror)
    return Refused(f"{path} on the data set is {what}: not followed, not changed",
                   "remove what is there (the services' data must be plain directories)")


def make_dir(data_root: Path, relative: str, mode: int = 0o755, owner: str | None = None,
             group: str | None = None) -> Path:
    """`data_root/relative` as a directory owned by owner:group with `mode`, each missing
    component made root's 0755, none of them followed if it is a symlink."""
    path = data_root / relative
    fd = os.open(data_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in Path(relative).parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
            except OSError as err:
                raise _not_a_link(path, err) from None
            os.close(fd)
            fd = nxt
        # On the open directory itself: no path is resolved again between check and change.
        os.fchown(fd, *_ids(owner, group))
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return path


def _file(data_root: Path, relative: str, mode: int, group: str | None,
          content: bytes = b"") -> bool:
    """Create `data_root/relative` (its directory exists) unless something is there."""
    path = data_root / relative
    parent = Path(relative).parent
    try:
        directory = untrusted.open_dir_beneath(data_root, parent.as_posix())
    except OSError as err:
        raise _not_a_link(data_root / parent, err) from None
    try:
        fd = os.open(Path(relative).name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=directory)
    except FileExistsError:
        return False
    finally:
        os.close(directory)
    try:
        os.fchown(fd, *_ids(None, group))
        os.fchmod(fd, mode)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    logger.debug("created %s", path)
    return True


def tls_dir(data_root: Path) -> Path:
    return data_root / paths.DATASET_META / paths.SECRETS_DIR / paths.DATASET_TLS


def prepare(data_root: Path, fqdn: str, postfix_config: Path = Path("/etc/postfix")) -> list[str]:
    """Lay out whatever is missing; returns what was done (empty: all there)."""
    done: list[str] = []
    web = data_root / paths.WEB_ROOT
    if not web.is_dir() or web.is_symlink():
        make_dir(data_root, paths.WEB_ROOT)
        _file(data_root, f"{paths.WEB_ROOT}/index.html", 0o644, None, WELCOME_PAGE.encode())
        done.append("web root")
    make_dir(data_root, "mail")
    make_dir(data_root, paths.MAIL_BOXES, 0o770, "mail")
    created = _file(data_root, paths.MAIL_USERS, 0o640, "dovecot")
    recipients = data_root / paths.MAIL_RECIPIENTS
    created |= _file(data_root, paths.MAIL_RECIPIENTS, 0o644, None)
    database = recipients.with_name(recipients.name + ".db")
    if database.is_symlink() or recipients.is_symlink():
        raise _not_a_link(database, OSError(errno.ELOOP, "symbolic link"))
    if created or not database.exists():
        proc.run(["postmap", "-c", postfix_config, f"hash:{recipients}"], timeout=60)
        done.append("mail users and recipients")
    share = data_root / paths.SHARES / "files"
    if not share.is_dir() or share.is_symlink():
        make_dir(data_root, f"{paths.SHARES}/files", 0o770)
        done.append("file share")
    make_dir(data_root, f"{paths.DATASET_META}/{paths.SECRETS_DIR}", 0o700)
    if tls.ensure_self_signed(tls_dir(data_root), fqdn):
        done.append("TLS certificate")
    if _init_postgres(data_root, paths.POSTGRES_DATA):
        done.append("PostgreSQL cluster")
    if done:
        logger.info("service data on %s: laid out %s", data_root, ", ".join(done))
    return done


def _init_postgres(data_root: Path, relative: str) -> bool:
    pg_data = data_root / relative
    # postgres owns these directories, so it may have put anything there since: each is
    # reached without following a link (a link is refused, nothing is changed through it).
    parents = Path(relative).parents
    for parent in (parents[len(parents) - 2], parents[0]):  # postgresql/, postgresql/15/
        make_dir(data_root, parent.as_posix(), 0o755, "postgres", "postgres")
    if (pg_data / "PG_VERSION").exists():
        return False
    proc.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
              PG_BIN / "initdb", "-D", pg_data, "--auth=peer", "--encoding=UTF8",
              "--locale=C.UTF-8", "-U", "postgres"], timeout=INITDB_TIMEOUT_S)
    return True
