"""Journal MESSAGE_IDs: one fixed UUID per outcome, so `journalctl MESSAGE_ID=…` finds it.

Never change a value once released; add new ones instead.
"""

from __future__ import annotations

ROLE_PRIMARY = "6b1d833af36c4f3fa0e3c35faa58f435"
ROLE_SECONDARY = "88bd58db3ed74ac095ab96678ceab81a"
ROLE_STANDBY = "1fad7f2687b14046bc1fe1d3dd900799"
ROLE_REFUSED = "c0a476a79a814f13bca92f487cd7eebb"
ROLE_DEGRADED = "385b6457cb334ce0b49db4c5517f39d3"
