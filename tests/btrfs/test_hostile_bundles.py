"""Bundles that lie: each is refused by the real module store on real btrfs with one clear
reason (never a crash), nothing in the store changes, and an unsigned giant costs no memory."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from atlas_services.errors import Refused
from atlas_services.store import bundle
from atlas_services.store.modules import ModuleStore
from testkit.bundles import make_bundle
from testkit.repo import REPO, TEST_KEY, TEST_PUB
from testkit.trees import fingerprint

FORMATS = {"reads": {"config": [1], "state": [1]}, "writes": {"config": 1, "state": 1}}


@pytest.fixture
def store(store_fs: Path, tmp_path: Path) -> ModuleStore:
    store = ModuleStore(store_fs / "modules", formats_file=store_fs / "formats.json")
    store.install(make_bundle(tmp_path / "good", "1.0.0"), None, TEST_PUB)
    return store


def manifest_member(files: dict[str, bytes] | None = None) -> bytes:
    import hashlib

    manifest = {"format": 1, "name": "demo", "version": "2.0.0", "formats": FORMATS, "links": {},
                "files": {k: {"sha256": hashlib.sha256(v).hexdigest(), "mode": 0o644}
                          for k, v in (files or {}).items()}}
    text = json.dumps(manifest).encode()
    info = tarfile.TarInfo(bundle.MANIFEST_NAME)
    info.size = len(text)
    return info.tobuf(tarfile.GNU_FORMAT) + _padded(text)


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def header(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", data: bytes = b"") -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(tarfile.GNU_FORMAT) + (_padded(data) if kind == tarfile.REGTYPE else b"")


def gnu_sparse(name: str, data: bytes, real_size: int) -> bytes:
    """A GNU sparse member: `data` stored, `real_size` bytes when extracted."""
    raw = bytearray(header(name, data=data)[:512])

    def octal(n: int, width: int = 12) -> bytes:
        return b"%0*o\0" % (width - 1, n)

    raw[156:157] = tarfile.GNUTYPE_SPARSE
    raw[386:398] = octal(real_size - len(data))
    raw[398:410] = octal(len(data))
    raw[482] = 0
    raw[483:495] = octal(real_size)
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\0 " % sum(raw)
    return bytes(raw) + _padded(data)


def signed(tmp_path: Path, *members: bytes, name: str = "hostile.atlas") -> Path:
    data = b"".join(members) + b"\0" * 1024
    path = tmp_path / name
    path.write_bytes(data)
    path.with_name(path.name + ".sig").write_text(bundle.sign(data, bundle.load_signing_key(TEST_KEY)))
    return path


def refused_and_unchanged(store: ModuleStore, archive: Path, reason: str) -> None:
    before = fingerprint(store.root)
    with pytest.raises(Refused, match=reason):
        store.install(archive, None, TEST_PUB)
    assert fingerprint(store.root) == before
    assert store.versions("demo") == ["1.0.0"]


def test_a_sparse_member_that_would_expand_is_refused(store: ModuleStore, tmp_path: Path) -> None:
    archive = signed(tmp_path, manifest_member({"big": b"x" * 3584}),
                     gnu_sparse("payload/big", b"x" * 3584, 512 * 2**20))
    assert archive.stat().st_size < 8192
    refused_and_unchanged(store, archive, "is a sparse file")


@pytest.mark.parametrize("members,reason", [
    # a hard link whose target ends in '/' (it used to crash with KeyError)
    ([header("payload/a", data=b"a"), header("payload/hard", tarfile.LNKTYPE, "payload/a/")],
     "leaves the tree"),
    # a symlink with an empty target (it used to crash in symlink_to)
    ([header("payload/empty", tarfile.SYMTYPE, "")], "empty target"),
    # a file listed before the symlink that takes its parent's name
    ([header("payload/d/x", data=b"x"), header("payload/e", tarfile.DIRTYPE),
      header("payload/d", tarfile.SYMTYPE, "e")], "lies under 'payload/d', which is not a directory"),
    # a regular file whose name ends in '/'
    ([header("payload/f/", data=b"f")], "ends in '/'"),
])
def test_members_that_once_crashed_extraction_are_refused(
        store: ModuleStore, tmp_path: Path, members: list[bytes], reason: str) -> None:
    refused_and_unchanged(store, signed(tmp_path, manifest_member(), *members), reason)


def test_a_signature_that_is_a_directory_is_refused(store: ModuleStore, tmp_path: Path) -> None:
    archive = make_bundle(tmp_path / "b", "2.0.0")
    sig = archive.with_name(archive.name + ".sig")
    sig.unlink()
    sig.mkdir()
    refused_and_unchanged(store, archive, "is a directory")


def test_too_many_members_or_too_much_data_are_refused(store: ModuleStore, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    many = [header(f"payload/d{n}", tarfile.DIRTYPE) for n in range(60)]
    monkeypatch.setattr(bundle, "MAX_MEMBERS", 50)
    refused_and_unchanged(store, signed(tmp_path, manifest_member(), *many, name="many.atlas"),
                          "more than 50 members")
    monkeypatch.setattr(bundle, "MAX_EXPANDED", 4096)
    files = {f"f{n}": bytes(1000) for n in range(5)}
    big = [header(f"payload/{k}", data=v) for k, v in files.items()]
    refused_and_unchanged(store, signed(tmp_path, manifest_member(files), *big, name="big.atlas"),
                          "expand to more than")


# The peak of this process's own memory (VmHWM, in kB). Not getrusage's ru_maxrss: Linux
# carries that across exec, so the child would report the peak of the pytest that spawned it.
MEASURE = """
import re, sys
from pathlib import Path
from atlas_services.errors import Refused
from atlas_services.store import bundle
try:
    bundle.read_bundle(Path(sys.argv[1]), None, Path(sys.argv[2]))
except Refused as err:
    print(err, file=sys.stderr)
print(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
"""


@pytest.mark.parametrize("size,reason", [(2**30, "larger than"), (60 * 2**20, "bad signature")])
def test_an_unsigned_giant_costs_no_more_than_the_cap(tmp_path: Path, size: int, reason: str) -> None:
    giant = tmp_path / "giant.atlas"
    with giant.open("wb") as stream:
        stream.truncate(size)
    giant.with_name(giant.name + ".sig").write_text("00" * 64 + "\n")
    result = subprocess.run([sys.executable, "-c", MEASURE, str(giant), str(TEST_PUB)], cwd=REPO,
                            capture_output=True, text=True, check=True)
    assert reason in result.stderr
    peak_mib = int(result.stdout) / 1024
    # Once 3.2 GB for 1 GiB: now nothing is read above the cap; below it the file and the
    # two copies the ed25519 check makes (signature + message, and its output).
    assert peak_mib < 64 + min(size, bundle.MAX_BUNDLE) / 2**20 * 3.3, peak_mib
