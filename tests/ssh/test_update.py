"""Updates end to end on two real stores: staged on the primary without selecting it, taken
on trial by the secondary's sync, promoted only after enough green cycles there (the primary
asks the secondary through its own sync door), rolled back or aborted on both."""

from __future__ import annotations

import json

import pytest

from atlas_services.errors import Refused
from atlas_services.sync import state
from atlas_services.update import marks, primary, record
from testkit.bundles import make_bundle
from testkit.updatepair import UpdatePair


def stage_two(up: UpdatePair, version: str = "2.0") -> primary.Staged:
    bundle = make_bundle(up.pair.tmp / "b", version)
    return primary.stage(up.primary_layout, bundle, None, secondary=up.secondary)


def sync_ok(up: UpdatePair) -> state.SyncState:
    result = up.pair.sync()
    assert result.status == "ok", result.last_error
    return result


def on_trial(up: UpdatePair, cycles: int = 3) -> None:
    """Stage 2.0, let the secondary take it and run `cycles` green cycles with it."""
    stage_two(up)
    sync_ok(up)
    for _ in range(cycles):
        assert up.cycle().status == "ok"


def selected(up: UpdatePair) -> tuple[str | None, str | None]:
    return up.pair.primary.modules.selected("demo"), up.pair.secondary.modules.selected("demo")


# ---------------------------------------------------------------- stage


def test_a_staged_version_is_installed_on_the_primary_without_being_selected(up: UpdatePair) -> None:
    result = stage_two(up)
    assert result.installed and result.update.from_version == "1.0"
    assert up.pair.primary.modules.versions("demo") == ["1.0", "2.0"]
    assert selected(up) == ("1.0", "1.0")
    assert record.read(up.pair.primary.update_record).staged["demo"].version == "2.0"


def test_the_secondarys_sync_selects_the_staged_version_there_only(up: UpdatePair) -> None:
    stage_two(up)
    result = sync_ok(up)
    assert selected(up) == ("1.0", "2.0")
    mark = marks.read_marks(up.trial_layout.trial_marks)["demo"]
    assert mark.version == "2.0" and mark.since is not None
    assert any("selected for its trial" in note for note in result.notes)


def test_the_staged_selection_is_compatible_drift_and_the_secondary_stays_green(up: UpdatePair) -> None:
    stage_two(up)
    result = sync_ok(up)
    selection = next(d for d in result.drift if d.item == "selection demo")
    assert selection.klass == "compatible" and "staged" in selection.reason
    assert not [d for d in result.drift if d.klass == "incompatible"]
    cycle = up.cycle()
    assert cycle.status == "ok" and cycle.modules == {"demo": "2.0"}


def test_the_secondary_keeps_its_trial_over_later_syncs(up: UpdatePair) -> None:
    stage_two(up)
    sync_ok(up)
    since = marks.read_marks(up.trial_layout.trial_marks)["demo"].since
    sync_ok(up)
    assert selected(up) == ("1.0", "2.0")
    assert marks.read_marks(up.trial_layout.trial_marks)["demo"].since == since


def test_stage_is_refused_on_the_secondary(up: UpdatePair) -> None:
    bundle_file = make_bundle(up.pair.tmp / "b", "2.0")
    result = up.cli("stage", str(bundle_file), on="secondary")
    assert result.returncode == 2
    assert "not the primary" in result.stderr
    assert up.pair.secondary.modules.versions("demo") == ["1.0"]


def test_stage_refuses_a_bundle_whose_signature_does_not_verify(up: UpdatePair) -> None:
    bundle_file = make_bundle(up.pair.tmp / "b", "2.0")
    signature = bundle_file.with_name(bundle_file.name + ".sig")
    signature.write_text("00" * 64 + "\n")
    result = up.cli("stage", str(bundle_file))
    assert result.returncode == 2 and "bad signature" in result.stderr
    assert up.pair.primary.modules.versions("demo") == ["1.0"]
    assert not up.pair.primary.update_record.exists()


def test_stage_refuses_a_version_that_cannot_read_the_secondarys_formats(up: UpdatePair) -> None:
    up.secondary_layout.formats_file.write_text('{"state": 2}\n')
    with pytest.raises(Refused, match="cannot read the secondary's state 2"):
        stage_two(up)
    assert up.pair.primary.modules.versions("demo") == ["1.0"]


def test_stage_refuses_a_one_way_version_unless_told(up: UpdatePair) -> None:
    newer = make_bundle(up.pair.tmp / "b", "2.0", reads=(1, 2), writes=2)
    with pytest.raises(Refused, match="rollback would be refused"):
        primary.stage(up.primary_layout, newer, None, secondary=up.secondary)
    assert up.pair.primary.modules.versions("demo") == ["1.0"]
    result = primary.stage(up.primary_layout, newer, None, one_way=True, secondary=up.secondary)
    assert result.update.one_way


def test_a_second_stage_of_the_same_module_is_refused(up: UpdatePair) -> None:
    stage_two(up)
    with pytest.raises(Refused, match="staged already"):
        stage_two(up, "3.0")


# ---------------------------------------------------------------- promote


def test_promote_is_refused_before_the_secondary_took_the_version(up: UpdatePair) -> None:
    stage_two(up)
    with pytest.raises(Refused, match=r"has not taken demo 2\.0 on trial yet"):
        primary.promote(up.primary_layout, secondary=up.secondary)
    assert selected(up) == ("1.0", "1.0")


def test_promote_is_refused_with_too_few_green_cycles(up: UpdatePair) -> None:
    on_trial(up, cycles=2)
    result = up.cli("promote")
    assert result.returncode == 2
    assert "green for 2 of the 3 consecutive cycles required" in result.stderr
    assert selected(up) == ("1.0", "2.0")


def test_promote_is_refused_when_the_newest_cycle_is_red(up: UpdatePair) -> None:
    on_trial(up, cycles=3)
    up.cycle(green=False)
    with pytest.raises(Refused, match=r"0 of the 3 .* was failed"):
        primary.promote(up.primary_layout, secondary=up.secondary)
    assert selected(up) == ("1.0", "2.0")


def test_a_red_cycle_restarts_the_count(up: UpdatePair) -> None:
    on_trial(up, cycles=3)
    up.cycle(green=False)
    up.cycle()
    up.cycle()
    with pytest.raises(Refused, match="2 of the 3"):
        primary.promote(up.primary_layout, secondary=up.secondary)


def test_promote_is_refused_when_the_secondary_cannot_be_asked(up: UpdatePair) -> None:
    on_trial(up, cycles=3)
    up.door.stop()
    with pytest.raises(Refused, match="cannot be confirmed"):
        primary.promote(up.primary_layout, secondary=up.secondary)
    assert selected(up) == ("1.0", "2.0")


def test_promote_selects_the_version_on_the_primary_once_green(up: UpdatePair) -> None:
    on_trial(up, cycles=3)
    result = up.cli("promote", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == "2.0"
    assert selected(up) == ("2.0", "2.0")
    the_record = record.read(up.pair.primary.update_record)
    assert the_record.staged == {} and the_record.events[-1].action == "promoted"


def test_after_promotion_the_secondary_ends_its_trial_and_mirrors_again(up: UpdatePair) -> None:
    on_trial(up, cycles=3)
    primary.promote(up.primary_layout, secondary=up.secondary)
    result = sync_ok(up)
    assert marks.read_marks(up.trial_layout.trial_marks) == {}
    assert selected(up) == ("2.0", "2.0")
    assert next(d for d in result.drift if d.item.startswith("module")).klass == "equal"


def test_the_required_cycles_are_a_setting(up: UpdatePair) -> None:
    up.set_settings(promote_green_cycles=1)
    on_trial(up, cycles=1)
    primary.promote(up.primary_layout, secondary=up.secondary)
    assert selected(up) == ("2.0", "2.0")


def test_staging_the_same_version_again_starts_a_new_trial(up: UpdatePair) -> None:
    on_trial(up, cycles=3)
    primary.abort(up.primary_layout)
    stage_two(up)  # installed already: staged again without installing
    sync_ok(up)
    with pytest.raises(Refused, match="0 of the 3"):
        primary.promote(up.primary_layout, secondary=up.secondary)


# ---------------------------------------------------------------- rollback and abort


def test_rollback_after_promotion_reselects_the_previous_version_on_both(up: UpdatePair) -> None:
    on_trial(up, cycles=3)
    primary.promote(up.primary_layout, secondary=up.secondary)
    sync_ok(up)

    result = up.cli("rollback")

    assert result.returncode == 0, result.stderr
    assert selected(up) == ("1.0", "2.0")
    sync_ok(up)
    assert selected(up) == ("1.0", "1.0")


def test_rollback_of_a_version_on_trial_returns_the_secondary_to_the_primarys(up: UpdatePair) -> None:
    on_trial(up, cycles=1)
    up.cycle(green=False)

    undone = primary.rollback(up.primary_layout)

    assert undone.dropped == "2.0" and undone.primary_version == "1.0"
    assert selected(up) == ("1.0", "2.0")
    sync_ok(up)
    assert selected(up) == ("1.0", "1.0")
    assert marks.read_marks(up.trial_layout.trial_marks) == {}


def test_abort_drops_the_staged_version_from_the_secondary(up: UpdatePair) -> None:
    on_trial(up, cycles=1)
    result = up.cli("abort", "demo")
    assert result.returncode == 0, result.stderr
    sync_ok(up)
    assert selected(up) == ("1.0", "1.0")
    with pytest.raises(Refused, match="no update is staged"):
        primary.promote(up.primary_layout, secondary=up.secondary)


def test_abort_with_nothing_staged_is_refused(up: UpdatePair) -> None:
    result = up.cli("abort")
    assert result.returncode == 2 and "no update is staged" in result.stderr


# ---------------------------------------------------------------- status


def test_status_on_the_primary_shows_the_trial_and_what_is_required(up: UpdatePair) -> None:
    on_trial(up, cycles=2)
    result = up.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    entry = data["staged"][0]
    assert (entry["module"], entry["version"], entry["green_cycles"]) == ("demo", "2.0", 2)
    assert data["required_green_cycles"] == 3 and entry["promotable"] is False
    text = up.cli("status").stdout
    assert "2 of 3 green cycle(s) on the secondary" in text


def test_status_on_the_secondary_shows_its_trial(up: UpdatePair) -> None:
    on_trial(up, cycles=1)
    data = json.loads(up.cli("status", "--json", on="secondary").stdout)
    assert data["role"] == "secondary"
    assert [(t["module"], t["staged"], t["green_cycles"]) for t in data["trials"]] == [("demo", "2.0", 1)]


def test_the_secondarys_status_page_shows_its_trial(up: UpdatePair) -> None:
    on_trial(up, cycles=2)
    html = (up.secondary_layout.status_page_dir / "index.html").read_text()
    assert "demo 2.0 on trial on this server since" in html and "2 of 3 green cycle(s)" in html
    assert "ran demo 2.0" in html
