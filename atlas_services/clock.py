"""Time as ATLAS writes and reads it: UTC, ISO 8601 with a Z, and "N min ago" for people."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def now() -> str:
    """This moment as ATLAS records it in its files: ISO 8601 to the second, UTC, with Z."""
    return stamp(utcnow())


def stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time as ATLAS writes it (Z or an offset); ValueError when it is not one."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def span(delta: dt.timedelta, *, days: bool = False) -> str:
    """A duration for people: "42 s", "7 min", "3 h" (and "2 days" with `days`)."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if days and seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    return f"{seconds // 3600} h"
