"""The shipped service templates pass the checkers `atlas config apply` validates with."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas_services import render
from atlas_services.store import apply
from testkit.repo import TEMPLATES
from testkit.services import ServiceStack


@pytest.mark.parametrize("service", apply.SERVICES, ids=[s.name for s in apply.SERVICES])
def test_rendered_template_passes_the_apply_checker(stack: ServiceStack, tmp_path: Path,
                                                    service: apply.Service) -> None:
    # The stack's context, staged elsewhere, as apply stages a generation before installing it.
    context = stack.context() | {"config_root": str(tmp_path)}
    files = render.render_tree(TEMPLATES, context)
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    service.check(tmp_path, list(files))
