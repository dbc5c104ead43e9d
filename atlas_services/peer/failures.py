"""How a sync fails: one kind per cause, so the status line says what happened and what to do."""

from __future__ import annotations

from enum import StrEnum

from atlas_services.errors import AtlasError


class Kind(StrEnum):
    UNREACHABLE = "unreachable"  # no answer from the primary's address
    HOST_KEY = "host-key"  # the host key is not the pinned one: possible impostor
    AUTH = "auth"  # the primary did not accept the cluster's sync key
    TRANSPORT = "transport"  # ssh failed otherwise (connection lost mid-transfer, ...)
    REFUSED = "refused"  # sync-serve refused the request
    REMOTE_FAILED = "remote-failed"  # sync-serve accepted it and then failed
    BAD_REPLY = "bad-reply"  # the reply did not parse or validate
    NOT_PRIMARY = "not-primary"  # the peer is not (or no longer) the primary
    DISK_FULL = "disk-full"  # no space left on the secondary
    UNKNOWN_PARENT = "unknown-parent"  # an incremental stream whose parent is not here
    CORRUPT_STREAM = "corrupt-stream"  # truncated or damaged btrfs stream
    RECEIVE_FAILED = "receive-failed"  # btrfs receive failed otherwise
    APPLY_FAILED = "apply-failed"  # the received configuration did not apply
    SELECT_FAILED = "select-failed"  # a module selection could not be mirrored
    VERIFY_SETUP_FAILED = "verify-setup-failed"
    NOT_SECONDARY = "not-secondary"  # this server is not the secondary
    SETUP = "setup"  # missing data set, store or key on this server
    LOCAL_FAILED = "local-failed"  # a step on this server failed otherwise


class SyncError(AtlasError):
    """A sync step failed; `kind` classifies the cause for state.json and the status line."""

    def __init__(self, kind: Kind, what: str, hint: str | None = None) -> None:
        super().__init__(what, hint)
        self.kind = kind
