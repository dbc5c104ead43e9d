"""sync-serve answers each role's own verbs only: the secondary's key cannot pull the
primary into syncing, the primary's key cannot read the secondary's stores."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from atlas_services import door
from atlas_services.errors import EXIT_REFUSED
from atlas_services.paths import Layout


def layout_for(tmp_path: Path, role: str) -> Layout:
    layout = Layout.under(tmp_path)
    layout.run_dir.mkdir(parents=True)
    layout.role_file.write_text(json.dumps({"role": role}))
    return layout


@pytest.mark.parametrize("role,verb", [("primary", "pull"), ("secondary", "list"),
                                       ("secondary", "send-config 1"), ("secondary", "manifest"),
                                       ("standby", "results"), ("refused", "pull")])
def test_verbs_outside_the_role_are_refused(tmp_path: Path, role: str, verb: str) -> None:
    out = io.BytesIO()
    assert door.serve(verb, layout_for(tmp_path, role), out) == EXIT_REFUSED
    assert out.getvalue() == b""


@pytest.mark.parametrize("role", ["primary", "secondary", "standby"])
def test_every_role_says_hello(tmp_path: Path, role: str) -> None:
    out = io.BytesIO()
    assert door.serve("hello", layout_for(tmp_path, role), out) == 0
    assert json.loads(out.getvalue())["role"] == role


@pytest.mark.parametrize("role,verb", [("primary", "trial"), ("standby", "trial")])
def test_update_verbs_are_served_by_their_role_only(tmp_path: Path, role: str, verb: str) -> None:
    out = io.BytesIO()
    assert door.serve(verb, layout_for(tmp_path, role), out) == EXIT_REFUSED
    assert out.getvalue() == b""


def test_the_primarys_hello_says_what_it_stages(tmp_path: Path) -> None:
    out = io.BytesIO()
    assert door.serve("hello", layout_for(tmp_path, "primary"), out) == 0
    assert json.loads(out.getvalue())["staged"] == {}


def test_a_damaged_update_record_is_said_in_the_hello_not_fatal(tmp_path: Path) -> None:
    out = io.BytesIO()
    layout = layout_for(tmp_path, "primary")
    layout.update_record.parent.mkdir(parents=True)
    layout.update_record.write_text("{")
    assert door.serve("hello", layout, out) == 0
    reply = json.loads(out.getvalue())
    assert "staged" not in reply and "not JSON" in reply["staged_error"]


def test_the_secondarys_hello_says_nothing_of_updates(tmp_path: Path) -> None:
    out = io.BytesIO()
    assert door.serve("hello", layout_for(tmp_path, "secondary"), out) == 0
    assert "staged" not in json.loads(out.getvalue())


def test_the_secondary_reports_its_trial(tmp_path: Path) -> None:
    out = io.BytesIO()
    layout = layout_for(tmp_path, "secondary")
    assert door.serve("trial", layout, out) == 0
    assert json.loads(out.getvalue()) == {"modules": {}}
