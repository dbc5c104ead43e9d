"""The Synchronizer's units and sshd drop-in in overlays/ are valid as shipped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

import build
from atlas_services.paths import Layout

SYSTEM = "usr/lib/systemd/system"
UNITS = (f"/{SYSTEM}/atlas-sync.service", f"/{SYSTEM}/atlas-sync.timer")


def test_sync_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (run ci/setup)")
    # A root with the host's units (targets the sync units order against) and the overlays.
    (tmp_path / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(Path("/", SYSTEM), tmp_path / SYSTEM, symlinks=True)
    shutil.copytree(build.OVERLAYS_DIR, tmp_path, symlinks=True, dirs_exist_ok=True)
    result = subprocess.run(["systemd-analyze", "verify", f"--root={tmp_path}", *UNITS],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_the_timer_runs_on_the_secondary_only_every_five_minutes_by_default() -> None:
    timer = (build.OVERLAYS_DIR / SYSTEM / "atlas-sync.timer").read_text().splitlines()
    assert "OnUnitInactiveSec=5min" in timer
    assert "WantedBy=atlas-secondary.target" in timer and "PartOf=atlas-secondary.target" in timer


def test_the_timer_period_follows_the_setting() -> None:
    from atlas_services import render
    from atlas_services.settings import Settings

    templates = build.OVERLAYS_DIR / "usr/lib/atlas/config-default/templates"
    context = render.standard_context(role="secondary", hostname="shop2", data_root="/srv/atlas",
                                      settings=Settings(sync_interval_s=120).to_json())
    files = render.render_tree(templates, context)
    dropin = files[PurePosixPath("etc/systemd/system/atlas-sync.timer.d/interval.conf")].decode()
    assert "OnUnitInactiveSec=120s" in dropin
    assert_restates_every_monotonic_timer(
        dropin, build.OVERLAYS_DIR / "usr/lib/systemd/system/atlas-sync.timer")


MONOTONIC = ("OnActiveSec", "OnBootSec", "OnStartupSec", "OnUnitActiveSec", "OnUnitInactiveSec")


def assert_restates_every_monotonic_timer(dropin: str, unit: Path) -> None:
    """An empty assignment to any monotonic timer setting resets all of them: a drop-in
    that resets must give back every one the unit has, or the timer never fires."""
    lines = dropin.splitlines()
    if not any(line.endswith("=") and line[:-1] in MONOTONIC for line in lines):
        return
    base = {line.split("=")[0] for line in unit.read_text().splitlines()
            if line.split("=")[0] in MONOTONIC}
    given = {line.split("=")[0] for line in lines if "=" in line and not line.endswith("=")}
    assert base <= given, f"the drop-in resets the timers but drops {sorted(base - given)}"


def test_sshd_reads_the_runtime_authorized_keys() -> None:

    drop_in = (build.OVERLAYS_DIR / "etc/ssh/sshd_config.d/atlas-sync.conf").read_text().splitlines()
    assert f"AuthorizedKeysFile .ssh/authorized_keys {Layout().authorized_keys_dir}/%u" in drop_in
