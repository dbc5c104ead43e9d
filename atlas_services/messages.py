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
