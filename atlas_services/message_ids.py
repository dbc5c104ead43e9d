"""Every journal MESSAGE_ID ATLAS sends, in one place: `journalctl MESSAGE_ID=…` finds the events.

Fixed UUIDs (32 hex digits, as the journal writes them); never reuse one for another meaning.
"""

from __future__ import annotations

# Verifier: a probe's status changed (one entry per change, not per cycle).
VERIFY_PROBE_RECOVERED = "f7c32ac8d58042528a39b70aa544ab61"
VERIFY_PROBE_DEGRADED = "b6815231c14846e4bef74e792ba42365"
VERIFY_PROBE_FAILED = "b03b0b5a4fc54b25be40ddfb64b6d406"
# Verifier: the administrator could not be told about a change by mail.
VERIFY_NOTIFY_FAILED = "c8d2e59e27b0489f93b06a50370944ef"
