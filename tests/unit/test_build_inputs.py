"""build.py's pure parts: rendering, package lists, input hashing, arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import build
from atlas_services.errors import AtlasError


def test_package_lists_skip_comments_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.list").write_text("# a comment\nnginx\n\npostfix  # inline\n")
    (tmp_path / "b.list").write_text("nginx\nsamba\n")
    (tmp_path / "ignored.txt").write_text("not-a-package\n")
    assert build.read_package_lists(tmp_path) == ["nginx", "postfix", "samba"]


def test_shipped_package_lists_name_every_required_package() -> None:
    names = set(build.read_package_lists(build.IMAGE_DIR / "packages"))
    required = {"linux-image-amd64", "systemd", "udev", "dbus", "openssh-server", "btrfs-progs",
                "mdadm", "nginx", "postfix", "dovecot-imapd", "postgresql", "samba", "python3",
                "python3-jinja2", "python3-pydbus", "python3-systemd", "python3-btrfsutil"}
    assert required <= names


def render(tmp_path: Path, **overrides: object) -> str:
    request = build.BuildRequest(output_dir=tmp_path / "out", image_version="9.8.7",
                                 clean=False, verbose=False)
    values = build.template_values(request, 1700000000, tmp_path / "tree")
    values.update(overrides)
    build.render_config(build.IMAGE_DIR, tmp_path / "mkosi", values)
    return (tmp_path / "mkosi" / "mkosi.conf").read_text()


def test_rendered_config_carries_version_epoch_and_packages(tmp_path: Path) -> None:
    conf = render(tmp_path)
    assert "ImageVersion=9.8.7" in conf
    assert "SourceDateEpoch=1700000000" in conf
    assert "Packages=nginx" in conf
    assert "{{" not in conf
    assert f"ExtraTrees={build.OVERLAYS_DIR}:/" in conf
    # Plain files are copied, package lists are not (they are read into the template).
    assert (tmp_path / "mkosi/mkosi.pkgmngr/etc/apt/sources.list.d/mkosi.sources").exists()
    assert not (tmp_path / "mkosi/packages").exists()


def test_rendering_refuses_a_missing_value(tmp_path: Path) -> None:
    request = build.BuildRequest(output_dir=tmp_path, image_version="1", clean=False,
                                 verbose=False)
    values = build.template_values(request, 0, tmp_path)
    del values["image_version"]
    with pytest.raises(AtlasError, match="image_version"):
        build.render_config(build.IMAGE_DIR, tmp_path / "mkosi", values)


def test_image_never_enables_a_debug_archive_source() -> None:
    sources = (build.IMAGE_DIR / "mkosi.pkgmngr/etc/apt/sources.list.d/mkosi.sources").read_text()
    uris = [line for line in sources.splitlines() if line.startswith("URIs:")]
    assert uris and not any("debug" in line for line in uris)


def test_inputs_hash_changes_with_content_and_mode(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("one")
    first = build.inputs_hash(tmp_path, [tree])
    assert build.inputs_hash(tmp_path, [tree]) == first
    (tree / "f").write_text("two")
    second = build.inputs_hash(tmp_path, [tree])
    assert second != first
    (tree / "f").chmod(0o755)
    assert build.inputs_hash(tmp_path, [tree]) != second


def test_inputs_hash_ignores_bytecode_caches(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "m.py").write_text("x = 1\n")
    first = build.inputs_hash(tmp_path, [tree])
    (tree / "__pycache__").mkdir()
    (tree / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"junk")
    assert build.inputs_hash(tmp_path, [tree]) == first


@pytest.mark.parametrize("version,ok", [("0.1.0", True), ("1.2~rc1+g3", True), ("", False),
                                        ("../x", False), ("a b", False), ("-1", False)])
def test_image_version_pattern(version: str, ok: bool) -> None:
    assert build.valid_version(version) is ok


def test_parse_build_defaults() -> None:
    request = build.parse_build([])
    assert request.output_dir == build.DEFAULT_OUTPUT
    assert request.image_version == build.ATLAS_VERSION
    assert not request.clean


def run_build_py(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"] if user else []
    return subprocess.run([*prefix, sys.executable, str(build.REPO / "build.py"), *args],
                          capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                               "PYTHONDONTWRITEBYTECODE": "1"})


def test_bad_image_version_is_a_usage_error() -> None:
    result = run_build_py("--image-version", "../../etc")
    assert result.returncode == 2
    assert "--image-version" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_options_and_outputs() -> None:
    result = run_build_py("--help")
    assert result.returncode == 0
    for option in ("--output", "--image-version", "--clean", "flash"):
        assert option in result.stdout


def test_build_as_non_root_is_one_clear_line() -> None:
    result = run_build_py(user="nobody") if os.geteuid() == 0 else run_build_py()
    assert result.returncode == 2
    assert result.stderr == "build.py: building the image needs root — run it as root (sudo ./build.py)\n"
