"""Every program atlas_services waits for has a time limit: proc's default, or the caller's
own, never `timeout=None` (a hung mount, checker or systemctl would otherwise end only in a
unit's timeout, with nothing recorded)."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

import build
from atlas_services import proc

PACKAGE = build.REPO / "atlas_services"


def test_proc_waits_with_a_limit_by_default() -> None:
    functions: list[Callable[..., Any]] = [proc.run, proc.run_bytes, proc.run_to_fd]
    for function in functions:
        default = inspect.signature(function).parameters["timeout"].default
        assert default == proc.DEFAULT_TIMEOUT_S, function.__name__


def test_no_caller_in_atlas_services_waits_without_a_limit() -> None:
    unbounded = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if (keyword.arg == "timeout" and isinstance(keyword.value, ast.Constant)
                            and keyword.value.value is None):
                        unbounded.append(f"{path.relative_to(build.REPO)}:{node.lineno}")
    assert unbounded == []
