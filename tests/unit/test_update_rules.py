"""The update's pure decisions: green streaks, the promotion rule, format compatibility, which
module a verb means, what the secondary's sync does about the primary's stage, and the
records and replies that carry them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from atlas_services.errors import AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.results import Cycle, ProbeResult, Status
from atlas_services.store import bundle
from atlas_services.store.modules import ModuleStore, loaded_from
from atlas_services.update import marks, record, rules, view
from atlas_services.verify import page

T0 = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
STAGE = "a" * 32
OTHER_STAGE = "b" * 32
MINUTE = dt.timedelta(minutes=1)


def cycle(n: int, status: Status = Status.OK, ran: str | None = "0.2.0") -> Cycle:
    """The n-th cycle after T0 (two minutes apart), running atlas_services `ran`."""
    start = T0 + 2 * n * MINUTE
    probe = ProbeResult(probe="web", target="t", status=status, latency_s=0.1, message=status,
                        timestamp=start, role="secondary", host="shop2")
    return Cycle(host="shop2", role="secondary", started=start, finished=start + dt.timedelta(seconds=20),
                 results=(probe,), modules={"atlas_services": ran} if ran else {})


def streak(cycles: list[Cycle], since: dt.datetime | None = T0) -> rules.Streak:
    return rules.green_streak(cycles, "atlas_services", "0.2.0", since)


# ---------------------------------------------------------------- green streaks


def test_consecutive_green_cycles_with_the_version_count() -> None:
    assert streak([cycle(1), cycle(2), cycle(3)]).count == 3


def test_a_red_cycle_ends_the_count_and_says_why() -> None:
    found = streak([cycle(1), cycle(2), cycle(3, Status.FAILED), cycle(4)])
    assert found.count == 1
    assert "was failed" in found.stopped_by and "web (failed)" in found.stopped_by


def test_a_degraded_cycle_is_not_green() -> None:
    assert streak([cycle(1), cycle(2, Status.DEGRADED)]).count == 0


def test_cycles_that_ran_another_version_do_not_count() -> None:
    found = streak([cycle(1), cycle(2, ran="0.1.0")])
    assert found.count == 0 and "ran atlas_services 0.1.0" in found.stopped_by


def test_a_cycle_that_did_not_run_the_version_ends_the_count() -> None:
    # The launcher fell back to the image's own copy: the version did not even load.
    found = streak([cycle(1), cycle(2), cycle(3, ran=None)])
    assert found.count == 0 and "did not run" in found.stopped_by


def test_cycles_from_before_the_trial_began_do_not_count() -> None:
    since = T0 + 5 * MINUTE
    found = streak([cycle(1), cycle(2), cycle(3), cycle(4)], since=since)
    assert found.count == 2 and found.stopped_by == ""


def test_no_cycles_no_streak() -> None:
    found = streak([])
    assert (found.count, found.latest_finished, found.latest_status) == (0, None, None)


def test_the_streak_reports_the_newest_cycle() -> None:
    found = streak([cycle(1), cycle(2, Status.FAILED)])
    assert found.latest_status == "failed" and found.latest_version == "0.2.0"
    assert found.latest_finished == cycle(2).finished


# ---------------------------------------------------------------- the promotion rule


def trial(green: int = 3, *, staged_version: str | None = "0.2.0", selected: str | None = "0.2.0",
          stage_id: str | None = STAGE, latest: dt.datetime = T0, stopped_by: str = "") -> rules.TrialModule:
    return rules.TrialModule("atlas_services", selected, staged_version, stage_id, "2027-03-01T11:00:00Z",
                             green, stopped_by, latest.isoformat().replace("+00:00", "Z"), "ok",
                             selected, {"state": 1})


def verdict(reported: rules.TrialModule | None, required: int = 3,
            now: dt.datetime = T0 + MINUTE) -> rules.Verdict:
    return rules.promotion("atlas_services", "0.2.0", STAGE, reported, required, now, 300)


def test_promotion_allowed_after_the_required_green_cycles() -> None:
    found = verdict(trial(3))
    assert found.ok and "green for 3 consecutive cycles (required: 3)" in found.reason


def test_promotion_refused_with_too_few_green_cycles() -> None:
    found = verdict(trial(2, stopped_by="the cycle of … was failed: web (down)"))
    assert not found.ok
    assert "2 of the 3 consecutive cycles required" in found.reason and "web (down)" in found.reason


def test_promotion_refused_before_the_secondary_took_the_version() -> None:
    found = verdict(trial(5, staged_version=None, selected="0.1.0", stage_id=None))
    assert not found.ok and "has not taken" in found.reason and "runs 0.1.0" in found.reason


def test_promotion_refused_for_the_green_cycles_of_an_earlier_stage() -> None:
    assert not verdict(trial(5, stage_id=OTHER_STAGE)).ok


def test_promotion_refused_when_the_secondary_runs_another_version() -> None:
    found = verdict(trial(5, selected="0.1.0"))
    assert not found.ok and "runs 0.1.0" in found.reason


def test_promotion_refused_when_the_secondary_does_not_report_the_module() -> None:
    assert not verdict(None).ok


def test_promotion_refused_when_the_newest_cycle_is_old() -> None:
    found = verdict(trial(3), now=T0 + 30 * MINUTE)
    assert not found.ok and "30 min old" in found.reason


def test_the_required_count_is_a_parameter() -> None:
    assert verdict(trial(1), required=1).ok
    assert not verdict(trial(4), required=5).ok
    assert verdict(None, required=0).ok


def test_freshness_allows_two_periods_and_a_minute() -> None:
    assert rules.fresh_within_s(120) == 300


# ---------------------------------------------------------------- compatibility


def formats(reads: tuple[int, ...], writes: int) -> bundle.Formats:
    return bundle.Formats(reads={"state": reads}, writes={"state": writes})


def test_a_version_that_reads_both_servers_formats_is_compatible() -> None:
    found = rules.compatibility("m 2", formats((1, 2), 1), {"state": 1}, {"state": 1}, formats((1,), 1))
    assert found.refusals == () and found.one_way == () and found.notes == ()


def test_a_version_that_cannot_read_a_servers_formats_is_refused() -> None:
    found = rules.compatibility("m 2", formats((2,), 2), {"state": 1}, {"state": 2}, formats((1,), 1))
    assert found.refusals == ("m 2 cannot read the primary's state 1",)
    found = rules.compatibility("m 2", formats((1,), 1), {"state": 1}, {"state": 2}, formats((1,), 1))
    assert found.refusals == ("m 2 cannot read the secondary's state 2",)


def test_unknown_secondary_formats_are_noted_not_refused() -> None:
    found = rules.compatibility("m 2", formats((1,), 1), {"state": 1}, None, formats((1,), 1))
    assert found.refusals == () and "not known" in found.notes[0]


def test_a_version_writing_what_the_current_one_cannot_read_is_one_way() -> None:
    found = rules.compatibility("m 2", formats((1, 2), 2), {"state": 1}, {"state": 1}, formats((1,), 1))
    assert found.one_way == ("state 2",)


# ---------------------------------------------------------------- which module


def test_the_module_is_the_named_one_else_the_only_staged_one() -> None:
    assert rules.pick_module("demo", ["atlas_services"], None, "promote") == "demo"
    assert rules.pick_module(None, ["atlas_services"], None, "promote") == "atlas_services"
    assert rules.pick_module(None, [], "atlas_services", "rollback") == "atlas_services"


def test_an_ambiguous_or_missing_module_is_refused() -> None:
    with pytest.raises(Refused, match="name one"):
        rules.pick_module(None, ["a", "b"], None, "promote")
    with pytest.raises(Refused, match="no update is staged"):
        rules.pick_module(None, [], None, "abort")
    with pytest.raises(Refused, match="not a module name"):
        rules.pick_module("../x", [], None, "abort")


# ---------------------------------------------------------------- the secondary follows


def offer(version: str = "0.2.0", stage_id: str = STAGE) -> rules.Offer:
    return rules.Offer(version, stage_id)


LOCAL = {"atlas_services": ["0.1.0", "0.2.0"]}


def test_a_staged_version_held_here_starts_a_trial() -> None:
    plan = rules.plan_follow({"atlas_services": offer()}, {}, LOCAL, {"atlas_services": "0.1.0"})
    assert plan.start == (("atlas_services", offer()),) and plan.end == () and plan.reselect == ()


def test_a_trial_under_way_is_left_alone() -> None:
    found = {"atlas_services": marks.Mark("0.2.0", STAGE, "2027-03-01T12:00:00Z")}
    plan = rules.plan_follow({"atlas_services": offer()}, found, LOCAL, {"atlas_services": "0.2.0"})
    assert plan == rules.FollowPlan((), (), (), ())


def test_a_trial_whose_selection_was_changed_is_selected_again() -> None:
    found = {"atlas_services": marks.Mark("0.2.0", STAGE)}
    plan = rules.plan_follow({"atlas_services": offer()}, found, LOCAL, {"atlas_services": "0.1.0"})
    assert plan.reselect == (("atlas_services", "0.2.0"),) and plan.start == ()


def test_a_new_stage_of_the_same_version_starts_a_new_trial() -> None:
    found = {"atlas_services": marks.Mark("0.2.0", OTHER_STAGE)}
    plan = rules.plan_follow({"atlas_services": offer()}, found, LOCAL, {"atlas_services": "0.2.0"})
    assert plan.start == (("atlas_services", offer()),)


def test_a_trial_the_primary_no_longer_stages_ends() -> None:
    found = {"atlas_services": marks.Mark("0.2.0", STAGE)}
    plan = rules.plan_follow({}, found, LOCAL, {"atlas_services": "0.2.0"})
    assert plan.end == ("atlas_services",) and plan.start == ()


def test_a_staged_version_not_held_here_is_missing_and_ends_an_older_trial() -> None:
    found = {"atlas_services": marks.Mark("0.2.0", OTHER_STAGE)}
    plan = rules.plan_follow({"atlas_services": offer("0.3.0")}, found, LOCAL, {"atlas_services": "0.2.0"})
    assert plan.missing == (("atlas_services", "0.3.0"),) and plan.end == ("atlas_services",)


@pytest.mark.parametrize("reply", [
    None, {}, {"staged": []}, {"staged": {"../x": {"version": "1", "id": STAGE}}},
    {"staged": {"m": {"version": "x", "id": STAGE}}}, {"staged": {"m": {"version": "1", "id": "no"}}},
])
def test_a_malformed_staged_reply_is_refused(reply: object) -> None:
    with pytest.raises(ValueError):
        rules.parse_staged_reply(reply)


def test_the_trial_reply_round_trips_and_malformed_is_refused() -> None:
    reported = trial(2)
    assert rules.parse_trial_reply({"modules": {"atlas_services": reported.to_json()}}) == {
        "atlas_services": reported}
    with pytest.raises(ValueError, match="green_cycles"):
        rules.parse_trial_reply({"modules": {"atlas_services": {**reported.to_json(), "green_cycles": -1}}})
    with pytest.raises(ValueError, match="not a version"):
        rules.parse_trial_reply({"modules": {"atlas_services": {**reported.to_json(), "staged": "../x"}}})


# ---------------------------------------------------------------- records, markers, cycles


def test_the_update_record_round_trips(tmp_path: Path) -> None:
    update = record.StagedUpdate("demo", "2.0", STAGE, "2027-03-01T12:00:00Z", "1.0", "c" * 64)
    event = record.Event("2027-03-01T12:00:00Z", "staged", "demo", "2.0", "1.0", "why")
    the_record = record.UpdateRecord({"demo": update}, (event,))
    record.write(the_record, tmp_path / "record.json")
    assert record.read(tmp_path / "record.json") == the_record
    assert record.staged_reply(tmp_path / "record.json") == {
        "staged": {"demo": {"version": "2.0", "id": STAGE, "staged_at": "2027-03-01T12:00:00Z"}}}


@pytest.mark.parametrize("change", [
    {"format": 2}, {"staged": {"demo": {"version": "2.0"}}}, {"events": [{"action": "deleted"}]},
    {"staged": {"Demo!": {}}},
])
def test_a_damaged_update_record_is_refused(tmp_path: Path, change: dict[str, object]) -> None:
    (tmp_path / "record.json").write_text(json.dumps({"format": 1, "staged": {}, "events": [], **change}))
    with pytest.raises(AtlasError, match="not a valid update record"):
        record.read(tmp_path / "record.json")


def test_events_are_bounded() -> None:
    the_record = record.UpdateRecord()
    for n in range(record.MAX_EVENTS + 5):
        the_record = the_record.with_event(record.Event("2027-03-01T12:00:00Z", "staged", "m", f"{n}", None))
    assert len(the_record.events) == record.MAX_EVENTS and the_record.events[-1].version == "104"


def test_a_marker_carries_version_stage_and_start(tmp_path: Path) -> None:
    marks.mark("demo", "2.0", tmp_path, stage_id=STAGE, since="2027-03-01T12:00:00Z")
    assert marks.read_marks(tmp_path) == {"demo": marks.Mark("2.0", STAGE, "2027-03-01T12:00:00Z")}
    assert marks.staged_versions(tmp_path) == {"demo": "2.0"}


def test_a_marker_of_only_a_version_still_reads(tmp_path: Path) -> None:
    (tmp_path / "demo").write_text("2.0\n")
    assert marks.read_marks(tmp_path) == {"demo": marks.Mark("2.0")}


def test_cycles_record_their_module_versions_and_older_cycles_have_none() -> None:
    c = cycle(1)
    assert Cycle.from_json(c.to_json()).modules == {"atlas_services": "0.2.0"}
    older = c.to_json()
    del older["modules"]
    assert Cycle.from_json(older).modules == {}


def test_the_version_code_runs_from_is_read_from_its_path(tmp_path: Path) -> None:
    store = tmp_path / "modules"
    init = store / "atlas_services/0.2.0/payload/atlas_services/__init__.py"
    init.parent.mkdir(parents=True)
    init.write_text("")
    assert loaded_from(store, init) == ("atlas_services", "0.2.0")
    assert loaded_from(store, tmp_path / "elsewhere/atlas_services/__init__.py") is None
    # The image's own copy is not a store version: the module is left out.
    image_copy = tmp_path / "usr/lib/atlas_services/__init__.py"
    assert ModuleStore(store, tmp_path / "formats.json").versions_in_use(image_copy) == {}


# ---------------------------------------------------------------- the status page


def test_the_primarys_page_says_what_is_staged_and_the_last_step(tmp_path: Path) -> None:
    update = record.StagedUpdate("demo", "2.0", STAGE, "2027-03-01T12:00:00Z", "1.0", "c" * 64)
    event = record.Event("2027-03-01T12:00:00Z", "staged", "demo", "2.0", "1.0")
    record.write(record.UpdateRecord({"demo": update}, (event,)), Layout.under(tmp_path).update_record)
    shown = view.lines("primary", 3, Layout.under(tmp_path))
    assert shown[0].startswith("demo 2.0 staged 2027-03-01T12:00:00Z for a trial on the secondary")
    assert "runs 1.0 until it is promoted (3 green cycle(s) needed there)" in shown[0]
    assert shown[1] == "last update step: staged demo 2.0 at 2027-03-01T12:00:00Z"


def test_the_secondarys_page_counts_the_trial(tmp_path: Path) -> None:
    layout = Layout.under(tmp_path)
    layout.trial_marks.mkdir(parents=True)
    layout.verify_dir.mkdir(parents=True)
    marks.mark("atlas_services", "0.2.0", layout.trial_marks, stage_id=STAGE,
                       since="2027-03-01T12:00:00Z")
    layout.verify_history.write_text("".join(json.dumps(cycle(n).to_json()) + "\n" for n in (1, 2)))
    assert view.lines("secondary", 3, layout) == [
        "atlas_services 0.2.0 on trial on this server since 2027-03-01T12:00:00Z: 2 of 3 green "
        "cycle(s) before it may be promoted"]


def test_the_page_shows_the_update_and_what_each_cycle_ran() -> None:
    html = page.render_page(cycle(1), None, host="shop2", role="secondary", now=T0 + 5 * MINUTE,
                            interval_s=120, updates=["atlas_services 0.2.0 on trial <here>"])
    assert "atlas_services 0.2.0 on trial &lt;here&gt;" in html
    assert "ran atlas_services 0.2.0" in html
    assert "Update" not in page.render_page(cycle(1), None, host="shop2", role="secondary",
                                            now=T0, interval_s=120)
