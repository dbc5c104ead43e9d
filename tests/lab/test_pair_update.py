"""Updates on two booted servers: a good version is tried on the secondary while the primary
keeps its own, then promoted; a broken version (its web probe fails) turns the secondary red,
is refused promotion while the primary stays green, and is rolled back; a promotion is
rolled back on both. The steps' timings go to test-artifacts/update-report.json."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas_services.store import bundle
from testkit.lab import facts, pair
from testkit.lab.machine import Machine
from testkit.lab.pace import PACE

log = logging.getLogger("tests")

REQUIRED_GREEN = 2
GREEN_CYCLES_BASE_S = 300.0  # per cycle asked for, on the reference machine (see pace)
GOOD, BROKEN = "0.1.1", "0.1.2"
# Appended to the broken version's web probe: every check fails, as a version that broke
# the web service would make it.
BREAK_WEB = '''

def _broken_check(self: WebProbe) -> Outcome:
    return Outcome.failed("this build breaks the web service (lab: a broken update)")


WebProbe.check = _broken_check  # type: ignore[method-assign]
'''
FIGURES: dict[str, Any] = {}


def make_atlas_bundle(out: Path, version: str, *, broken: bool = False) -> Path:
    """This tree's atlas_services as a signed bundle of `version`, signed with the key the
    built image trusts (build.py's development key)."""
    import build

    payload = out / f"payload-{version}"
    shutil.copytree(build.PACKAGE_DIR, payload / "atlas_services",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    init = payload / "atlas_services/__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{build.ATLAS_VERSION}"',
                                             f'__version__ = "{version}"'))
    if broken:
        web = payload / "atlas_services/verify/probes/web.py"
        web.write_text(web.read_text() + BREAK_WEB)
    archive, _ = bundle.make_bundle(payload, name="atlas_services", version=version,
                                    formats=bundle.ATLAS_SERVICES_FORMATS, out_dir=out,
                                    signing_key=bundle.load_signing_key(build.DEV_SIGNING_KEY))
    return archive


def copy_in(machine: Machine, archive: Path) -> str:
    """Put a bundle and its signature into /root on the machine; returns the bundle's path."""
    for path in (archive, archive.with_name(archive.name + bundle.SIGNATURE_SUFFIX)):
        machine.ssh(f"base64 -d > /root/{path.name}",
                    input=base64.b64encode(path.read_bytes()).decode())
    return f"/root/{archive.name}"


def selected(machine: Machine) -> str | None:
    rows = json.loads(machine.ssh("atlas module list --json").stdout)
    return next((r["version"] for r in rows if r["module"] == "atlas_services" and r["selected"]), None)


def running(machine: Machine) -> str:
    return machine.ssh("atlas --version").stdout.split()[-1]


def timed(machine: Machine, command: str) -> tuple[float, Any]:
    start = time.monotonic()
    result = machine.ssh(command, check=False)
    return time.monotonic() - start, result


def green_cycles(secondary: Machine, count: int) -> None:
    """Run the secondary's Verifier until `count` cycles in a row were green."""
    deadline, streak = time.monotonic() + PACE.limit(GREEN_CYCLES_BASE_S * count), 0
    while streak < count:
        if time.monotonic() > deadline:
            pytest.fail("the secondary did not verify green in a row:\n"
                        + secondary.ssh("atlas verify status", check=False).stdout)
        streak = streak + 1 if facts.verify_green(secondary) else 0


@pytest.fixture(scope="module", autouse=True)
def short_trial(the_pair: pair.Pair, artifacts_dir: Path) -> Iterator[None]:
    """A short trial on the shared pair."""
    try:
        pair.set_settings(the_pair.by_role("primary"), "lab: a short trial for updates",
                          promote_green_cycles=REQUIRED_GREEN)
        assert the_pair.by_role("secondary").ssh("atlas sync --now", check=False).returncode == 0
        yield
    finally:
        (artifacts_dir / "update-report.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bundles")
    return {GOOD: make_atlas_bundle(out, GOOD), BROKEN: make_atlas_bundle(out, BROKEN, broken=True)}


def test_a_good_version_is_tried_on_the_secondary_then_promoted(
        the_pair: pair.Pair, bundles: dict[str, Path]) -> None:
    primary, secondary = the_pair.by_role("primary"), the_pair.by_role("secondary")
    before = selected(primary)
    path = copy_in(primary, bundles[GOOD])

    staging, staged = timed(primary, f"atlas update stage {path}")
    assert staged.returncode == 0, staged.stderr
    syncing, synced = timed(secondary, "atlas sync --now")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    FIGURES["stage_s"], FIGURES["stage_to_secondary_running_s"] = staging, staging + syncing

    assert (selected(primary), selected(secondary)) == (before, GOOD)
    assert running(secondary) == GOOD and running(primary) != GOOD
    refused = primary.ssh("atlas update promote", check=False)
    assert refused.returncode == 2 and "of the 2 consecutive cycles" in refused.stderr

    green_cycles(secondary, REQUIRED_GREEN)
    status = json.loads(primary.ssh("atlas update status --json").stdout)
    assert status["staged"][0]["green_cycles"] >= REQUIRED_GREEN and status["staged"][0]["promotable"], (
        json.dumps(status, indent=2) + "\nthe secondary's last cycles:\n"
        + secondary.ssh("tail -n 4 /var/lib/atlas/verify/history.jsonl", check=False).stdout)
    promoting, promoted = timed(primary, "atlas update promote")
    assert promoted.returncode == 0, promoted.stderr
    FIGURES["promote_s"] = promoting
    assert selected(primary) == GOOD and running(primary) == GOOD
    assert facts.verify_green(primary)


def test_a_broken_version_goes_red_on_the_secondary_is_refused_and_rolled_back(
        the_pair: pair.Pair, bundles: dict[str, Path]) -> None:
    primary, secondary = the_pair.by_role("primary"), the_pair.by_role("secondary")
    before = selected(primary)
    path = copy_in(primary, bundles[BROKEN])
    assert primary.ssh(f"atlas update stage {path}", check=False).returncode == 0
    assert secondary.ssh("atlas sync --now", check=False).returncode == 0
    assert (selected(primary), selected(secondary)) == (before, BROKEN)

    for _ in range(REQUIRED_GREEN):
        red = secondary.ssh("atlas verify --now --json", check=False)
        assert red.returncode == 1
        web = next(r for r in json.loads(red.stdout)["results"] if r["probe"] == "web")
        assert web["status"] == "failed" and "broken update" in web["message"]
        assert facts.verify_green(primary), "the primary must stay green while the secondary is red"
    refused = primary.ssh("atlas update promote", check=False)
    assert refused.returncode == 2 and "0 of the 2" in refused.stderr and "web" in refused.stderr
    assert selected(primary) == before

    rolling, rolled = timed(primary, "atlas update rollback")
    assert rolled.returncode == 0, rolled.stderr
    syncing, synced = timed(secondary, "atlas sync --now")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    FIGURES["rollback_of_trial_primary_s"], FIGURES["rollback_of_trial_secondary_sync_s"] = rolling, syncing
    assert (selected(primary), selected(secondary)) == (before, before)
    green_cycles(secondary, 1)


def test_a_promotion_is_rolled_back_on_both(the_pair: pair.Pair) -> None:
    primary, secondary = the_pair.by_role("primary"), the_pair.by_role("secondary")
    assert selected(primary) == GOOD
    rolling, rolled = timed(primary, "atlas update rollback")
    assert rolled.returncode == 0, rolled.stderr
    syncing, synced = timed(secondary, "atlas sync --now")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    FIGURES["rollback_primary_s"], FIGURES["rollback_secondary_sync_s"] = rolling, syncing
    previous = selected(primary)
    assert previous != GOOD and selected(secondary) == previous
    assert running(primary) == running(secondary) == previous
    assert facts.verify_green(primary)
    green_cycles(secondary, 1)
