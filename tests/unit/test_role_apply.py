"""Role apply always ends the boot in a defined state, whatever breaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlas_services import role
from atlas_services.detect import Reason
from atlas_services.errors import AtlasError
from atlas_services.paths import Layout
from atlas_services.roles import Role


class RecordingSystem:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def set_hostname(self, name: str) -> None:
        self.calls.append(("hostname", name))

    def start_unit(self, unit: str) -> None:
        self.calls.append(("start", unit))

    def reload_network(self) -> None:
        self.calls.append(("reload_network", ""))

    def reload_units(self) -> None:
        self.calls.append(("reload_units", ""))

    def notify(self, status: str) -> None:
        self.calls.append(("notify", status))


@pytest.mark.parametrize("error", [AtlasError("blkid exploded"), KeyError("bug")])
def test_a_failure_while_taking_the_role_ends_in_standby_that_says_why(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception) -> None:
    def broken(**_: object) -> None:
        raise error
    monkeypatch.setattr(role, "detect_role", broken)
    layout = Layout.under(tmp_path)
    system = RecordingSystem()
    decision = role.apply(system, layout)
    assert (decision.role, decision.reason) == (Role.REFUSED, Reason.ERROR)
    assert ("start", "atlas-standby.target") in system.calls
    assert system.calls[-1][0] == "notify"
    written = json.loads(layout.role_file.read_text())
    assert written["role"] == "refused" and "could not be taken" in written["reason"]


def test_network_file_names_the_interface_and_address() -> None:
    from atlas_services.volume import Identity

    ident = Identity(hostname="shop1", address="10.0.0.5/24", gateway="10.0.0.1",
                     dns=("10.0.0.1",), interface="en*")
    text = role.network_config(ident, "enp0s16")
    assert "Name=enp0s16" in text and "Address=10.0.0.5/24" in text and "Gateway=10.0.0.1" in text


def test_interface_pattern_picks_the_first_match(tmp_path: Path) -> None:
    for name in ("lo", "enp0s17", "enp0s16", "wlan0"):
        (tmp_path / name).mkdir()
    assert role.resolve_interface("enp*", tmp_path) == "enp0s16"
    assert role.resolve_interface("eth*", tmp_path) is None
