"""Module bundles: the archive format, its manifest, its ed25519 signature, safe extraction.

A bundle is two files:

    NAME-VERSION.atlas       an uncompressed tar archive:
                               manifest.json      first member (schema below)
                               payload/...        the module's files
    NAME-VERSION.atlas.sig   the ed25519 signature of the whole .atlas file, in hex

manifest.json (format 1):

    {"format": 1, "name": "atlas_services", "version": "0.2.0",
     "formats": {"reads": {"config": [1], "state": [1, 2]}, "writes": {"config": 1, "state": 2}},
     "files": {"atlas_services/__init__.py": {"sha256": "…", "mode": 420}, …},
     "links": {"relative/link": "target"}}

`files` and `links` list every regular file and symlink under payload/ (paths relative to
payload/). A bundle is trusted when its signature verifies against the vendor key and every
member checks out; anything else is refused before a single file is written.

Keys are files holding hex: a public key (32 bytes) or a private seed (32 bytes, mode 0600).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from atlas_services import fsutil, untrusted
from atlas_services.errors import AtlasError, Refused

MANIFEST_NAME = "manifest.json"
PAYLOAD = "payload"
SUFFIX = ".atlas"
SIGNATURE_SUFFIX = ".sig"
MANIFEST_FORMAT = 1
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Versions start with a digit, so they never collide with the store's `selected`/`previous`.
VERSION_PATTERN = re.compile(r"[0-9][0-9A-Za-z.+~-]{0,63}")
FORMAT_KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
SKIPPED = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
MAX_LINK_DEPTH = 40
# What a bundle may be: read whole (the signature covers the whole file, and verifying it
# takes two more copies) only below this size, checked before a byte is read; expanded,
# never more than MAX_EXPANDED in MAX_MEMBERS members. atlas_services itself is well under
# 1 MiB in a few hundred members.
MAX_BUNDLE = 64 * 2**20
MAX_EXPANDED = 256 * 2**20
MAX_MEMBERS = 20_000
MAX_MANIFEST = 8 * 2**20
MAX_SIGNATURE = 4096


def _nacl() -> Any:
    try:
        import nacl.exceptions
        import nacl.signing
    except ImportError:
        raise AtlasError("python3-nacl is not installed", "install python3-nacl") from None
    return nacl


# ---------------------------------------------------------------- keys and signatures


def _read_hex(path: Path, what: str, size: int) -> bytes:
    try:
        text = " ".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
    except FileNotFoundError:
        raise Refused(f"{what} {path} does not exist") from None
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise Refused(f"{what} {path} is not a hex ed25519 key of {size} bytes")
    return raw


def load_verify_key(path: Path) -> Any:
    return _nacl().signing.VerifyKey(_read_hex(path, "public key", 32))


def load_signing_key(path: Path) -> Any:
    return _nacl().signing.SigningKey(_read_hex(path, "signing key", 32))


def public_key_hex(signing_key: Any) -> str:
    return bytes(signing_key.verify_key).hex()


def generate_key(private: Path, public: Path, comment: str) -> None:
    """Write a new key pair: the private seed under mode 0600, the public key beside it."""
    key = _nacl().signing.SigningKey.generate()
    private.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        fsutil.write_atomic(private, f"# {comment} (private)\n{bytes(key).hex()}\n", mode=0o600)
    finally:
        os.umask(old)
    fsutil.write_atomic(public, f"# {comment}\n{public_key_hex(key)}\n")


def sign(data: bytes, signing_key: Any) -> str:
    return bytes(signing_key.sign(data).signature).hex() + "\n"


def verify(data: bytes, signature_text: str, verify_key: Any, what: str) -> None:
    try:
        signature = bytes.fromhex(signature_text.strip())
    except ValueError:
        raise Refused(f"{what}: the signature file is not hex") from None
    if len(signature) != 64:
        raise Refused(f"{what}: the signature file does not hold an ed25519 signature")
    nacl = _nacl()
    try:
        verify_key.verify(data, signature)
    except nacl.exceptions.BadSignatureError:
        raise Refused(f"{what}: bad signature — the bundle was altered or not signed by the vendor",
                      "get the bundle again from its source") from None


# ---------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class Formats:
    """The state/config formats a version can read and the ones it writes."""

    reads: Mapping[str, tuple[int, ...]]
    writes: Mapping[str, int]

    def unreadable(self, on_disk: Mapping[str, int]) -> list[str]:
        """Formats on disk this version cannot read, as 'kind N' (a pure decision)."""
        return [f"{kind} {version}" for kind, version in sorted(on_disk.items())
                if version not in self.reads.get(kind, ())]

    def to_json(self) -> dict[str, Any]:
        return {"reads": {k: list(v) for k, v in sorted(self.reads.items())},
                "writes": dict(sorted(self.writes.items()))}


# What this atlas_services reads and writes; bump with every change of a format, so the
# module store refuses to select a version that cannot read what is on disk.
ATLAS_SERVICES_FORMATS = Formats(reads={"config": (1,), "state": (1,)}, writes={"config": 1, "state": 1})


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    mode: int


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    formats: Formats
    files: Mapping[str, FileEntry]
    links: Mapping[str, str]

    @classmethod
    def from_json(cls, data: Any, source: str = MANIFEST_NAME) -> Manifest:
        """Validate every field; a manifest that fails its schema is refused."""
        def bad(why: str) -> Refused:
            return Refused(f"{source} fails its schema: {why}")

        if not isinstance(data, dict):
            raise bad("not a JSON object")
        unknown = set(data) - {"format", "name", "version", "formats", "files", "links"}
        if unknown:
            raise bad(f"unknown field(s) {', '.join(sorted(unknown))}")
        if data.get("format") != MANIFEST_FORMAT:
            raise bad(f"format must be {MANIFEST_FORMAT}")
        name, version = data.get("name"), data.get("version")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise bad("name must be lower-case letters, digits and _")
        if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
            raise bad("version must start with a digit (letters, digits, . + ~ - follow)")
        return cls(name=name, version=version, formats=_formats(data.get("formats"), bad),
                   files=_files(data.get("files"), bad), links=_links(data.get("links", {}), bad))

    def to_json(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "name": self.name, "version": self.version,
                "formats": self.formats.to_json(),
                "files": {p: {"sha256": e.sha256, "mode": e.mode} for p, e in sorted(self.files.items())},
                "links": dict(sorted(self.links.items()))}


def _formats(data: Any, bad: Any) -> Formats:
    if not isinstance(data, dict) or set(data) != {"reads", "writes"}:
        raise bad("formats must have exactly 'reads' and 'writes'")
    reads, writes = data["reads"], data["writes"]
    if not isinstance(reads, dict) or not isinstance(writes, dict):
        raise bad("formats.reads and formats.writes must be objects")
    for kind in [*reads, *writes]:
        if not FORMAT_KIND_PATTERN.fullmatch(kind):
            raise bad(f"format kind {kind!r} is not a valid name")
    for kind, versions in reads.items():
        if not isinstance(versions, list) or not versions or not all(
                type(v) is int and v > 0 for v in versions):
            raise bad(f"formats.reads.{kind} must be a list of positive integers")
    for kind, version in writes.items():
        if type(version) is not int or version <= 0:
            raise bad(f"formats.writes.{kind} must be a positive integer")
        if version not in reads.get(kind, []):
            raise bad(f"a version must read what it writes ({kind} {version})")
    return Formats(reads={k: tuple(v) for k, v in reads.items()}, writes=dict(writes))


def _safe_relative(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _files(data: Any, bad: Any) -> dict[str, FileEntry]:
    if not isinstance(data, dict):
        raise bad("files must be an object")
    files: dict[str, FileEntry] = {}
    for path, entry in data.items():
        if not _safe_relative(path):
            raise bad(f"file path {path!r} is not a plain relative path")
        if not isinstance(entry, dict) or set(entry) != {"sha256", "mode"}:
            raise bad(f"files[{path!r}] must have exactly sha256 and mode")
        digest, mode = entry["sha256"], entry["mode"]
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise bad(f"files[{path!r}].sha256 is not a SHA-256 in hex")
        if mode not in (0o644, 0o755):
            raise bad(f"files[{path!r}].mode must be 0644 or 0755")
        files[path] = FileEntry(digest, mode)
    return files


def _links(data: Any, bad: Any) -> dict[str, str]:
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _safe_relative(k) for k, v in data.items()):
        raise bad("links must map relative paths to targets")
    return dict(data)


# ---------------------------------------------------------------- making a bundle


def _normal_mode(mode: int) -> int:
    return 0o755 if mode & 0o111 else 0o644


def payload_entries(source: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Regular files and symlinks below source (no caches, no bytecode), by relative path."""
    files: dict[str, Path] = {}
    links: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED)
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = base / name
            rel = path.relative_to(source).as_posix()
            if path.is_symlink():
                links[rel] = str(path.readlink())
            elif name in filenames and not name.endswith(".pyc"):
                files[rel] = path
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
    return dict(sorted(files.items())), dict(sorted(links.items()))


def _tarinfo(name: str, kind: bytes, mode: int, epoch: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, epoch, size
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def make_bundle(source: Path, *, name: str, version: str, formats: Formats, out_dir: Path,
                signing_key: Any, epoch: int = 0) -> tuple[Path, Path]:
    """Pack `source` as a signed bundle in out_dir; the same inputs give the same bytes."""
    files, links = payload_entries(source)
    manifest = Manifest(name=name, version=version, formats=formats, links=links, files={
        rel: FileEntry(hashlib.sha256(path.read_bytes()).hexdigest(), _normal_mode(path.stat().st_mode))
        for rel, path in files.items()})
    Manifest.from_json(manifest.to_json(), "the new manifest")  # what we sign must pass our own check
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        text = (json.dumps(manifest.to_json(), indent=2) + "\n").encode()
        archive.addfile(_tarinfo(MANIFEST_NAME, tarfile.REGTYPE, 0o644, epoch, len(text)), io.BytesIO(text))
        directories = sorted({p for rel in [*files, *links] for p in PurePosixPath(rel).parents
                              if str(p) != "."}, key=str)
        archive.addfile(_tarinfo(PAYLOAD, tarfile.DIRTYPE, 0o755, epoch))
        for directory in directories:
            archive.addfile(_tarinfo(f"{PAYLOAD}/{directory}", tarfile.DIRTYPE, 0o755, epoch))
        for rel, path in files.items():
            data = path.read_bytes()
            archive.addfile(_tarinfo(f"{PAYLOAD}/{rel}", tarfile.REGTYPE, manifest.files[rel].mode,
                                     epoch, len(data)), io.BytesIO(data))
        for rel, target in links.items():
            info = _tarinfo(f"{PAYLOAD}/{rel}", tarfile.SYMTYPE, 0o777, epoch)
            info.linkname = target
            archive.addfile(info)
    data = buffer.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = out_dir / f"{name}-{version}{SUFFIX}"
    signature = bundle.with_name(bundle.name + SIGNATURE_SUFFIX)
    fsutil.write_atomic(bundle, data)
    fsutil.write_atomic(signature, sign(data, signing_key))
    return bundle, signature


# ---------------------------------------------------------------- checking a bundle


@dataclass(frozen=True)
class Member:
    path: str  # relative to payload/
    kind: str  # "dir" | "file" | "symlink" | "hardlink"
    mode: int = 0o644
    target: str = ""  # symlink target, or hardlink target (relative to payload/)
    data: bytes = b""


@dataclass(frozen=True)
class VerifiedBundle:
    manifest: Manifest
    members: tuple[Member, ...]
    manifest_bytes: bytes
    signature: str


def _escapes(link: str, target: str, symlinks: Mapping[str, str], depth: int = 0) -> bool:
    """Whether following symlink `link` -> `target` can leave the payload tree, resolving
    through the archive's other symlinks the way the kernel would."""
    if target.startswith("/") or depth > MAX_LINK_DEPTH:
        return True
    current = list(PurePosixPath(link).parent.parts)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not current:
                return True
            current.pop()
            continue
        current.append(part)
        joined = "/".join(current)
        if joined in symlinks:
            if _escapes(joined, symlinks[joined], symlinks, depth + 1):
                return True
            current = _resolve(joined, symlinks[joined], symlinks, depth + 1)
    return False


def _resolve(link: str, target: str, symlinks: Mapping[str, str], depth: int) -> list[str]:
    current = list(PurePosixPath(link).parent.parts)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            current.pop()
            continue
        current.append(part)
        joined = "/".join(current)
        if joined in symlinks and depth <= MAX_LINK_DEPTH:
            current = _resolve(joined, symlinks[joined], symlinks, depth + 1)
    return current


def check_members(infos: Iterable[tarfile.TarInfo], what: str) -> list[tarfile.TarInfo]:
    """Refuse any member that could write outside the tree or is not a plain file,
    directory or in-tree link. Returns the members in order (a pure check)."""
    seen: dict[str, tarfile.TarInfo] = {}
    expanded = 0
    for count, info in enumerate(infos, start=1):
        if count > MAX_MEMBERS:
            raise Refused(f"{what}: more than {MAX_MEMBERS} members")
        name = info.name
        if name.startswith("/"):
            raise Refused(f"{what}: member {name!r} has an absolute path")
        if ".." in name.split("/"):
            raise Refused(f"{what}: member {name!r} contains '..'")
        if name.rstrip("/") not in (MANIFEST_NAME, PAYLOAD) and not name.startswith(PAYLOAD + "/"):
            raise Refused(f"{what}: member {name!r} is outside {PAYLOAD}/")
        if not _safe_relative(name.rstrip("/")):
            raise Refused(f"{what}: member {name!r} is not a plain relative path")
        if name.endswith("/") and not info.isdir():
            raise Refused(f"{what}: member {name!r} ends in '/' but is not a directory")
        if info.ischr() or info.isblk():
            raise Refused(f"{what}: member {name!r} is a device file")
        # isreg() is also true of GNU sparse and contiguous members: only plain files pass
        # (a sparse member of 3.5 KiB can expand to gigabytes).
        plain = info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and info.sparse is None
        if not (plain or info.isdir() or info.issym() or info.islnk()):
            raise Refused(f"{what}: member {name!r} is a {_kind(info)}, not a file, directory or link")
        expanded += info.size if plain else 0
        if expanded > MAX_EXPANDED:
            raise Refused(f"{what}: its files expand to more than {MAX_EXPANDED // 2**20} MiB")
        if (info.issym() or info.islnk()) and not info.linkname:
            raise Refused(f"{what}: link {name!r} has an empty target")
        key = name.rstrip("/")
        if key in seen:
            raise Refused(f"{what}: member {name!r} appears twice")
        seen[key] = info
    # In any order: a member listed before the link or file that later takes its parent's
    # name would otherwise be written through it.
    for key in seen:
        for parent in PurePosixPath(key).parents:
            if str(parent) in seen and not seen[str(parent)].isdir():
                raise Refused(f"{what}: member {key!r} lies under {str(parent)!r}, which is not a directory")
    # Symlinks resolve within payload/: popping past it leaves the tree.
    symlinks = {n.removeprefix(PAYLOAD + "/"): i.linkname for n, i in seen.items() if i.issym()}
    for name, info in seen.items():
        if info.issym() and _escapes(name.removeprefix(PAYLOAD + "/"), info.linkname, symlinks):
            raise Refused(f"{what}: symlink {name!r} -> {info.linkname!r} leaves the tree")
        if info.islnk():
            target = seen.get(info.linkname)
            if (not _safe_relative(info.linkname) or target is None
                    or not target.isreg() or not info.linkname.startswith(PAYLOAD + "/")):
                raise Refused(f"{what}: hard link {name!r} -> {info.linkname!r} leaves the tree")
    return list(seen.values())


def _kind(info: tarfile.TarInfo) -> str:
    if info.isfifo():
        return "FIFO"
    if info.sparse is not None:
        return "sparse file"
    return {tarfile.CONTTYPE: "contiguous file", tarfile.GNUTYPE_SPARSE: "sparse file"}.get(
        info.type, f"member of type {info.type!r}")


def read_bundle(bundle: Path, signature: Path | None, vendor_key: Path) -> VerifiedBundle:
    """Read, authenticate and check a bundle completely; refuse it on the first flaw."""
    what = bundle.name
    # The size is checked before a byte is read, and nothing but the signature is looked at
    # before the signature verifies: an unsigned file costs no more than MAX_BUNDLE.
    try:
        data = _read_capped(bundle, MAX_BUNDLE, "bundle")
    except FileNotFoundError:
        raise Refused(f"bundle {bundle} does not exist") from None
    signature = signature or bundle.with_name(bundle.name + SIGNATURE_SUFFIX)
    try:
        signature_text = _read_capped(signature, MAX_SIGNATURE, "signature").decode()
    except FileNotFoundError:
        raise Refused(f"{what}: no signature ({signature} is missing)",
                      "bundles come with a detached .sig file from the vendor") from None
    except UnicodeDecodeError:
        raise Refused(f"{what}: the signature file is not hex") from None
    verify(data, signature_text, load_verify_key(vendor_key), what)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            infos = check_members(archive, what)
            contents = {i.name: archive.extractfile(i).read()  # type: ignore[union-attr]
                        for i in infos if i.isreg()}
    except tarfile.TarError as err:
        raise Refused(f"{what}: not a valid bundle archive: {err}") from None
    del data
    if MANIFEST_NAME not in contents:
        raise Refused(f"{what}: no {MANIFEST_NAME} in the archive")
    try:
        manifest_data = untrusted.parse_json(contents[MANIFEST_NAME])
    except ValueError as err:
        raise Refused(f"{what}: {MANIFEST_NAME} is not JSON: {err}") from None
    manifest = Manifest.from_json(manifest_data, f"{what}: {MANIFEST_NAME}")
    members = tuple(_member(i, contents) for i in infos if i.name.startswith(PAYLOAD + "/"))
    _match_manifest(manifest, members, what)
    return VerifiedBundle(manifest, members, contents[MANIFEST_NAME], signature_text)


def _read_capped(path: Path, limit: int, what: str) -> bytes:
    """A bundle or signature file: a regular file (a link to one is fine: the admin named
    it) of at most `limit` bytes; a directory, FIFO or device is refused."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise Refused(f"{what} {path} is {kind}, not a file")
    with os.fdopen(fd, "rb") as stream:
        if st.st_size > limit:
            raise Refused(f"{what} {path} is larger than {limit // 2**10} KiB", "is it a bundle?")
        os.set_blocking(fd, True)
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise Refused(f"{what} {path} is larger than {limit // 2**10} KiB")
    return data


def _member(info: tarfile.TarInfo, contents: Mapping[str, bytes]) -> Member:
    rel = info.name.rstrip("/").removeprefix(PAYLOAD + "/")
    if info.isdir():
        return Member(rel, "dir", 0o755)
    if info.issym():
        return Member(rel, "symlink", target=info.linkname)
    if info.islnk():
        target = info.linkname.removeprefix(PAYLOAD + "/")
        return Member(rel, "hardlink", target=target, data=contents[info.linkname])
    return Member(rel, "file", _normal_mode(info.mode), data=contents[info.name])


def _match_manifest(manifest: Manifest, members: Iterable[Member], what: str) -> None:
    """Every payload file and link is the one the manifest lists, byte for byte."""
    files = {m.path: m for m in members if m.kind in ("file", "hardlink")}
    links = {m.path: m.target for m in members if m.kind == "symlink"}
    if files.keys() != manifest.files.keys():
        extra = sorted(files.keys() - manifest.files.keys())
        missing = sorted(manifest.files.keys() - files.keys())
        raise Refused(f"{what}: payload and manifest disagree "
                      f"(unlisted: {extra[:3]}, missing: {missing[:3]})")
    for path, member in files.items():
        if hashlib.sha256(member.data).hexdigest() != manifest.files[path].sha256:
            raise Refused(f"{what}: {path} does not match its checksum in the manifest (tampered)")
    if links != dict(manifest.links):
        raise Refused(f"{what}: the payload's symlinks differ from the manifest's")


def extract(bundle: VerifiedBundle, dest: Path) -> None:
    """Write a checked bundle below dest (an empty directory): manifest.json, signature,
    payload/. Links are made last, so no file is ever written through one."""
    (dest / MANIFEST_NAME).write_bytes(bundle.manifest_bytes)
    (dest / "signature").write_text(bundle.signature)
    root = dest / PAYLOAD
    root.mkdir(mode=0o755)
    ordered = sorted(bundle.members, key=lambda m: ("dir", "file", "hardlink", "symlink").index(m.kind))
    for member in ordered:
        path = root / member.path
        if member.kind == "dir":
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
            continue
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if member.kind == "file":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(member.data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, member.mode)
                # Durable before the version is made read-only and renamed into place.
                os.fsync(fd)
            finally:
                os.close(fd)
        elif member.kind == "hardlink":
            os.link(root / member.target, path)
        else:
            path.symlink_to(member.target)


def verify_tree(root: Path, manifest: Manifest) -> None:
    """Check an extracted (or installed) version against its manifest."""
    payload = root / PAYLOAD
    for rel, entry in manifest.files.items():
        path = payload / rel
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or hashlib.sha256(path.read_bytes()).hexdigest() != entry.sha256:
            raise AtlasError(f"{path} does not match the manifest after extraction")
