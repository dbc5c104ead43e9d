"""Bundles: signature, manifest schema and archive members are checked before anything is written."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from atlas_services.errors import Refused
from atlas_services.store import bundle

KEYS = Path(__file__).resolve().parent.parent / "keys"
TEST_KEY = KEYS / "test-signing.key"
TEST_PUB = KEYS / "test-signing.pub"
OTHER_KEY = KEYS / "other-signing.key"
FORMATS = bundle.Formats(reads={"config": (1,), "state": (1,)}, writes={"config": 1, "state": 1})


def make_payload(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg/__init__.py").write_text("VERSION = 1\n")
    (source / "pkg/tool").write_text("#!/bin/sh\n")
    (source / "pkg/tool").chmod(0o755)
    (source / "pkg/alias.py").symlink_to("__init__.py")
    (source / "pkg/__pycache__").mkdir()
    (source / "pkg/__pycache__/x.pyc").write_bytes(b"junk")
    return source


def make(tmp_path: Path, key: Path = TEST_KEY, version: str = "1.0.0") -> tuple[Path, Path]:
    return bundle.make_bundle(make_payload(tmp_path), name="demo", version=version, formats=FORMATS,
                              out_dir=tmp_path / "out", signing_key=bundle.load_signing_key(key))


def craft(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]],
          manifest: dict[str, object] | None = None, key: Path = TEST_KEY) -> Path:
    """A signed archive with exactly the given members (after a manifest)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        text = json.dumps(manifest or {"format": 1, "name": "demo", "version": "1.0.0",
                                       "formats": FORMATS.to_json(), "files": {}, "links": {}}).encode()
        info = tarfile.TarInfo(bundle.MANIFEST_NAME)
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text))
        for member, data in members:
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data) if data else None)
    path = tmp_path / "crafted.atlas"
    path.write_bytes(buffer.getvalue())
    path.with_name(path.name + ".sig").write_text(
        bundle.sign(buffer.getvalue(), bundle.load_signing_key(key)))
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def test_a_well_made_bundle_is_accepted_and_lists_every_file(tmp_path: Path) -> None:
    archive, _ = make(tmp_path)
    verified = bundle.read_bundle(archive, None, TEST_PUB)
    assert verified.manifest.name == "demo" and verified.manifest.version == "1.0.0"
    assert set(verified.manifest.files) == {"pkg/__init__.py", "pkg/tool"}
    assert verified.manifest.files["pkg/tool"].mode == 0o755
    assert verified.manifest.links == {"pkg/alias.py": "__init__.py"}


def test_the_same_inputs_make_the_same_bundle_bytes(tmp_path: Path) -> None:
    first, _ = make(tmp_path / "a")
    second, _ = make(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()


def test_missing_signature_is_refused(tmp_path: Path) -> None:
    archive, signature = make(tmp_path)
    signature.unlink()
    with pytest.raises(Refused, match="no signature"):
        bundle.read_bundle(archive, None, TEST_PUB)


def test_signature_by_another_key_is_refused(tmp_path: Path) -> None:
    archive, _ = make(tmp_path, key=OTHER_KEY)
    with pytest.raises(Refused, match="bad signature"):
        bundle.read_bundle(archive, None, TEST_PUB)


def test_a_tampered_archive_is_refused(tmp_path: Path) -> None:
    archive, _ = make(tmp_path)
    data = bytearray(archive.read_bytes())
    at = data.index(b"VERSION = 1")
    data[at + 10] = ord("2")
    archive.write_bytes(bytes(data))
    with pytest.raises(Refused, match="bad signature"):
        bundle.read_bundle(archive, None, TEST_PUB)


def test_a_signed_file_that_differs_from_its_manifest_checksum_is_refused(tmp_path: Path) -> None:
    manifest = {"format": 1, "name": "demo", "version": "1.0.0", "formats": FORMATS.to_json(),
                "files": {"a": {"sha256": "0" * 64, "mode": 0o644}}, "links": {}}
    archive = craft(tmp_path, [(member("payload/a"), b"hello")], manifest)
    with pytest.raises(Refused, match="tampered"):
        bundle.read_bundle(archive, None, TEST_PUB)


def test_garbage_signature_is_refused(tmp_path: Path) -> None:
    archive, signature = make(tmp_path)
    signature.write_text("not hex at all\n")
    with pytest.raises(Refused, match="not hex"):
        bundle.read_bundle(archive, None, TEST_PUB)


@pytest.mark.parametrize("info,reason", [
    (member("/etc/passwd"), "absolute path"),
    (member("payload/../../etc/passwd"), "'..'"),
    (member("elsewhere/file"), "outside payload"),
    (member("payload/dev", tarfile.CHRTYPE), "device file"),
    (member("payload/disk", tarfile.BLKTYPE), "device file"),
    (member("payload/pipe", tarfile.FIFOTYPE), "FIFO"),
    (member("payload/up", tarfile.SYMTYPE, "../../etc"), "leaves the tree"),
    (member("payload/abs", tarfile.SYMTYPE, "/etc/shadow"), "leaves the tree"),
    (member("payload/hard", tarfile.LNKTYPE, "/etc/shadow"), "leaves the tree"),
    (member("payload/hard", tarfile.LNKTYPE, "manifest.json"), "leaves the tree"),
])
def test_unsafe_members_are_refused(tmp_path: Path, info: tarfile.TarInfo, reason: str) -> None:
    archive = craft(tmp_path, [(info, b"")])
    with pytest.raises(Refused, match=reason):
        bundle.read_bundle(archive, None, TEST_PUB)


def test_a_symlink_escaping_through_another_symlink_is_refused(tmp_path: Path) -> None:
    # "here" points at the payload root, so "here/.." is outside although it looks inside.
    archive = craft(tmp_path, [(member("payload/here", tarfile.SYMTYPE, "."), b""),
                               (member("payload/out", tarfile.SYMTYPE, "here/.."), b"")])
    with pytest.raises(Refused, match="leaves the tree"):
        bundle.read_bundle(archive, None, TEST_PUB)


def test_a_file_written_through_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    archive = craft(tmp_path, [(member("payload/d", tarfile.SYMTYPE, "."), b""),
                               (member("payload/d/x"), b"data")])
    with pytest.raises(Refused, match="not a directory"):
        bundle.read_bundle(archive, None, TEST_PUB)


def test_a_member_twice_is_refused(tmp_path: Path) -> None:
    archive = craft(tmp_path, [(member("payload/a"), b"1"), (member("payload/a"), b"2")])
    with pytest.raises(Refused, match="twice"):
        bundle.read_bundle(archive, None, TEST_PUB)


def test_an_in_tree_symlink_is_accepted(tmp_path: Path) -> None:
    manifest = {"format": 1, "name": "demo", "version": "1.0.0", "formats": FORMATS.to_json(),
                "files": {}, "links": {"sub/up": "../x"}}
    archive = craft(tmp_path, [(member("payload/sub", tarfile.DIRTYPE), b""),
                               (member("payload/sub/up", tarfile.SYMTYPE, "../x"), b"")], manifest)
    assert bundle.read_bundle(archive, None, TEST_PUB).manifest.links == {"sub/up": "../x"}


@pytest.mark.parametrize("change,reason", [
    ({"format": 2}, "format must be 1"),
    ({"name": "Bad Name"}, "name must be"),
    ({"version": "selected"}, "version must start with a digit"),
    ({"formats": {"reads": {}}}, "exactly 'reads' and 'writes'"),
    ({"formats": {"reads": {"config": [1]}, "writes": {"config": 2}}}, "must read what it writes"),
    ({"files": {"../x": {"sha256": "0" * 64, "mode": 420}}}, "not a plain relative path"),
    ({"files": {"x": {"sha256": "0" * 64, "mode": 0o4755}}}, "mode must be"),
    ({"surprise": 1}, "unknown field"),
])
def test_manifest_schema_refusals(change: dict[str, object], reason: str) -> None:
    data: dict[str, object] = {"format": 1, "name": "demo", "version": "1.0.0",
                               "formats": FORMATS.to_json(), "files": {}, "links": {}}
    data.update(change)
    with pytest.raises(Refused, match=reason):
        bundle.Manifest.from_json(data)


def test_a_manifest_that_is_not_json_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(bundle.MANIFEST_NAME)
        info.size = 5
        archive.addfile(info, io.BytesIO(b"{oops"))
    path = tmp_path / "x.atlas"
    path.write_bytes(buffer.getvalue())
    key = bundle.load_signing_key(TEST_KEY)
    path.with_name("x.atlas.sig").write_text(bundle.sign(buffer.getvalue(), key))
    with pytest.raises(Refused, match="not JSON"):
        bundle.read_bundle(path, None, TEST_PUB)


def test_formats_a_version_cannot_read_are_named() -> None:
    formats = bundle.Formats(reads={"config": (1, 2), "state": (2,)}, writes={"config": 2, "state": 2})
    assert formats.unreadable({"config": 1, "state": 2}) == []
    assert formats.unreadable({"config": 3, "state": 1}) == ["config 3", "state 1"]
    assert formats.unreadable({"sync": 1}) == ["sync 1"]
