"""Every path ATLAS uses on the box, in one place (FHS: code /usr, defaults /usr/lib/atlas,
admin config /etc/atlas, state /var/lib/atlas, runtime /run/atlas, business data /srv/atlas).

`Layout(root)` is the one owner of where things are: `Layout()` is the box, and
`Layout.under(tmp)` the same tree below a test's directory. The names below are relative
to a root (or to the data set's root) and mean nothing alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The data set: its own ATLAS files live under /.atlas on it.
DATASET_META = ".atlas"  # relative to the data set's root
VOLUME_FILE = "volume.json"  # in DATASET_META
CLUSTER_COPY = "cluster.json"  # in DATASET_META: the cluster's identities
SECRETS_DIR = "secrets"  # in DATASET_META, mode 0700
DATASET_CONFIG = "config"  # in DATASET_META: copies of committed config generations
DATASET_TLS = "tls"  # in SECRETS_DIR: the role's certificate (cert.pem, key.pem)
VERIFIER_ACCOUNT = "verifier.json"  # in SECRETS_DIR: the verifier's credentials
SAMBA_PASSDB = "samba/passdb.tdb"  # in SECRETS_DIR: SMB accounts follow the data set

# Business data on the data set, relative to its root. The service templates
# (config-default/templates) spell the same names; tests/unit/test_templates.py checks.
WEB_ROOT = "web/site"
MAIL_USERS = "mail/users"  # dovecot passwd-file: address:{SSHA512}hash
MAIL_RECIPIENTS = "mail/recipients"  # postfix hash map (postmap it): address OK
MAIL_BOXES = "mail/boxes"  # maildirs, DOMAIN/LOCALPART/Maildir, owned by the mail user
POSTGRES_DATA = "postgresql/15/main"
SHARES = "shares"  # one directory per SMB share
# Objects only the Verifier uses (never business data).
VERIFIER_WEB = "verifier/web"  # the canary page
VERIFIER_SHARE = "verifier/share"  # the verifier's SMB share

# The status page's address on the box's web server (templates: etc/nginx/nginx.conf).
STATUS_PAGE_URL = "/atlas/status/"
VERIFY_TEXTFILE = "atlas_verify.prom"  # in Layout.textfile_dir


@dataclass(frozen=True)
class Layout:
    """Where everything is below `root` ("/" on the box)."""

    root: Path = Path("/")

    @classmethod
    def under(cls, root: Path) -> Layout:
        """The box's tree below another directory (tests, benchmarks)."""
        return cls(root)

    def _at(self, relative: str) -> Path:
        return self.root / relative

    # ------------------------------------------------------------ the image (read-only)

    @property
    def os_release(self) -> Path:
        return self._at("usr/lib/os-release")

    @property
    def atlas_command(self) -> Path:
        """The `atlas` launcher (runs the selected atlas_services version)."""
        return self._at("usr/bin/atlas")

    @property
    def defaults_dir(self) -> Path:
        """Defaults shipped in the image; never edited on the box."""
        return self._at("usr/lib/atlas")

    @property
    def build_info(self) -> Path:
        return self.defaults_dir / "build.json"

    @property
    def vendor_key(self) -> Path:
        return self.defaults_dir / "vendor.pub"

    @property
    def default_config_tree(self) -> Path:
        """The configuration tree the config store starts from (atlas.json + templates/)."""
        return self.defaults_dir / "config-default"

    @property
    def image_bundles(self) -> Path:
        """Signed module bundles the image carries (its own atlas_services first)."""
        return self.defaults_dir / "bundles"

    @property
    def dpkg_admindir(self) -> Path:
        """dpkg's database (the Synchronizer's environment manifest)."""
        return self._at("var/lib/dpkg")

    # ------------------------------------------------------------ what the configuration renders to

    @property
    def config_dir(self) -> Path:
        return self._at("etc/atlas")

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "atlas.json"

    @property
    def cluster_dir(self) -> Path:
        """`atlas cluster init`'s default: the identities and keys data sets are made from."""
        return self.config_dir / "cluster"

    # ------------------------------------------------------------ state on the OS disk

    @property
    def state_dir(self) -> Path:
        return self._at("var/lib/atlas")

    @property
    def config_store(self) -> Path:
        return self.state_dir / "config"

    @property
    def apply_journal(self) -> Path:
        """`atlas config apply`'s pending work: present only while an apply runs, or after
        one died (the next apply, or the boot's, finishes or undoes it)."""
        return self.state_dir / "apply-journal.json"

    @property
    def apply_lock(self) -> Path:
        """Held by the one apply that runs (the CLI's, a sync's, the role's at boot)."""
        return self.state_dir / "apply.lock"

    @property
    def module_store(self) -> Path:
        return self.state_dir / "modules"

    @property
    def formats_file(self) -> Path:
        """Format versions of the state and config ATLAS has written ({"config": 1, ...})."""
        return self.state_dir / "formats.json"

    @property
    def known_cluster_file(self) -> Path:
        """The cluster this OS disk has served (a foreign data set is refused)."""
        return self.state_dir / "cluster-id"

    @property
    def sync_dir(self) -> Path:
        return self.state_dir / "sync"

    @property
    def sync_state(self) -> Path:
        return self.sync_dir / "state.json"

    @property
    def sync_lock(self) -> Path:
        return self.sync_dir / ".lock"

    @property
    def sync_connection(self) -> Path:
        """The running sync's ssh control socket (under the sync lock: one sync's alone)."""
        return self.sync_dir / "connection"

    @property
    def trial_marks(self) -> Path:
        """One file per module whose update is on trial on this secondary (update/marks.py):
        the Synchronizer keeps that selection instead of mirroring the primary's."""
        return self.sync_dir / "staged"

    @property
    def peer_results(self) -> Path:
        """The peer's last verification cycle (same format as verify_latest): the
        Synchronizer drops the primary's here on the secondary."""
        return self.sync_dir / "peer-verify.json"

    @property
    def update_record(self) -> Path:
        """The primary's record of updates: staged, promoted, rolled back, aborted."""
        return self.state_dir / "update/record.json"

    @property
    def verify_dir(self) -> Path:
        return self.state_dir / "verify"

    @property
    def verify_latest(self) -> Path:
        """The last cycle (also what the peer is sent)."""
        return self.verify_dir / "latest.json"

    @property
    def verify_history(self) -> Path:
        """The last cycles, one JSON object a line."""
        return self.verify_dir / "history.jsonl"

    @property
    def verify_lock(self) -> Path:
        """One cycle at a time (timer and `--now`)."""
        return self.verify_dir / "cycle.lock"

    @property
    def status_page_dir(self) -> Path:
        """The status page, served read-only by the box's nginx."""
        return self.verify_dir / "www"

    @property
    def textfile_dir(self) -> Path:
        """Prometheus node-exporter's textfile collector directory (Debian's default)."""
        return self._at("var/lib/prometheus/node-exporter")

    # ------------------------------------------------------------ runtime

    @property
    def run_dir(self) -> Path:
        return self._at("run/atlas")

    @property
    def role_file(self) -> Path:
        return self.run_dir / "role.json"

    @property
    def authorized_keys_dir(self) -> Path:
        """sshd's extra AuthorizedKeysFile (/etc/ssh/sshd_config.d/atlas-sync.conf names it
        with %u): the peer's sync key, restricted to `atlas sync-serve`."""
        return self.run_dir / "authorized_keys"

    @property
    def host_key_dir(self) -> Path:
        """The role's SSH host keys, from the data set (sshd_config.d/atlas.conf)."""
        return self.run_dir / "ssh"

    @property
    def network_file(self) -> Path:
        """The role's address, for systemd-networkd."""
        return self._at("run/systemd/network/10-atlas-role.network")

    # ------------------------------------------------------------ the data set

    @property
    def data_root(self) -> Path:
        """Where the data set is mounted."""
        return self._at("srv/atlas")

    @property
    def dataset_meta(self) -> Path:
        return self.data_root / DATASET_META

    @property
    def dataset_secrets(self) -> Path:
        return self.dataset_meta / SECRETS_DIR
