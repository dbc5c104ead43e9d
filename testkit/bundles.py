"""Signed module bundles for tests: a tiny module `name` at `version`, signed with the test key."""

from __future__ import annotations

import os
from pathlib import Path

from atlas_services.store import bundle
from testkit.repo import TEST_KEY


def make_bundle(out: Path, version: str, *, name: str = "demo", reads: tuple[int, ...] = (1,),
                writes: int = 1, key: Path = TEST_KEY, files: int = 0, payload_bytes: int = 0) -> Path:
    """A bundle of `name` at `version` reading and writing the given state formats, with
    `files` extra modules and `payload_bytes` of random payload (for the crash and size
    tests); returns the archive (its .sig beside it)."""
    source = out / f"src-{name}-{version}"
    (source / name).mkdir(parents=True, exist_ok=True)
    (source / name / "__init__.py").write_text(f"VERSION = {version!r}\n")
    for n in range(files):
        (source / name / f"m{n}.py").write_text(f"N = {n}\n")
    if payload_bytes:
        (source / name / "blob.bin").write_bytes(os.urandom(payload_bytes))
    formats = bundle.Formats(reads={"state": reads}, writes={"state": writes})
    archive, _ = bundle.make_bundle(source, name=name, version=version, formats=formats,
                                    out_dir=out / "bundles", signing_key=bundle.load_signing_key(key))
    return archive
