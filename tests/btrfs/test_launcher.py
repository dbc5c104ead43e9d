"""/usr/bin/atlas runs the selected atlas_services from the module store, else the image's copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import atlas_services
from atlas_services.store import bundle
from atlas_services.store.modules import ModuleStore
from testkit.repo import REPO, TEST_KEY, TEST_PUB

LAUNCHER = REPO / "overlays/usr/bin/atlas"


def launcher_for(store: Path, tmp_path: Path) -> Path:
    """The shipped launcher, pointed at a test store instead of /var/lib/atlas."""
    text = LAUNCHER.read_text()
    assert '"/var/lib/atlas/modules/atlas_services/selected"' in text
    text = text.replace("/var/lib/atlas/modules", str(store))
    text = text.replace("/var/cache/atlas", str(tmp_path / "cache"))
    path = tmp_path / "atlas"
    path.write_text(text)
    return path


def run(launcher: Path) -> subprocess.CompletedProcess[str]:
    # The image's own copy is the repository's package here.
    return subprocess.run([sys.executable, str(launcher), "--version"], capture_output=True, text=True,
                          check=False, cwd="/", env={**os.environ, "PYTHONPATH": str(REPO)})


def install_version(store: ModuleStore, tmp_path: Path, version: str, *, broken: bool = False) -> None:
    payload = tmp_path / f"payload-{version}"
    shutil.copytree(REPO / "atlas_services", payload / "atlas_services",
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = payload / "atlas_services/__init__.py"
    init.write_text(init.read_text().replace(f'"{atlas_services.__version__}"', f'"{version}"'))
    if broken:
        (payload / "atlas_services/__main__.py").write_text("this is not python\n")
    archive, _ = bundle.make_bundle(payload, name="atlas_services", version=version,
                                    formats=bundle.ATLAS_SERVICES_FORMATS, out_dir=tmp_path / "out",
                                    signing_key=bundle.load_signing_key(TEST_KEY))
    store.install(archive, None, TEST_PUB)


@pytest.fixture
def store(store_fs: Path) -> ModuleStore:
    return ModuleStore(store_fs / "modules", formats_file=store_fs / "formats.json")


def test_without_a_selection_the_image_copy_runs(store: ModuleStore, tmp_path: Path) -> None:
    result = run(launcher_for(store.root, tmp_path))
    assert result.stdout.strip() == f"atlas {atlas_services.__version__}"


def test_the_selected_version_runs(store: ModuleStore, tmp_path: Path) -> None:
    install_version(store, tmp_path, "9.9.9")
    store.select("atlas_services", "9.9.9")
    result = run(launcher_for(store.root, tmp_path))
    assert result.stdout.strip() == "atlas 9.9.9", result.stderr


def test_a_broken_selected_version_falls_back_to_the_image_copy(store: ModuleStore, tmp_path: Path) -> None:
    install_version(store, tmp_path, "9.9.9", broken=True)
    store.select("atlas_services", "9.9.9")
    result = run(launcher_for(store.root, tmp_path))
    assert result.stdout.strip() == f"atlas {atlas_services.__version__}"
    assert "does not load" in result.stderr


def test_seed_installs_and_selects_the_image_bundle_once(store: ModuleStore, tmp_path: Path) -> None:
    import build
    build.stage_bundle(tmp_path / "tree", TEST_KEY, epoch=0)
    bundles = tmp_path / "tree/usr/lib/atlas/bundles"
    vendor = tmp_path / "tree/usr/lib/atlas/vendor.pub"
    assert store.seed(bundles, vendor) == [f"atlas_services {atlas_services.__version__}"]
    assert store.selected("atlas_services") == atlas_services.__version__
    assert store.seed(bundles, vendor) == []
