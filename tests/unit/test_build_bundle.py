"""build.py signs the image's own atlas_services bundle with the key it is given."""

from __future__ import annotations

from pathlib import Path

import pytest

import atlas_services
import build
from atlas_services.errors import Refused
from atlas_services.paths import Layout
from atlas_services.store import bundle

KEYS = Path(__file__).resolve().parent.parent / "keys"


def test_the_staged_bundle_verifies_against_the_staged_vendor_key(tmp_path: Path) -> None:
    archive = build.stage_bundle(tmp_path, KEYS / "test-signing.key", epoch=1700000000)
    assert archive.parent == Layout.under(tmp_path).image_bundles
    vendor = Layout.under(tmp_path).vendor_key
    verified = bundle.read_bundle(archive, None, vendor)
    manifest = verified.manifest
    assert (manifest.name, manifest.version) == ("atlas_services", atlas_services.__version__)
    assert "atlas_services/__main__.py" in verified.manifest.files
    assert not any("__pycache__" in f for f in verified.manifest.files)


def test_the_staged_bundle_is_refused_under_another_vendor_key(tmp_path: Path) -> None:
    archive = build.stage_bundle(tmp_path, KEYS / "test-signing.key", epoch=0)
    with pytest.raises(Refused, match="bad signature"):
        bundle.read_bundle(archive, None, KEYS / "other-signing.pub")


def test_signing_key_option_is_parsed() -> None:
    request = build.parse_build(["--signing-key", str(KEYS / "test-signing.key")])
    assert request.signing_key == KEYS / "test-signing.key"
    assert build.signing_key_path(request) == KEYS / "test-signing.key"


def test_a_missing_signing_key_is_refused(tmp_path: Path) -> None:
    request = build.parse_build(["--signing-key", str(tmp_path / "nope.key")])
    with pytest.raises(Refused, match="does not exist"):
        build.signing_key_path(request)
