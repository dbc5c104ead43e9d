"""The Verifier's pure logic: state changes, aggregation, textfile, judgements of what was read."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families as _parse_metrics

from atlas_services import messages, results
from atlas_services.errors import AtlasError, Refused
from atlas_services.paths import Layout
from atlas_services.results import Cycle, Outcome, ProbeResult, Status, changes, worst
from atlas_services.roles import Role
from atlas_services.sync import state as sync_state
from atlas_services.sync.drift import DriftItem
from atlas_services.verify import page, report, textfile
from atlas_services.verify.account import VerifierAccount
from atlas_services.verify.environment import ssha512, ssha512_matches
from atlas_services.verify.probes import Probe
from atlas_services.verify.probes.files import smbclient_failure
from atlas_services.verify.probes.freshness import sync_outcome
from atlas_services.verify.probes.raid import Mount, find_mount, parse_mountinfo, raid_outcome
from atlas_services.verify.probes.space import space_outcome
from atlas_services.verify.probes.timekeeping import clock_outcome
from atlas_services.verify.probes.units import units_outcome
from atlas_services.verify.probes.web import certificate_outcome
from atlas_services.verify.runner import run_cycle

T0 = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)

# prometheus_client has no type hints: its parser, typed for this test.
metric_families = cast(Callable[[str], Iterator[Metric]], _parse_metrics)


def result(probe: str, status: Status, message: str = "", host: str = "shop1") -> ProbeResult:
    return ProbeResult(probe=probe, target="t", status=status, latency_s=0.25,
                       message=message or status, timestamp=T0, role="primary", host=host)


def cycle(*results: ProbeResult, at: dt.datetime = T0) -> Cycle:
    return Cycle(host="shop1", role="primary", started=at, finished=at + dt.timedelta(seconds=1),
                 results=tuple(results))


# ---------------------------------------------------------------- aggregation and changes


def test_worst_status_wins_and_nothing_is_ok() -> None:
    assert worst([Status.OK, Status.FAILED, Status.DEGRADED]) is Status.FAILED
    assert worst([Status.OK, Status.DEGRADED]) is Status.DEGRADED
    assert worst([]) is Status.OK


def test_cycle_status_is_its_worst_probe() -> None:
    c = cycle(result("web", Status.OK), result("mail", Status.DEGRADED))
    assert c.status is Status.DEGRADED
    assert c.summary() == "degraded: mail (degraded)"


def test_unchanged_statuses_are_no_change() -> None:
    before = cycle(result("web", Status.FAILED, "down"), result("mail", Status.OK))
    after = cycle(result("web", Status.FAILED, "still down, other words"), result("mail", Status.OK))
    assert changes(before, after) == []


def test_each_status_transition_is_one_change() -> None:
    before = cycle(result("web", Status.OK), result("mail", Status.FAILED), result("files", Status.OK))
    after = cycle(result("web", Status.DEGRADED), result("mail", Status.OK), result("files", Status.OK))
    found = {(c.probe, c.previous, c.current) for c in changes(before, after)}
    assert found == {("web", Status.OK, Status.DEGRADED), ("mail", Status.FAILED, Status.OK)}


def test_first_cycle_reports_only_what_is_not_ok() -> None:
    first = cycle(result("web", Status.OK), result("mail", Status.FAILED))
    assert [(c.probe, c.previous) for c in changes(None, first)] == [("mail", Status.OK)]


def test_a_new_probe_counts_as_previously_ok() -> None:
    before = cycle(result("web", Status.OK))
    after = cycle(result("web", Status.OK), result("sync", Status.DEGRADED))
    assert [c.probe for c in changes(before, after)] == ["sync"]


def test_cycle_round_trips_through_json() -> None:
    c = cycle(result("web", Status.OK, "fine"), result("mail", Status.FAILED, "no"))
    assert Cycle.from_json(json.loads(json.dumps(c.to_json()))).to_json() == c.to_json()


def test_cycle_json_with_a_bad_status_is_refused() -> None:
    data = cycle(result("web", Status.OK)).to_json()
    data["results"][0]["status"] = "green"
    with pytest.raises(Refused, match="unknown status"):
        Cycle.from_json(data)


def test_cycle_json_of_another_format_is_refused() -> None:
    data = cycle(result("web", Status.OK)).to_json() | {"format": 99}
    with pytest.raises(Refused, match="format"):
        Cycle.from_json(data)


# ---------------------------------------------------------------- runner


class _Probe(Probe):
    def __init__(self, name: str, outcome: Outcome | None = None, sleep: float = 0.0,
                 error: Exception | None = None) -> None:
        self.name, self.timeout = name, 0.3
        self.outcome, self.sleep, self.error = outcome, sleep, error

    @property
    def target(self) -> str:
        return "nowhere"

    def check(self) -> Outcome:
        time.sleep(self.sleep)
        if self.error:
            raise self.error
        assert self.outcome is not None
        return self.outcome


def test_runner_cuts_off_a_hung_probe_and_keeps_the_others() -> None:
    c = run_cycle([_Probe("slow", Outcome.ok("late"), sleep=5), _Probe("fast", Outcome.ok("quick"))],
                  role="primary", host="shop1", grace_s=0.1)
    by = c.by_probe()
    assert by["slow"].status is Status.FAILED and "no answer within" in by["slow"].message
    assert by["fast"].status is Status.OK
    assert c.duration_s < 2


def test_runner_turns_a_probe_bug_into_a_failed_result() -> None:
    c = run_cycle([_Probe("buggy", error=KeyError("x"))], role="secondary", host="shop2")
    assert c.results[0].status is Status.FAILED
    assert "KeyError" in c.results[0].message
    assert (c.results[0].role, c.results[0].host) == ("secondary", "shop2")


# ---------------------------------------------------------------- textfile


def test_textfile_has_ok_and_latency_per_service_with_labels() -> None:
    c = cycle(result("web", Status.OK), result("mail", Status.FAILED))
    families = {f.name: f for f in metric_families(textfile.format_textfile(c))}
    ok = {s.labels["service"]: s.value for s in families["atlas_probe_ok"].samples}
    assert ok == {"web": 1.0, "mail": 0.0}
    latency = families["atlas_probe_latency_seconds"].samples[0]
    assert latency.labels == {"service": "web", "role": "primary", "host": "shop1"}
    assert latency.value == 0.25
    assert families["atlas_probe_status"].samples[1].value == 2.0


def test_textfile_escapes_label_values() -> None:
    c = cycle(result("web", Status.OK, host='we"ird\\host\nname'))
    families = list(metric_families(textfile.format_textfile(c)))
    assert families[0].samples[0].labels["host"] == 'we"ird\\host\nname'


# ---------------------------------------------------------------- history and journal


def test_history_keeps_the_newest_lines_only() -> None:
    assert report.bounded_history(["a", "b", "", "c"], "d", 3) == ["b", "c", "d"]
    assert report.bounded_history([], "a", 3) == ["a"]


def test_journal_entry_of_a_failure_has_its_message_id_and_fields() -> None:
    before = cycle(result("mail", Status.OK))
    after = cycle(result("mail", Status.FAILED, "SMTP submit failed"))
    entry = report.journal_entry(changes(before, after)[0])
    assert entry.message_id == messages.VERIFY_PROBE_FAILED
    assert entry.fields["ATLAS_PROBE"] == "mail"
    assert entry.fields["ATLAS_PREVIOUS_STATUS"] == "ok"
    assert "SMTP submit failed" in entry.message


def test_recovery_has_its_own_message_id() -> None:
    before = cycle(result("mail", Status.FAILED))
    entry = report.journal_entry(changes(before, cycle(result("mail", Status.OK)))[0])
    assert entry.message_id == messages.VERIFY_PROBE_RECOVERED


def test_message_ids_are_distinct_uuids() -> None:
    ids = [v for k, v in vars(messages).items() if k.isupper()]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_notification_names_what_broke_and_what_recovered() -> None:
    before = cycle(result("web", Status.OK), result("mail", Status.FAILED))
    after = cycle(result("web", Status.FAILED, "canary changed"), result("mail", Status.OK))
    msg = report.notification(after, changes(before, after), sender="a@x", recipient="b@y")
    assert msg["Subject"] == "[ATLAS shop1 primary] FAILED: web failing; mail recovered"
    assert "canary changed" in msg.get_content()


# ---------------------------------------------------------------- status page


def test_page_is_green_when_every_probe_is_ok() -> None:
    html = page.render_page(cycle(result("web", Status.OK)), None, host="shop1", role="primary",
                            now=T0 + dt.timedelta(seconds=30), interval_s=120)
    assert "All services verified" in html and 'class="ok"' in html


def test_page_turns_red_for_a_stale_cycle() -> None:
    html = page.render_page(cycle(result("web", Status.OK)), None, host="shop1", role="primary",
                            now=T0 + dt.timedelta(hours=2), interval_s=120)
    assert "stale" in html and "SERVICES FAILING" in html


def test_page_escapes_probe_messages() -> None:
    html = page.render_page(cycle(result("web", Status.FAILED, "<script>x</script>")), None,
                            host="shop1", role="primary", now=T0, interval_s=120)
    assert "<script>x" not in html and "&lt;script&gt;" in html


# ---------------------------------------------------------------- judgements


def test_certificate_expired_fails_and_expiring_soon_degrades() -> None:
    start = T0 - dt.timedelta(days=100)
    assert certificate_outcome(start, T0 - dt.timedelta(days=1), T0).status is Status.FAILED
    assert certificate_outcome(start, T0 + dt.timedelta(days=3), T0).status is Status.DEGRADED
    assert certificate_outcome(start, T0 + dt.timedelta(days=300), T0).status is Status.OK
    assert certificate_outcome(T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=9), T0).status \
        is Status.FAILED


def test_free_space_below_setting_degrades_and_below_half_fails() -> None:
    assert space_outcome("/srv", 50, 100, 10).status is Status.OK
    assert space_outcome("/srv", 8, 100, 10).status is Status.DEGRADED
    assert space_outcome("/srv", 4, 100, 10).status is Status.FAILED


def _sync(success_ago_s: int | None, drift: list[dict[str, str]] | None = None) -> sync_state.SyncState:
    return sync_state.SyncState(
        status="ok" if success_ago_s is not None else "failed",
        last_attempt=(T0 - dt.timedelta(seconds=10)).isoformat(),
        last_success=None if success_ago_s is None
        else (T0 - dt.timedelta(seconds=success_ago_s)).isoformat(),
        drift=tuple(DriftItem.from_json(d) for d in drift or []))


def test_sync_is_not_a_primarys_business() -> None:
    assert sync_outcome(Role.PRIMARY, sync_state.SyncState(), T0, 900).status is Status.OK


def test_secondary_that_never_synced_fails() -> None:
    assert sync_outcome(Role.SECONDARY, sync_state.SyncState(), T0, 900).status is Status.FAILED
    assert sync_outcome(Role.SECONDARY, _sync(None), T0, 900).status is Status.FAILED


def test_sync_freshness_degrades_then_fails() -> None:
    assert sync_outcome(Role.SECONDARY, _sync(60), T0, 900).status is Status.OK
    assert sync_outcome(Role.SECONDARY, _sync(1000), T0, 900).status is Status.DEGRADED
    assert sync_outcome(Role.SECONDARY, _sync(5000), T0, 900).status is Status.FAILED


def test_incompatible_drift_fails_and_compatible_drift_does_not() -> None:
    bad = _sync(60, [{"item": "postgresql", "class": "incompatible", "reason": "15 vs 16"}])
    fine = _sync(60, [{"item": "kernel", "class": "compatible", "reason": "6.1.90 vs 6.1.94"}])
    outcome = sync_outcome(Role.SECONDARY, bad, T0, 900)
    assert outcome.status is Status.FAILED and "postgresql (15 vs 16)" in outcome.message
    assert sync_outcome(Role.SECONDARY, fine, T0, 900).status is Status.OK


def test_sync_state_with_an_unknown_drift_class_is_refused() -> None:
    with pytest.raises(AtlasError, match="not valid sync state"):
        sync_state.SyncState.from_json({"format": 1, "status": "ok", "last_attempt": T0.isoformat(),
                                        "drift": [{"item": "x", "class": "maybe", "reason": ""}]})


def test_clock_before_the_build_fails() -> None:
    assert clock_outcome(T0, T0 + dt.timedelta(days=1), None, True).status is Status.FAILED


def test_clock_that_jumped_back_fails() -> None:
    assert clock_outcome(T0, T0 - dt.timedelta(days=9), T0 + dt.timedelta(hours=1), True).status \
        is Status.FAILED


def test_unsynchronized_clock_degrades() -> None:
    assert clock_outcome(T0, T0 - dt.timedelta(days=9), T0, False).status is Status.DEGRADED
    # A site without any time source says so in its settings; the clock must still be sane.
    assert clock_outcome(T0, T0 - dt.timedelta(days=9), T0, False, sync_required=False
                         ).status is Status.OK
    assert clock_outcome(T0, T0 - dt.timedelta(days=9), T0, True).status is Status.OK


def test_failed_business_unit_fails_other_units_degrade_own_unit_ignored() -> None:
    assert units_outcome(["postgresql@15-main.service"]).status is Status.FAILED
    assert units_outcome(["fstrim.service"]).status is Status.DEGRADED
    assert units_outcome(["atlas-verify.service"]).status is Status.OK


MOUNTINFO = (
    "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "98 22 0:50 / /srv/atlas rw,relatime shared:40 - btrfs /dev/sdb rw,space_cache=v2,subvol=/\n"
    "99 22 0:51 / /mnt/with\\040space rw - tmpfs tmpfs rw\n"
)
SHOW = ("Label: 'atlas-data'  uuid: 1234\n\tTotal devices 2 FS bytes used 1.00MiB\n"
        "\tdevid    1 size 268435456 used 0 path /dev/sdb\n"
        "\tdevid    2 size 268435456 used 0 path /dev/sdc\n")
DF = ("Data, RAID1: total=1.00GiB, used=1.00MiB\nSystem, RAID1: total=8.00MiB, used=16.00KiB\n"
      "Metadata, RAID1: total=256.00MiB, used=112.00KiB\nGlobalReserve, single: total=3.25MiB, used=0.00B\n")
STATS = "[/dev/sdb].write_io_errs    0\n[/dev/sdb].corruption_errs  0\n[/dev/sdc].write_io_errs    0\n"


def test_mountinfo_finds_the_data_set_and_unescapes_paths() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    data = find_mount(mounts, Path("/srv/atlas"))
    assert data is not None and data.fstype == "btrfs" and data.source == "/dev/sdb"
    assert mounts[2].point == "/mnt/with space"


def test_healthy_raid1_is_ok() -> None:
    mount = Mount("/srv/atlas", "btrfs", "/dev/sdb", frozenset({"rw"}))
    outcome = raid_outcome(mount, SHOW, DF, STATS)
    assert outcome.status is Status.OK, outcome.message
    assert "2 disks" in outcome.message


def test_missing_disk_fails() -> None:
    mount = Mount("/srv/atlas", "btrfs", "/dev/sdb", frozenset({"rw", "degraded"}))
    show = SHOW.replace("\tdevid    2 size 268435456 used 0 path /dev/sdc\n",
                        "\t*** Some devices missing\n")
    assert raid_outcome(mount, show, DF, STATS).status is Status.FAILED


def test_single_profile_or_disk_errors_degrade() -> None:
    mount = Mount("/srv/atlas", "btrfs", "/dev/sdb", frozenset({"rw"}))
    assert raid_outcome(mount, SHOW, DF.replace("Data, RAID1", "Data, single"), STATS).status \
        is Status.DEGRADED
    errors = STATS.replace("corruption_errs  0", "corruption_errs  3")
    outcome = raid_outcome(mount, SHOW, DF, errors)
    assert outcome.status is Status.DEGRADED and "corruption_errs 3" in outcome.message


def test_unmounted_or_foreign_data_set_fails() -> None:
    assert raid_outcome(None, "", "", "").status is Status.FAILED
    ext4 = Mount("/srv/atlas", "ext4", "/dev/sdb", frozenset())
    assert raid_outcome(ext4, "", "", "").status is Status.FAILED


def test_smbclient_failure_names_the_nt_status() -> None:
    output = "Try \"help\"\nNT_STATUS_ACCESS_DENIED opening remote file \\x.txt\nmore\n"
    assert smbclient_failure(output) == "NT_STATUS_ACCESS_DENIED opening remote file \\x.txt"


# ---------------------------------------------------------------- account


def test_ssha512_checks_its_own_hash_only() -> None:
    stored = ssha512("secret")
    assert ssha512_matches("secret", stored)
    assert not ssha512_matches("other", stored)
    assert not ssha512_matches("secret", "{PLAIN}secret")


def test_account_round_trips_and_refuses_missing_fields() -> None:
    acct = VerifierAccount.create("shop.example")
    assert VerifierAccount.from_json(acct.to_json()) == acct
    assert acct.mail_address == "atlas-verifier@shop.example"
    with pytest.raises(Refused, match="db_password"):
        VerifierAccount.from_json(acct.to_json() | {"db_password": ""})


def test_an_unwritable_textfile_directory_does_not_lose_the_cycle(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the textfile directory should be")
    layout = Layout.under(tmp_path)
    layout.textfile_dir.parent.mkdir(parents=True)
    layout.textfile_dir.write_text("a file where the textfile directory should be")
    entries: list[report.JournalEntry] = []
    publisher = report.Publisher(layout=layout, journal=entries.append)
    publisher.publish(cycle(result("web", Status.FAILED)))
    assert results.read_cycle(layout.verify_latest) is not None
    assert (layout.status_page_dir / page.PAGE).exists()
    assert [e.fields["ATLAS_PROBE"] for e in entries] == ["web"]
