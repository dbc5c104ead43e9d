"""ATLAS's own settings (the `atlas.json` of the configuration store), as a frozen dataclass.

The file is JSON; every field is optional and validated; unknown fields are refused so a
typo cannot silently fall back to a default.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from atlas_services import untrusted
from atlas_services.errors import Refused
from atlas_services.paths import Layout

# The range each integer setting may take: below it a timer would spin or a check never
# pass, above it the owner would learn of a failure days late (or a file grow unbounded).
BOUNDS: dict[str, tuple[int, int]] = {
    "verify_interval_s": (30, 86_400),
    "verify_probe_timeout_s": (1, 300),
    "verify_history_cycles": (1, 100_000),
    "sync_interval_s": (30, 86_400),
    "sync_stale_after_s": (60, 30 * 86_400),
    "promote_green_cycles": (1, 1_000),
    "free_space_min_percent": (0, 99),
}
# An address a mail goes to: written into a message header, so no space, no control
# character, no quote or angle bracket can pass; one @, a host-name-like domain.
EMAIL = re.compile(r"(?=.{3,254}$)[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
                   r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


@dataclass(frozen=True)
class Settings:
    admin_email: str = "root@localhost"
    verify_interval_s: int = 120
    # Each service probe's own time limit: a hung service costs a cycle no more than this.
    # 20 s: right after boot, with every daemon spawned cold under load (a CPU hog on a TCG
    # guest), the mail round trip alone took more than 10 s on a healthy server.
    verify_probe_timeout_s: int = 20
    # An unsynchronized clock degrades the Verifier's result, unless the site has no time
    # source at all (an isolated network, the QEMU lab) and says so here.
    clock_sync_required: bool = True
    verify_history_cycles: int = 720
    sync_interval_s: int = 300
    sync_stale_after_s: int = 900
    promote_green_cycles: int = 3
    free_space_min_percent: int = 10
    # A raid1 data set with a missing member still boots (marked degraded, loudly).
    allow_degraded_raid: bool = True

    @classmethod
    def from_json(cls, data: Any, source: str = "settings") -> Settings:
        if not isinstance(data, dict):
            raise Refused(f"{source}: expected a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise Refused(f"{source}: unknown setting(s): {', '.join(unknown)}")
        for name, value in data.items():
            expected = type(getattr(cls(), name))
            # bool is an int in Python; keep the two apart.
            if type(value) is not expected:
                raise Refused(f"{source}: {name} must be {expected.__name__}, "
                              f"not {type(value).__name__}")
            if expected is int:
                low, high = BOUNDS[name]
                if not low <= value <= high:
                    raise Refused(f"{source}: {name} must be between {low} and {high}, not {value}")
        email = data.get("admin_email")
        if email is not None and not EMAIL.fullmatch(email):
            raise Refused(f"{source}: admin_email {email!r} is not a mail address "
                          "(one address like owner@shop.example, no spaces or newlines)")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load(layout: Layout = Layout()) -> Settings:
    """The settings in force: the rendered file if there is one, else the defaults."""
    path = layout.settings_file
    try:
        data = untrusted.load_json(path)
    except FileNotFoundError:
        return Settings()
    except OSError as err:
        raise Refused(f"{path} is unreadable: {untrusted.describe(err)}",
                      "apply the configuration again with 'atlas config apply'") from None
    except ValueError as err:
        raise Refused(f"{path} is not valid JSON: {err}", "fix it with 'atlas config'") from None
    return Settings.from_json(data, str(path))
