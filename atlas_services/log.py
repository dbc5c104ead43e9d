"""The one logging setup: the journal on the box, plain stderr everywhere else."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


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


def event(message_id: str, message: str, *, priority: int = 6, **fields: object) -> None:
    """One structured journal entry (MESSAGE_ID plus ATLAS_* fields) where there is a
    journal, an ordinary log line elsewhere. Field names are given without the prefix."""
    extra = {f"ATLAS_{name.upper()}": "" if value is None else str(value)
             for name, value in fields.items()}
    if Path("/run/systemd/journal/socket").exists():
        try:
            from systemd import journal
        except ImportError:
            pass
        else:
            journal.send(message, MESSAGE_ID=message_id, PRIORITY=str(priority),
                         SYSLOG_IDENTIFIER="atlas", **extra)
            return
    level = logging.WARNING if priority <= 4 else logging.INFO
    logging.getLogger("atlas").log(level, "%s", message)
