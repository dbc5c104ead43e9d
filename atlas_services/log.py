"""The one logging setup: the journal on the box, plain stderr everywhere else."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
# syslog priorities (journal PRIORITY=) and the logging level used where there is no journal.
PRIORITY_ERR, PRIORITY_WARNING, PRIORITY_NOTICE, PRIORITY_INFO = 3, 4, 5, 6
_LEVELS = {PRIORITY_ERR: logging.ERROR, PRIORITY_WARNING: logging.WARNING,
           PRIORITY_NOTICE: logging.INFO, PRIORITY_INFO: logging.INFO}


class _ProgramFormatter(logging.Formatter):
    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return f"{self.program}: {text}"


def _journal_handler() -> logging.Handler | None:
    # systemd sets JOURNAL_STREAM when a unit's stderr goes to the journal:
    # then structured fields are worth sending directly.
    if not os.environ.get("JOURNAL_STREAM"):
        return None
    try:
        from systemd import journal
    except ImportError:
        return None
    handler: logging.Handler = journal.JournalHandler(SYSLOG_IDENTIFIER="atlas")
    return handler


def setup(program: str, *, debug: bool = False) -> logging.Logger:
    """Configure the root logger once for a command and return the program's logger."""
    handler = _journal_handler()
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_ProgramFormatter(program))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    return logging.getLogger(program)


def _journal_module() -> ModuleType | None:
    if not JOURNAL_SOCKET.exists():
        return None
    try:
        from systemd import journal
    except ImportError:
        return None
    module: ModuleType = journal
    return module


def journal_send(message: str, *, message_id: str, priority: int,
                 fields: Mapping[str, str]) -> None:
    """One structured journal entry (MESSAGE_ID from message_ids, FIELD=value pairs).

    Sent to the journal whenever journald runs (a timer's cycle and an admin's
    `--now` alike); elsewhere the message goes to the log on stderr, without fields.
    """
    journal = _journal_module()
    if journal is not None:
        journal.send(message, MESSAGE_ID=message_id, PRIORITY=str(priority),
                     SYSLOG_IDENTIFIER="atlas", **dict(fields))
        return
    logging.getLogger("atlas").log(_LEVELS.get(priority, logging.INFO), "%s", message)
