"""The drift report through the real wire: the primary's manifest (read below a system root
named on its forced command line) against the secondary's."""

from __future__ import annotations

import json
import subprocess

from atlas_services.sync.drift import DriftClass, DriftItem
from testkit.bundles import make_bundle
from testkit.syncpair import Pair, fake_system_root


def nginx_version() -> str:
    return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "nginx"], capture_output=True,
                          text=True, check=True).stdout


def with_roots(pair: Pair, *, kernel: str | None = None,
               package_versions: dict[str, str] | None = None) -> None:
    """Both servers read their facts below a copy of this host's; the primary's changed."""
    fake_system_root(pair.primary.root, kernel=kernel, package_versions=package_versions)


def item(items: tuple[DriftItem, ...], name: str) -> DriftItem:
    return next(d for d in items if d.item == name)


def test_same_environment_drifts_nowhere(pair: Pair) -> None:
    with_roots(pair)
    result = pair.sync()
    assert result.status == "ok", result.last_error
    assert {d.item: d.klass for d in result.drift if d.klass is not DriftClass.EQUAL} == {}
    categories = {"packages", "kernel", "modules", "cpu", "memory", "nics", "disks"}
    assert categories <= {d.item for d in result.drift}


def test_a_changed_package_version_is_reported(pair: Pair) -> None:
    with_roots(pair, package_versions={"nginx": "1.99.0-1"})
    result = pair.sync()
    found = item(result.drift, "package nginx")
    assert found.klass is DriftClass.INCOMPATIBLE
    assert f"1.99.0-1 on the primary, {nginx_version()} on the secondary" in found.reason


def test_a_different_kernel_is_reported(pair: Pair) -> None:
    with_roots(pair, kernel="99.1.0-1-amd64")
    result = pair.sync()
    found = item(result.drift, "kernel")
    assert found.klass is DriftClass.INCOMPATIBLE  # the secondary's series is older
    assert "99.1.0-1-amd64 on the primary" in found.reason


def test_a_missing_module_version_is_reported_before_the_sync_installs_it(pair: Pair) -> None:
    with_roots(pair)
    pair.primary.install(make_bundle(pair.tmp / "p", "2.0"), select=True)

    checked = pair.cli("--now", "--check", "--json")

    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    drift = {d["item"]: d for d in report["drift"]}
    assert drift["module demo 2.0"]["class"] == "incompatible"
    assert drift["selection demo"]["class"] == "incompatible"
    assert report["fetch_modules"] == [{"module": "demo", "version": "2.0", "parent": None}]
    assert pair.secondary.modules.versions("demo") == ["1.0"]  # --check changed nothing
    assert not pair.layout.sync_state.exists()

    result = pair.sync()
    assert result.status == "ok", result.last_error
    assert item(result.drift, "modules").klass is DriftClass.EQUAL
