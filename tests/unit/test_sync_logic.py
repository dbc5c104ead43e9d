"""The Synchronizer's pure decisions: what to fetch, how a failure is classed, the state
record, the authorized_keys line, when the timer's tick syncs, the status text."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from atlas_services.errors import AtlasError, Refused
from atlas_services.peer import keys
from atlas_services.peer.client import Target, classify, ssh_argv
from atlas_services.peer.failures import Kind
from atlas_services.results import Outcome, Status
from atlas_services.sync import plan, state, transfer
from atlas_services.sync.cli import format_status
from atlas_services.sync.drift import DriftClass, DriftItem
from atlas_services.sync.listing import GenEntry, Listing, ModuleEntry, VersionEntry

ID = [f"{i:032x}" for i in range(10)]
UUID = [f"{i + 100:032x}" for i in range(10)]


def gen(number: int, gen_id: str, identity: str) -> GenEntry:
    return GenEntry(number, gen_id, identity)


# ---------------------------------------------------------------- what to fetch


def test_missing_generations_are_fetched_each_on_the_one_before() -> None:
    remote = [gen(1, ID[1], UUID[1]), gen(2, ID[2], UUID[2]), gen(3, ID[3], UUID[3])]
    local = [gen(1, ID[1], UUID[1])]
    result = plan.plan_config(remote, local)
    assert result.fetch == (plan.ConfigFetch(2, 1, False), plan.ConfigFetch(3, 2, False))
    assert result.superseded == ()


def test_a_first_sync_replaces_the_secondarys_own_seed_with_a_full_stream() -> None:
    remote = [gen(1, ID[1], UUID[1]), gen(2, ID[2], UUID[2])]
    local = [gen(1, ID[9], UUID[9])]  # its own first-boot generation 1
    result = plan.plan_config(remote, local)
    assert result.fetch == (plan.ConfigFetch(1, None, True), plan.ConfigFetch(2, 1, False))


def test_same_id_but_another_btrfs_identity_is_not_a_parent() -> None:
    remote = [gen(1, ID[1], UUID[1]), gen(2, ID[2], UUID[2])]
    local = [gen(1, ID[1], UUID[8])]
    assert plan.plan_config(remote, local).fetch[0] == plan.ConfigFetch(1, None, True)


def test_a_gap_is_filled_from_the_nearest_common_generation() -> None:
    remote = [gen(n, ID[n], UUID[n]) for n in (1, 2, 3, 4)]
    local = [gen(n, ID[n], UUID[n]) for n in (1, 4)]
    assert plan.plan_config(remote, local).fetch == (plan.ConfigFetch(2, 1, False),
                                                     plan.ConfigFetch(3, 2, False))


def test_generations_the_primary_lacks_are_superseded() -> None:
    remote = [gen(1, ID[1], UUID[1])]
    local = [gen(1, ID[1], UUID[1]), gen(2, ID[7], UUID[7]), gen(3, ID[8], UUID[8])]
    result = plan.plan_config(remote, local)
    assert result.fetch == () and result.superseded == (2, 3)


def entry(*versions: tuple[str, str], selected: str | None) -> ModuleEntry:
    return ModuleEntry(tuple(VersionEntry(v, ident, "c" * 64) for v, ident in versions), selected)


def test_missing_module_versions_are_fetched_on_a_version_both_hold() -> None:
    remote = {"demo": entry(("1.0", UUID[1]), ("1.1", UUID[2]), ("2.0", UUID[3]), selected="2.0")}
    local = {"demo": entry(("1.0", UUID[1]), selected="1.0")}
    assert plan.plan_modules(remote, local) == (plan.ModuleFetch("demo", "1.1", "1.0"),
                                                plan.ModuleFetch("demo", "2.0", "1.1"))


def test_a_module_version_installed_on_both_independently_is_not_fetched_nor_a_parent() -> None:
    remote = {"demo": entry(("1.0", UUID[1]), ("2.0", UUID[2]), selected="2.0")}
    local = {"demo": entry(("1.0", UUID[5]), selected="1.0")}
    assert plan.plan_modules(remote, local) == (plan.ModuleFetch("demo", "2.0", None),)


def test_selections_follow_the_primary_unless_staged() -> None:
    remote = {"demo": entry(("1.0", UUID[1]), ("2.0", UUID[2]), selected="2.0"),
              "other": entry(("3.0", UUID[3]), selected="3.0"),
              "absent": entry(("5.0", UUID[4]), selected="5.0")}
    local = {"demo": entry(("1.0", UUID[1]), ("2.0", UUID[2]), selected="1.0"),
             "other": entry(("3.0", UUID[3]), ("4.0", UUID[6]), selected="4.0")}
    select, skipped = plan.plan_selections(remote, local, staged={"other": "4.0"})
    assert select == (plan.Selection("demo", "2.0"),)  # "absent" is not installed here
    assert skipped == ("other",)


def test_a_listing_with_a_bad_field_is_refused() -> None:
    good = Listing((gen(1, ID[1], UUID[1]),), {"demo": entry(("1.0", UUID[1]), selected="1.0")}).to_json()
    assert Listing.from_json(good).config[0].number == 1
    for bad in ({**good, "config": [{"number": "1", "id": ID[1], "identity": UUID[1]}]},
                {**good, "config": [{"number": 1, "id": "../x", "identity": UUID[1]}]},
                {**good, "modules": {"../etc": good["modules"]["demo"]}},
                {**good, "extra": 1}):
        with pytest.raises(AtlasError):
            Listing.from_json(bad)


# ---------------------------------------------------------------- how a failure is classed


TARGET = Target("10.77.0.10", 22, "shop1", Path("/k"), Path("/kh"))


@pytest.mark.parametrize(("code", "stderr", "kind"), [
    (255, "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n"
          "Host key verification failed.", Kind.HOST_KEY),
    (255, "No ED25519 host key is known for shop1 and you have requested strict checking.\n"
          "Host key verification failed.", Kind.HOST_KEY),
    (255, "ssh: connect to host 10.77.0.10 port 22: Connection refused", Kind.UNREACHABLE),
    (255, "ssh: connect to host 10.77.0.10 port 22: Connection timed out", Kind.UNREACHABLE),
    (255, "ssh: connect to host 10.77.0.10 port 22: No route to host", Kind.UNREACHABLE),
    (255, "root@10.77.0.10: Permission denied (publickey).", Kind.AUTH),
    (255, "Connection to 10.77.0.10 closed by remote host.", Kind.TRANSPORT),
    (2, "atlas sync-serve: refused: unknown verb 'x'", Kind.REFUSED),
    (1, "atlas sync-serve: btrfs failed", Kind.REMOTE_FAILED),
])
def test_ssh_failures_are_told_apart(code: int, stderr: str, kind: Kind) -> None:
    assert classify(TARGET, code, stderr, ["hello"]).kind is kind


def test_a_host_key_mismatch_says_possible_impostor() -> None:
    assert "possible impostor" in str(classify(TARGET, 255, "Host key verification failed.", ["hello"]))


def test_the_ssh_command_pins_the_host_key_and_reads_no_other_configuration() -> None:
    argv = ssh_argv(TARGET, ["send-config", "3", "2"])
    assert argv[:3] == ["ssh", "-F", "/dev/null"]
    for option in ("StrictHostKeyChecking=yes", "UserKnownHostsFile=/kh", "GlobalKnownHostsFile=/dev/null",
                   "HostKeyAlias=shop1", "BatchMode=yes", "IdentitiesOnly=yes", "ClearAllForwardings=yes"):
        assert option in argv
    assert argv[-2:] == ["10.77.0.10", "send-config 3 2"]


@pytest.mark.parametrize(("stderr", "kind"), [
    ("ERROR: writing to x failed: No space left on device", Kind.DISK_FULL),
    ("ERROR: cannot find parent subvolume", Kind.UNKNOWN_PARENT),
    ("ERROR: unexpected EOF in stream", Kind.CORRUPT_STREAM),
    ("ERROR: short read from stream: expected 5024 read 214", Kind.CORRUPT_STREAM),
    ("ERROR: crc32 mismatch in command", Kind.CORRUPT_STREAM),
    ("ERROR: something else", Kind.RECEIVE_FAILED),
])
def test_receive_failures_are_told_apart(stderr: str, kind: Kind) -> None:
    assert transfer.receive_kind(stderr) is kind


# ---------------------------------------------------------------- the record


def test_state_round_trips_and_keeps_the_verifiers_fields() -> None:
    record = state.SyncState(status="failed", last_attempt="2026-11-25T20:00:00Z",
                             last_success="2026-11-25T19:55:00Z", last_error="x — y",
                             error_kind="unreachable",
                             primary_generations=(1, 2), secondary_generations=(1,),
                             primary_modules={"demo": state.ModuleSide(("1.0",), "1.0")},
                             applied_generation=1, applied_id=ID[1],
                             drift=(DriftItem("kernel", DriftClass.COMPATIBLE, "newer"),),
                             transfer=state.Transfer(2, 1000, 0.5), notes=("n",))
    data = record.to_json()
    assert state.SyncState.from_json(data) == record
    assert data["drift"] == [{"item": "kernel", "class": "compatible", "reason": "newer"}]
    assert {"last_attempt", "last_success", "drift"} <= data.keys()


@pytest.mark.parametrize("bad", [{}, {"format": 2, "status": "ok"}, {"format": 1, "status": "fine"},
                                 {"format": 1, "status": "ok", "drift": [{"item": "x", "class": "odd",
                                                                         "reason": ""}]}])
def test_invalid_state_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(AtlasError):
        state.SyncState.from_json(bad)


AT = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)


def test_freshness_degrades_a_stale_sync_fails_an_old_one_and_incompatible_drift() -> None:
    fresh = state.SyncState(status="ok", last_attempt="2026-11-25T19:59:00Z",
                            last_success="2026-11-25T19:59:00Z")
    assert state.freshness(fresh, AT, 900).status is Status.OK
    stale = state.SyncState(status="failed", last_attempt="2026-11-25T19:59:00Z",
                            last_success="2026-11-25T19:40:00Z", last_error="unreachable")
    assert state.freshness(stale, AT, 900) == Outcome.degraded(
        "last sync 20 min ago, last attempt 60 s ago failed (stale after 15 min)")
    old = state.SyncState(status="failed", last_attempt="2026-11-25T19:59:00Z",
                          last_success="2026-11-25T18:00:00Z")
    assert state.freshness(old, AT, 900).status is Status.FAILED
    drifted = state.SyncState(status="ok", last_attempt="2026-11-25T19:59:00Z",
                              last_success="2026-11-25T19:59:00Z",
                              drift=(DriftItem("package nginx", DriftClass.INCOMPATIBLE, "1.22 vs 1.24"),))
    assert state.freshness(drifted, AT, 900) == Outcome.failed(
        "incompatible with the primary: package nginx (1.22 vs 1.24)")
    assert state.freshness(state.SyncState(), AT, 900) == Outcome.failed("never synced from the primary")


def test_status_text_names_the_error_and_the_incompatibilities() -> None:
    record = state.SyncState(status="failed", last_attempt="2026-11-25T19:58:00Z", error_kind="host-key",
                             last_error="possible impostor", peer="shop1 (10.77.0.10)",
                             drift=(DriftItem("package nginx", DriftClass.INCOMPATIBLE, "1.22 vs 1.24"),
                                    DriftItem("kernel", DriftClass.EQUAL, "6.1")))
    text = format_status(record, AT, 900)
    assert "fresh     failed: no successful sync yet (last attempt 2 min ago)" in text
    assert "error     [host-key] possible impostor" in text
    assert "! incompatible package nginx: 1.22 vs 1.24" in text
    assert "kernel" not in text.split("drift")[1].split("\n", 1)[1]  # equal items are only counted


# ---------------------------------------------------------------- the primary's door


def test_the_authorized_keys_line_restricts_the_sync_key() -> None:
    line = keys.authorized_line("ssh-ed25519 AAAAC3Nza atlas-sync@x\n", "/usr/bin/atlas sync-serve",
                                  ["10.77.0.11"])
    assert line == ('restrict,from="10.77.0.11",command="/usr/bin/atlas sync-serve" '
                    "ssh-ed25519 AAAAC3Nza atlas-sync\n")


@pytest.mark.parametrize(("key", "command", "sources"), [
    ("not a key", "/usr/bin/atlas sync-serve", ["10.77.0.11"]),
    ("ssh-ed25519 AAAA", '/usr/bin/atlas sync-serve" ssh-rsa', ["10.77.0.11"]),
    ("ssh-ed25519 AAAA", "/usr/bin/atlas sync-serve", ['10.77.0.11",command="sh']),
])
def test_a_line_that_could_smuggle_options_is_refused(key: str, command: str, sources: list[str]) -> None:
    with pytest.raises(Refused):
        keys.authorized_line(key, command, sources)
