"""The business services ATLAS runs on both servers: the one list that the configuration
(reload what changed), the Verifier (which probe exercises which, which failed unit is
business) and the tests and the lab (start, stop, check) all read.

Each service's unit is the unit that *is* its server. For PostgreSQL on Debian 12 that is
the cluster's templated unit, postgresql@15-main.service: postgresql.service is only a
oneshot wrapper (ExecStart=/bin/true) that Debian's generator hangs every cluster under,
so it reads "active" whether the server runs or not. The image's targets still pull the
wrapper in (Wants=/After=postgresql.service in overlays/): that is how Debian starts and
orders every cluster, and reload and restart of the wrapper propagate to them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Daemon:
    name: str  # as ATLAS names it (config prefix, test stack, fault catalogue)
    unit: str  # the systemd unit that is the server
    config: str  # its configuration below the root, as the templates render it
    probe: str  # the Verifier probe that exercises it

    @property
    def unit_prefix(self) -> str:
        """The unit name without instance and suffix: what a unit of this service starts with."""
        return self.unit.partition("@")[0].removesuffix(".service")


# In start order: postfix before dovecot (dovecot puts its LMTP and auth sockets into
# postfix's queue directory), the database first.
DAEMONS: tuple[Daemon, ...] = (
    Daemon("postgresql", "postgresql@15-main.service", "etc/postgresql/", "database"),
    Daemon("postfix", "postfix.service", "etc/postfix/", "mail"),
    Daemon("dovecot", "dovecot.service", "etc/dovecot/", "mail"),
    Daemon("nginx", "nginx.service", "etc/nginx/", "web"),
    Daemon("samba", "smbd.service", "etc/samba/", "files"),
)
BY_NAME = {d.name: d for d in DAEMONS}
UNITS = tuple(d.unit for d in DAEMONS)
