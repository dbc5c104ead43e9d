#!/usr/bin/python3
"""Build the ATLAS OS image with mkosi (prepare → mkosi → check), and flash it onto a disk.

    ./build.py                                  build the default image into output/
    ./build.py flash --image FILE --device DEV  write it to a disk and verify
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import atlas_services
from atlas_services import blockdev, errors, fsutil, log, proc
from atlas_services.errors import AtlasError, Refused

REPO = Path(__file__).resolve().parent
IMAGE_DIR = REPO / "image"
OVERLAYS_DIR = REPO / "overlays"
PACKAGE_DIR = REPO / "atlas_services"
BUILD_DIR = REPO / "build"
# Signs the image's own module bundle when no --signing-key is given: never a release key.
DEV_SIGNING_KEY = BUILD_DIR / "dev-signing.key"
DEFAULT_OUTPUT = REPO / "output"
IMAGE_ID = "atlas"
ATLAS_VERSION = atlas_services.__version__

SETUP_HINT = "run ci/setup as root to install the build host's tools"
# Host programs the build runs directly or through mkosi.
HOST_TOOLS = ("mkosi", "systemd-repart", "bwrap", "mkfs.btrfs", "mkfs.vfat", "mcopy", "mdir",
              "cpio", "zstd", "depmod", "sfdisk", "bootctl", "mount", "umount")
MKOSI_MAJOR = "24"
# GPT partition type of an x86-64 root file system (Discoverable Partitions Specification).
ROOT_X86_64_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
# Files that would make every server share one identity if they shipped in the image.
HOST_SECRET_GLOBS = ("etc/ssh/ssh_host_*", "var/lib/systemd/random-seed",
                     "var/lib/systemd/credential.secret", "var/lib/dbus/machine-id")
# bootctl seeds the boot loader's RNG from this file: it must be each server's own.
ESP_SECRETS = ("loader/random-seed",)
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.~+-]*")
SKIPPED_NAMES = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
CHUNK = 4 * 1024 * 1024

BUILD_EPILOG = """\
outputs (in --output, default output/):
  atlas_VERSION.raw           the disk image (GPT: ESP with systemd-boot, btrfs root)
  atlas_VERSION.raw.sha256    its SHA-256, as sha256sum writes it
  atlas_VERSION.vmlinuz/.initrd/.cmdline   kernel, initrd and command line for direct boot
  manifest.json               version, git revision, packages, input hash
examples:
  ./build.py
  ./build.py --image-version 1.2.0 --output /srv/images
  ./build.py --clean
  ./build.py --signing-key /secure/vendor-signing.key
  ./build.py flash --image output/atlas_0.1.0.raw --device /dev/sdb
"""


# ---------------------------------------------------------------- build inputs


def tree_files(root: Path) -> list[Path]:
    """Every regular file below root, sorted, without caches and bytecode."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_NAMES)
        found.extend(Path(dirpath) / f for f in sorted(filenames) if not f.endswith(".pyc"))
    return found


def read_package_lists(directory: Path) -> list[str]:
    """Package names from every *.list file: one a line, '#' starts a comment."""
    names: list[str] = []
    for path in sorted(directory.glob("*.list")):
        for line in path.read_text().splitlines():
            name = line.split("#", 1)[0].strip()
            if name and name not in names:
                names.append(name)
    return names


def inputs_hash(repo: Path, sources: Iterable[Path]) -> str:
    """SHA-256 over the path, mode and content of every file that goes into the image."""
    digest = hashlib.sha256()
    for source in sources:
        for path in tree_files(source) if source.is_dir() else [source]:
            name = path.relative_to(repo).as_posix()
            if path.is_symlink():
                digest.update(f"{name}\0link\0{path.readlink()}\0".encode())
                continue
            mode = path.stat().st_mode & 0o777
            digest.update(f"{name}\0{mode:o}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def current_inputs_hash() -> str:
    """The hash manifest.json records for an image built from this tree."""
    return inputs_hash(REPO, [REPO / "build.py", IMAGE_DIR, OVERLAYS_DIR, PACKAGE_DIR,
                              REPO / "README.md"])


def _git(repo: Path, *args: str) -> str | None:
    try:
        return proc.run(["git", "-C", repo, *args]).stdout.strip()
    except proc.CommandFailed:
        return None


def git_revision(repo: Path) -> str:
    revision = _git(repo, "rev-parse", "HEAD")
    if revision is None:
        return "unknown"
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return revision + ("-dirty" if dirty else "")


def source_date_epoch(repo: Path) -> int:
    """The commit time of HEAD: the same commit always stamps the same times."""
    stamp = _git(repo, "log", "-1", "--format=%ct")
    if stamp and stamp.isdigit():
        return int(stamp)
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)


def valid_version(version: str) -> bool:
    return VERSION_PATTERN.fullmatch(version) is not None


# ---------------------------------------------------------------- preparing mkosi's input


@dataclass(frozen=True)
class BuildRequest:
    output_dir: Path
    image_version: str
    clean: bool
    verbose: bool
    signing_key: Path | None = None  # None: the development key under build/


def check_host() -> None:
    """Refuse to start a build this host cannot finish."""
    if os.geteuid() != 0:
        raise Refused("building the image needs root", "run it as root (sudo ./build.py)")
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        raise Refused(f"host tools missing: {', '.join(missing)}", SETUP_HINT)
    version = proc.run(["mkosi", "--version"], hint=SETUP_HINT).stdout.split()[-1]
    if version.split(".")[0] != MKOSI_MAJOR:
        raise Refused(f"mkosi {version} found, {MKOSI_MAJOR}.x needed", SETUP_HINT)


def template_values(request: BuildRequest, epoch: int, atlas_tree: Path) -> dict[str, Any]:
    return {
        "image_version": request.image_version,
        "source_date_epoch": epoch,
        "output_dir": request.output_dir,
        "cache_dir": BUILD_DIR / "cache",
        "package_cache_dir": BUILD_DIR / "packages",
        "workspace_dir": BUILD_DIR / "workspace",
        "packages": read_package_lists(IMAGE_DIR / "packages"),
        "extra_trees": [(OVERLAYS_DIR, "/"), (atlas_tree, "/")],
    }


def render_config(image_dir: Path, config_dir: Path, values: dict[str, Any]) -> None:
    """Render image/ into mkosi's directory: *.j2 through jinja2, the rest copied as is."""
    try:
        import jinja2
    except ImportError:
        raise Refused("python3-jinja2 is not installed", SETUP_HINT) from None
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(image_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    if config_dir.exists():
        shutil.rmtree(config_dir)
    for src in tree_files(image_dir):
        rel = src.relative_to(image_dir)
        if rel.parts[0] == "packages":  # read into the template, not a mkosi input
            continue
        dst = config_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".j2":
            try:
                text = env.get_template(rel.as_posix()).render(values)
            except jinja2.TemplateError as err:
                raise AtlasError(f"cannot render {rel}: {err}") from None
            dst.with_suffix("").write_text(text)
        else:
            shutil.copy2(src, dst)


def stage_atlas_tree(tree: Path, build_info: dict[str, Any]) -> None:
    """Lay out what the image takes from this repository besides overlays/."""
    if tree.exists():
        shutil.rmtree(tree)
    site = tree / "usr/lib/python3/dist-packages/atlas_services"
    for src in tree_files(PACKAGE_DIR):
        dst = site / src.relative_to(PACKAGE_DIR)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    doc = tree / "usr/share/doc/atlas"
    doc.mkdir(parents=True)
    shutil.copy2(REPO / "README.md", doc / "README.md")
    info = tree / "usr/lib/atlas/build.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps(build_info, indent=2, sort_keys=True) + "\n")


def signing_key_path(request: BuildRequest) -> Path:
    """The key that signs the image's bundles: the one given, else a development key."""
    if request.signing_key is not None:
        if not request.signing_key.is_file():
            raise Refused(f"signing key {request.signing_key} does not exist",
                          "give the vendor's private key file (hex seed) with --signing-key")
        return request.signing_key
    from atlas_services.store import bundle
    if not DEV_SIGNING_KEY.exists():
        bundle.generate_key(DEV_SIGNING_KEY, DEV_SIGNING_KEY.with_suffix(".pub"),
                            "ATLAS development signing key made by build.py: not for release images")
        print(f"build.py: generated a development signing key: {DEV_SIGNING_KEY}", flush=True)
    print(f"build.py: no --signing-key given: signing with the development key {DEV_SIGNING_KEY} "
          "(the image will trust only bundles signed with it)", flush=True)
    return DEV_SIGNING_KEY


def stage_bundle(tree: Path, key_file: Path, epoch: int) -> Path:
    """Sign the image's own atlas_services as a module bundle (the module store's first
    version) and put the matching public key where the image trusts it."""
    from atlas_services.paths import Layout
    from atlas_services.store import bundle
    key = bundle.load_signing_key(key_file)
    layout = Layout.under(tree)
    out_dir = layout.image_bundles
    payload = BUILD_DIR / "bundle-payload"
    if payload.exists():
        shutil.rmtree(payload)
    shutil.copytree(PACKAGE_DIR, payload / PACKAGE_DIR.name,
                    ignore=shutil.ignore_patterns(*SKIPPED_NAMES, "*.pyc"))
    archive, _ = bundle.make_bundle(payload, name=PACKAGE_DIR.name, version=ATLAS_VERSION,
                                    formats=bundle.ATLAS_SERVICES_FORMATS, out_dir=out_dir,
                                    signing_key=key, epoch=epoch)
    vendor = layout.vendor_key
    vendor.parent.mkdir(parents=True, exist_ok=True)
    vendor.write_text(f"# ATLAS vendor public key\n{bundle.public_key_hex(key)}\n")
    return archive


# ---------------------------------------------------------------- running mkosi


class _Progress:
    """Prints mkosi's step lines with the time elapsed; keeps every line in the log."""

    def __init__(self, log_file: Path, verbose: bool) -> None:
        self.log = log_file.open("w")
        self.verbose = verbose
        self.start = time.monotonic()
        self.step = "starting mkosi"

    def __call__(self, line: str) -> None:
        self.log.write(line + "\n")
        self.log.flush()
        is_step = line.startswith("‣")
        if is_step:
            self.step = line.lstrip("‣ ").strip()
        if is_step or self.verbose:
            print(f"[{time.monotonic() - self.start:6.1f}s] {line}", flush=True)


def run_mkosi(config_dir: Path, clean: bool, verbose: bool) -> None:
    log_file = BUILD_DIR / "mkosi.log"
    progress = _Progress(log_file, verbose)
    # -f replaces an earlier output of the same name; -ff also drops the incremental cache.
    force = "-ff" if clean else "-f"
    try:
        proc.stream(["mkosi", "--directory", config_dir, force, "build"], on_line=progress,
                    hint=SETUP_HINT)
    except proc.CommandFailed as err:
        raise AtlasError(f"mkosi failed during: {progress.step}", f"full log: {log_file}") from err
    finally:
        progress.log.close()


# ---------------------------------------------------------------- checking the result


@dataclass(frozen=True)
class Artifacts:
    image: Path
    kernel: Path
    initrd: Path
    mkosi_manifest: Path

    @classmethod
    def find(cls, output_dir: Path, version: str) -> Artifacts:
        stem = output_dir / f"{IMAGE_ID}_{version}"
        found = cls(image=stem.with_name(stem.name + ".raw"),
                    kernel=stem.with_name(stem.name + ".vmlinuz"),
                    initrd=stem.with_name(stem.name + ".initrd"),
                    mkosi_manifest=stem.with_name(stem.name + ".manifest"))
        for path in (found.image, found.kernel, found.initrd, found.mkosi_manifest):
            if not path.exists():
                raise AtlasError(f"mkosi finished but {path} is missing",
                                 f"see {BUILD_DIR / 'mkosi.log'}")
        return found


@dataclass(frozen=True)
class Partition:
    start: int  # bytes
    size: int  # bytes
    type: str
    uuid: str


def partitions(image: Path) -> list[Partition]:
    table = json.loads(proc.run(["sfdisk", "--json", image], hint=SETUP_HINT).stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    return [Partition(start=p["start"] * sector, size=p["size"] * sector,
                      type=p["type"].upper(), uuid=p["uuid"].lower())
            for p in table["partitions"]]


def find_partition(image: Path, type_uuid: str) -> Partition:
    for part in partitions(image):
        if part.type == type_uuid:
            return part
    raise AtlasError(f"{image} has no partition of type {type_uuid}")


def root_partition(image: Path) -> Partition:
    return find_partition(image, ROOT_X86_64_TYPE)


def esp_files(image: Path) -> list[str]:
    """Paths of the files on the image's ESP, read with mtools (no vfat mount needed)."""
    esp = find_partition(image, ESP_TYPE)
    listing = proc.run(["mdir", "-/", "-b", "-i", f"{image}@@{esp.start}", "::/"], hint=SETUP_HINT).stdout
    return [line.removeprefix("::/") for line in listing.splitlines()
            if line.startswith("::/") and not line.endswith("/")]


@contextlib.contextmanager
def mounted_root(image: Path) -> Iterator[Path]:
    """The image's root file system, mounted read-only for inspection."""
    part = root_partition(image)
    with tempfile.TemporaryDirectory(prefix="atlas-image-") as mountpoint:
        proc.run(["mount", "-o", f"ro,loop,offset={part.start},sizelimit={part.size}",
                  image, mountpoint])
        try:
            yield Path(mountpoint)
        finally:
            proc.run(["umount", mountpoint], ok_codes=proc.ANY_EXIT)


def host_secrets(root: Path) -> list[str]:
    """Files under root that must not ship: host keys, seeds, a machine id."""
    found = [str(p.relative_to(root)) for pattern in HOST_SECRET_GLOBS for p in root.glob(pattern)]
    machine_id = root / "etc/machine-id"
    if machine_id.exists() and machine_id.read_text().strip() not in ("", "uninitialized"):
        found.append("etc/machine-id")
    return sorted(found)


def check_image(image: Path) -> None:
    with mounted_root(image) as root:
        leaked = host_secrets(root)
    leaked += [f"ESP:{name}" for name in esp_files(image) if name in ESP_SECRETS]
    if leaked:
        raise AtlasError(f"the image carries per-host secrets: {', '.join(leaked)}",
                         "remove them in image/mkosi.conf.j2 (RemoveFiles=)")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def packages_from_mkosi_manifest(path: Path) -> list[str]:
    data = json.loads(path.read_text())
    return sorted(f"{p['name']}={p['version']}" for p in data.get("packages", []))


def write_outputs(artifacts: Artifacts, build_info: dict[str, Any],
                  kernel_cmdline: str) -> dict[str, Any]:
    """Write the checksum, the direct-boot command line and manifest.json next to the image."""
    image_sha = sha256_file(artifacts.image)
    fsutil.write_atomic(artifacts.image.with_name(artifacts.image.name + ".sha256"),
                 f"{image_sha}  {artifacts.image.name}\n")
    cmdline_file = artifacts.image.with_suffix(".cmdline")
    fsutil.write_atomic(cmdline_file, kernel_cmdline + "\n")
    manifest = {
        **build_info,
        "image": artifacts.image.name,
        "image_sha256": image_sha,
        "image_size": artifacts.image.stat().st_size,
        "kernel": artifacts.kernel.name,
        "initrd": artifacts.initrd.name,
        "kernel_command_line": kernel_cmdline,
        "packages": packages_from_mkosi_manifest(artifacts.mkosi_manifest),
    }
    fsutil.write_atomic(artifacts.image.parent / "manifest.json",
                 json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def direct_boot_cmdline(image: Path) -> str:
    # The same line the boot entry carries: root by the seeded partition UUID.
    return (f"root=PARTUUID={root_partition(image).uuid} rw console=ttyS0 "
            "systemd.firstboot=off")


def build(request: BuildRequest) -> dict[str, Any]:
    check_host()
    started = time.monotonic()
    request.output_dir.mkdir(parents=True, exist_ok=True)
    BUILD_DIR.mkdir(exist_ok=True)
    if request.clean:
        shutil.rmtree(BUILD_DIR / "cache", ignore_errors=True)
    for needed in ("cache", "packages", "workspace"):
        (BUILD_DIR / needed).mkdir(exist_ok=True)

    epoch = source_date_epoch(REPO)
    build_info: dict[str, Any] = {
        "image_version": request.image_version,
        "atlas_services_version": ATLAS_VERSION,
        "git_revision": git_revision(REPO),
        "build_inputs_sha256": current_inputs_hash(),
        "source_date_epoch": epoch,
    }
    atlas_tree = BUILD_DIR / "atlas-tree"
    key_file = signing_key_path(request)
    stage_atlas_tree(atlas_tree, build_info)
    stage_bundle(atlas_tree, key_file, epoch)
    render_config(IMAGE_DIR, BUILD_DIR / "mkosi", template_values(request, epoch, atlas_tree))
    print(f"build.py: building ATLAS image {request.image_version} with mkosi "
          f"(full log: {BUILD_DIR / 'mkosi.log'})", flush=True)
    run_mkosi(BUILD_DIR / "mkosi", request.clean, request.verbose)

    artifacts = Artifacts.find(request.output_dir, request.image_version)
    print("build.py: checking the image, writing its checksum and manifest", flush=True)
    check_image(artifacts.image)
    manifest = write_outputs(artifacts, build_info, direct_boot_cmdline(artifacts.image))
    print(f"build.py: {artifacts.image} ({manifest['image_size'] / 2**30:.2f} GiB, "
          f"{len(manifest['packages'])} packages) in {time.monotonic() - started:.0f} s")
    return manifest


# ---------------------------------------------------------------- flashing


@dataclass(frozen=True)
class FlashRequest:
    image: Path
    device: Path
    confirmed: bool


BLKFLSBUF = 0x1261


def verify_image_checksum(image: Path) -> str:
    """The image's SHA-256, checked against its .sha256 file (./build.py writes one beside
    every image): without it nothing says the image is the one that was built."""
    sums = image.with_name(image.name + ".sha256")
    try:
        words = sums.read_text().split()
    except FileNotFoundError:
        raise Refused(f"{sums.name} is missing beside {image}: the image cannot be checked",
                      "flash an image as ./build.py wrote it (it writes the .sha256 too)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise Refused(f"{sums} cannot be read: {err}") from None
    print(f"build.py: checking {image.name}", flush=True)
    actual = sha256_file(image)
    if not words or words[0] != actual:
        raise Refused(f"{image} does not match {sums.name}: the image is damaged or was "
                      "altered", "rebuild it with ./build.py")
    return actual


def check_flash_target(request: FlashRequest) -> int:
    """Every guard before a single byte is written; returns the image size."""
    if os.geteuid() != 0:
        raise Refused("flashing needs root", "run it as root")
    if not request.image.is_file():
        raise Refused(f"image {request.image} does not exist")
    capacity = blockdev.check_writable_disk(request.device)
    size = request.image.stat().st_size
    if capacity < size:
        raise Refused(f"{request.device} holds {capacity} bytes, the image needs {size}",
                      "use a larger disk")
    return size


def _confirm(request: FlashRequest) -> None:
    if request.confirmed:
        return
    if not sys.stdin.isatty():
        raise Refused(f"refusing to overwrite {request.device} without confirmation",
                      "add --yes")
    answer = input(f"Overwrite everything on {request.device}? Type 'yes': ")
    if answer.strip() != "yes":
        raise Refused("not confirmed; nothing was written")


def _chunks_with_progress(src: Path, size: int) -> Iterator[bytes]:
    done = 0
    last = 0.0
    with src.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            yield chunk
            done += len(chunk)
            now = time.monotonic()
            if now - last >= 1 or done == size:
                last = now
                print(f"build.py: writing {done / 2**20:8.0f} / {size / 2**20:.0f} MiB "
                      f"({100 * done // max(size, 1)}%)", flush=True)


def flash(request: FlashRequest) -> None:
    size = check_flash_target(request)
    expected = verify_image_checksum(request.image)
    _confirm(request)
    try:
        # O_EXCL on a block device: the kernel refuses it while anything holds the disk (a
        # mounted file system on any of its members, RAID, device-mapper).
        fd = os.open(request.device, os.O_WRONLY | os.O_EXCL)
    except OSError as err:
        if err.errno == errno.EBUSY:
            raise Refused(f"{request.device} is in use (the kernel holds it: mounted, part of "
                          "a RAID or a mapped device); nothing was written",
                          "stop what uses it first") from None
        raise Refused(f"cannot open {request.device} for writing: {err.strerror}; nothing was "
                      "written") from None
    try:
        for chunk in _chunks_with_progress(request.image, size):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
        # Drop cached pages so the read-back comes from the disk, not from memory.
        fcntl.ioctl(fd, BLKFLSBUF)
    finally:
        os.close(fd)
    print("build.py: reading back", flush=True)
    digest = hashlib.sha256()
    with request.device.open("rb") as dev:
        remaining = size
        while remaining:
            chunk = dev.read(min(CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    if digest.hexdigest() != expected:
        raise AtlasError(f"read-back of {request.device} does not match the image",
                         "the disk may be failing; do not use it")
    print(f"build.py: {request.device} written and verified (sha256 {expected})")


# ---------------------------------------------------------------- command line


def parse_build(argv: Sequence[str]) -> BuildRequest:
    parser = argparse.ArgumentParser(
        prog="build.py",
        description="Build the ATLAS OS image with mkosi. "
                    "'build.py flash --help' shows how to write it to a disk.",
        epilog=BUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR",
                        help="where the image and its companions go (default: output/)")
    parser.add_argument("--image-version", default=ATLAS_VERSION, metavar="V",
                        help=f"version written into the image and its name (default: {ATLAS_VERSION})")
    parser.add_argument("--clean", action="store_true",
                        help="drop mkosi's incremental cache and build from scratch "
                             "(downloaded packages are kept)")
    parser.add_argument("--verbose", action="store_true", help="show all of mkosi's output")
    parser.add_argument("--signing-key", type=Path, default=None, metavar="FILE",
                        help="private ed25519 key (hex seed) that signs the image's module bundle "
                             "(default: a development key in build/)")
    parser.add_argument("--debug", action="store_true", help="show commands run and tracebacks")
    args = parser.parse_args(argv)
    if not valid_version(args.image_version):
        parser.error(f"--image-version {args.image_version!r}: "
                     "use letters, digits and . ~ + - (starting with a letter or digit)")
    return BuildRequest(output_dir=args.output.resolve(), image_version=args.image_version,
                        clean=args.clean, verbose=args.verbose,
                        signing_key=args.signing_key.resolve() if args.signing_key else None)


def parse_flash(argv: Sequence[str]) -> FlashRequest:
    parser = argparse.ArgumentParser(
        prog="build.py flash",
        description="Write a built ATLAS image to a whole disk, then read it back and "
                    "compare SHA-256. Refuses mounted disks, the running system's disk and "
                    "disks smaller than the image.",
        epilog="example:\n  ./build.py flash --image output/atlas_0.1.0.raw --device /dev/sdb",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--image", type=Path, required=True, help="the raw image to write")
    parser.add_argument("--device", type=Path, required=True, help="the whole disk to overwrite")
    parser.add_argument("--yes", action="store_true", help="do not ask before overwriting")
    parser.add_argument("--debug", action="store_true", help="show commands run and tracebacks")
    args = parser.parse_args(argv)
    return FlashRequest(image=args.image, device=args.device, confirmed=args.yes)


def main(argv: Sequence[str]) -> int:
    log.setup("build.py", debug="--debug" in argv)
    if argv and argv[0] == "flash":
        flash(parse_flash(argv[1:]))
    else:
        build(parse_build(argv[1:] if argv and argv[0] == "build" else argv))
    return 0


if __name__ == "__main__":
    sys.exit(errors.run_main("build.py", main, sys.argv[1:]))
