"""Journal MESSAGE_IDs: one fixed UUID per outcome, so `journalctl MESSAGE_ID=…` finds it.

Never change a value once released; add new ones instead.
"""

from __future__ import annotations

ROLE_PRIMARY = "6b1d833af36c4f3fa0e3c35faa58f435"
ROLE_SECONDARY = "88bd58db3ed74ac095ab96678ceab81a"
ROLE_STANDBY = "1fad7f2687b14046bc1fe1d3dd900799"
ROLE_REFUSED = "c0a476a79a814f13bca92f487cd7eebb"
ROLE_DEGRADED = "385b6457cb334ce0b49db4c5517f39d3"

# Verifier: a probe's status changed (one entry per change, not per cycle).
VERIFY_PROBE_RECOVERED = "f7c32ac8d58042528a39b70aa544ab61"
VERIFY_PROBE_DEGRADED = "b6815231c14846e4bef74e792ba42365"
VERIFY_PROBE_FAILED = "b03b0b5a4fc54b25be40ddfb64b6d406"
# Verifier: the administrator could not be told about a change by mail.
VERIFY_NOTIFY_FAILED = "c8d2e59e27b0489f93b06a50370944ef"

# Synchronizer.
SYNC_OK = "8fb57a2571954555b9b533a085495716"
SYNC_FAILED = "a51b48478d7345a2a48b705039e71c72"
# The primary's host key did not match the one pinned on the data set: possible impostor.
SYNC_IMPOSTOR = "72cf02dfc3f24cf0a982bf2d37babd22"
# `atlas sync-serve` refused a request (a shell command, another verb, a bad argument).
SYNC_SERVE_REFUSED = "51367703ac72493d89245a69ef280cfc"

# Updates (design §7). On the primary: a version was staged for a trial on the secondary,
# promoted, refused promotion, rolled back, or its stage was aborted.
UPDATE_STAGED = "732f8d982e5f40108bbd4832a474b92d"
UPDATE_PROMOTED = "d366c78fb23f409dafec489e010032ee"
UPDATE_PROMOTE_REFUSED = "b7d082e53bb24894bf7cdd71f8cb7931"
UPDATE_ROLLED_BACK = "289ab3307bd0420ab7c53928dac5972c"
UPDATE_ABORTED = "c6ea65f0e03d45948630657d2739fa7b"
# On the secondary: its sync selected a staged version for a trial, or ended the trial
# (the primary promoted, rolled back or aborted it) and went back to mirroring.
UPDATE_TRIAL_STARTED = "c75f4772045c4befa40c3fe64160ca55"
UPDATE_TRIAL_ENDED = "91e255b42313418caa94d09d9f4b1dab"
