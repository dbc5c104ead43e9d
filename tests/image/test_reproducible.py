"""Two builds of the same tree give the same packages, and ideally the same bytes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import build
from testkit.lab.machine import BuiltImage

log = logging.getLogger("tests")


def differing_regions(a: Path, b: Path, parts: list[build.Partition]) -> list[str]:
    """Names of the regions (partition table, each partition) whose bytes differ."""
    regions = [("partition table", 0, parts[0].start)]
    regions += [(f"partition {n} ({p.type})", p.start, p.size) for n, p in enumerate(parts, 1)]
    differ = []
    with a.open("rb") as fa, b.open("rb") as fb:
        for name, start, size in regions:
            fa.seek(start)
            fb.seek(start)
            remaining = size
            while remaining:
                n = min(build.CHUNK, remaining)
                if fa.read(n) != fb.read(n):
                    differ.append(name)
                    break
                remaining -= n
    return differ


def test_second_build_has_same_packages_and_reports_byte_identity(
        built_image: BuiltImage, tmp_path: Path, artifacts_dir: Path) -> None:
    second = build.build(build.BuildRequest(output_dir=tmp_path, clean=False, verbose=False,
                                            image_version=built_image.manifest["image_version"]))
    assert second["packages"] == built_image.manifest["packages"]
    assert second["build_inputs_sha256"] == built_image.manifest["build_inputs_sha256"]
    identical = second["image_sha256"] == built_image.manifest["image_sha256"]
    differ = [] if identical else differing_regions(
        built_image.image, tmp_path / second["image"], build.partitions(built_image.image))
    report = {"byte_identical": identical, "differing_regions": differ,
              "first_sha256": built_image.manifest["image_sha256"],
              "second_sha256": second["image_sha256"]}
    (artifacts_dir / "reproducibility.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("reproducibility: %s", report)
    for name in (second["image"], second["initrd"], second["kernel"]):
        (tmp_path / name).unlink()
