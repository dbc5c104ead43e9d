"""The failover drill, end to end: the acceptance test of the product."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from atlaslab import drill, pair
from atlaslab.machine import BuiltImage

log = logging.getLogger("tests")


def test_failover_drill(built_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory,
                        artifacts_dir: Path) -> None:
    workdir = tmp_path_factory.mktemp("drill")
    the_pair = pair.up(workdir, built_image, die_with_parent=True)
    try:
        report = drill.drill(the_pair, artifacts_dir / "drill-report.json")
    finally:
        the_pair.lab.close()
    log.info("drill report:\n%s", report.table())
    failed = [a for a in report.assertions if not a["ok"]]
    assert report.passed, json.dumps(failed or report.steps, indent=2)
