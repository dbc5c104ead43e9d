"""Every path ATLAS uses on the box, in one place (FHS: code /usr, defaults /usr/lib/atlas,
admin config /etc/atlas, state /var/lib/atlas, runtime /run/atlas, business data /srv/atlas)."""

from __future__ import annotations

from pathlib import Path

OS_RELEASE = Path("/usr/lib/os-release")

# Defaults shipped in the image; never edited on the box.
DEFAULTS_DIR = Path("/usr/lib/atlas")
BUILD_INFO = DEFAULTS_DIR / "build.json"
VENDOR_KEY = DEFAULTS_DIR / "vendor.pub"
DEFAULT_SETTINGS = DEFAULTS_DIR / "atlas.json"
# The configuration tree the config store starts from (atlas.json + templates/).
DEFAULT_CONFIG_TREE = DEFAULTS_DIR / "config-default"
# Signed module bundles the image carries (its own atlas_services first).
IMAGE_BUNDLES = DEFAULTS_DIR / "bundles"

# What the administrator's configuration renders to.
CONFIG_DIR = Path("/etc/atlas")
SETTINGS_FILE = CONFIG_DIR / "atlas.json"

# State on the OS disk.
STATE_DIR = Path("/var/lib/atlas")
CONFIG_STORE = STATE_DIR / "config"
MODULE_STORE = STATE_DIR / "modules"
# Format versions of the state and config ATLAS has written ({"config": 1, "state": 1}).
FORMATS_FILE = STATE_DIR / "formats.json"
SYNC_DIR = STATE_DIR / "sync"
SYNC_STATE = SYNC_DIR / "state.json"
SYNC_LOCK = SYNC_DIR / ".lock"
# One file per module whose update is on trial on this secondary (the staged version, the
# stage's id, when it was selected here): the Synchronizer keeps that selection instead of
# mirroring the primary's, for as long as the primary keeps the update staged.
SYNC_STAGED = SYNC_DIR / "staged"
# The primary's record of updates: what is staged for a trial on the secondary, and what
# was staged, promoted, rolled back or aborted (atlas_services/update).
UPDATE_DIR = STATE_DIR / "update"
UPDATE_RECORD = UPDATE_DIR / "record.json"
VERIFY_DIR = STATE_DIR / "verify"
VERIFY_LATEST = VERIFY_DIR / "latest.json"  # the last cycle (also what the peer is sent)
VERIFY_HISTORY = VERIFY_DIR / "history.jsonl"  # the last cycles, one JSON object a line
VERIFY_LOCK = VERIFY_DIR / "cycle.lock"  # one cycle at a time (timer and `--now`)
# The status page, served read-only by the box's nginx (templates: etc/nginx/nginx.conf).
STATUS_PAGE_DIR = VERIFY_DIR / "www"
STATUS_PAGE_URL = "/atlas/status/"
# The peer's last verification cycle (same format as VERIFY_LATEST): the Synchronizer
# drops the primary's here on the secondary, and the secondary's on the primary where
# it can reach it.
PEER_VERIFY_RESULTS = SYNC_DIR / "peer-verify.json"

# Runtime.
RUN_DIR = Path("/run/atlas")
ROLE_FILE = RUN_DIR / "role.json"
# sshd's extra AuthorizedKeysFile (/etc/ssh/sshd_config.d/atlas-sync.conf names it with %u):
# on the primary it lets the cluster's sync key in, restricted to `atlas sync-serve`.
AUTHORIZED_KEYS_DIR = RUN_DIR / "authorized_keys"

# The `atlas` launcher (runs the selected atlas_services version).
ATLAS_COMMAND = Path("/usr/bin/atlas")

# Prometheus node-exporter's textfile collector directory (Debian's default).
TEXTFILE_DIR = Path("/var/lib/prometheus/node-exporter")
VERIFY_TEXTFILE = "atlas_verify.prom"  # in TEXTFILE_DIR

# The data set: mounted here; its own ATLAS files live under /.atlas on it.
DATA_ROOT = Path("/srv/atlas")
DATASET_META = ".atlas"  # relative to the data set's root
CLUSTER_COPY = "cluster.json"  # in DATASET_META: the cluster's identities (cluster.py reads it)
VOLUME_FILE = "volume.json"  # in DATASET_META
SECRETS_DIR = "secrets"  # in DATASET_META, mode 0700
DATASET_CONFIG = "config"  # in DATASET_META: copies of committed config generations
# dpkg's database, relative to a system root (the Synchronizer's environment manifest).
DPKG_ADMINDIR = "var/lib/dpkg"
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
