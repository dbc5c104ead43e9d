"""Every ATLAS service unit is scored offline (the host's `systemd-analyze security
--offline`) against its budget in testkit/exposure.py; the image tier measures the same in a
booted guest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from atlas_services import door
from testkit import exposure
from testkit.repo import REPO

UNITS = REPO / "overlays/usr/lib/systemd/system"


def score_offline(unit_text: str, name: str, tmp_path: Path) -> float:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / name).write_text(unit_text)
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={root}", name],
                            capture_output=True, text=True, check=False)
    if "Unknown command verb" in result.stderr or "unrecognized option" in result.stderr:
        pytest.skip("this systemd-analyze cannot score offline")
    return exposure.overall(result.stdout + result.stderr)


def test_every_atlas_service_has_a_budget() -> None:
    units = {p.name for p in UNITS.glob("atlas-*.service")}
    assert units == set(exposure.BUDGET) - {"atlas-door.service"}


@pytest.mark.parametrize("name", sorted(exposure.BUDGET))
def test_each_unit_scores_within_its_budget(name: str, tmp_path: Path) -> None:
    if name == "atlas-door.service":
        text = "[Service]\nExecStart=/usr/bin/atlas sync-serve\n" + "\n".join(door.SANDBOX) + "\n"
    else:
        text = (UNITS / name).read_text()
    assert score_offline(text, name, tmp_path) <= exposure.BUDGET[name] + exposure.OFFLINE_SLACK


# Each of these gives a unit a mount namespace of its own (systemd.exec(5)); a data set the
# role service mounted inside one would be seen by no other service.
MOUNT_NAMESPACE_OPTIONS = (
    "PrivateTmp", "PrivateDevices", "PrivateMounts", "PrivateIPC", "ProtectSystem",
    "ProtectHome", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
    "ProtectControlGroups", "ProtectProc", "ProcSubset", "ReadOnlyPaths", "ReadWritePaths",
    "InaccessiblePaths", "ExecPaths", "NoExecPaths", "TemporaryFileSystem", "BindPaths",
    "BindReadOnlyPaths", "RootDirectory", "RootImage", "MountAPIVFS", "MountImages",
    "ExtensionImages", "ExtensionDirectories", "LogNamespace", "ProtectHostname",
)


def test_the_role_service_mounts_the_data_set_for_the_whole_system() -> None:
    settings = [line.split("=", 1)[0].strip() for line in
                (UNITS / "atlas-role.service").read_text().splitlines()
                if "=" in line and not line.lstrip().startswith("#")]
    assert not set(settings) & set(MOUNT_NAMESPACE_OPTIONS)
