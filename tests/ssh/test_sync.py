"""The Synchronizer end to end: the secondary pulls from a primary behind a real sshd, into
real btrfs stores, and records what it did and what differs."""

from __future__ import annotations

import json
from pathlib import Path

from atlas_services.store.config import META_FILE
from atlas_services.sync import listing, state
from atlas_services.update import marks
from testkit.bundles import make_bundle
from testkit.syncpair import Pair


def generation_ids(store_root: Path) -> dict[int, str]:
    from atlas_services.store.config import ConfigStore

    store = ConfigStore(store_root)
    return {n: store.info(n).id for n in store.generations()}


def test_first_sync_mirrors_the_primarys_generations_modules_and_selections(pair: Pair) -> None:
    pair.primary.commit("templates/etc/motd.j2", "second {{ role }}\n")
    pair.primary.commit("templates/etc/motd.j2", "third {{ role }}\n")
    pair.primary.install(make_bundle(pair.tmp / "p", "2.0"), select=True)

    result = pair.sync()

    assert result.status == "ok", result.last_error
    assert generation_ids(pair.secondary.config.root) == generation_ids(pair.primary.config.root)
    assert pair.secondary.modules.versions("demo") == ["1.0", "2.0"]
    assert pair.secondary.modules.selected("demo") == "2.0"
    assert pair.applied == [3]
    assert (pair.tmp / "secondary-etc/etc/motd").read_text() == "third secondary\n"
    assert (pair.secondary.config.work / "templates/etc/motd.j2").read_text() == "third {{ role }}\n"
    recorded = state.read(pair.layout.sync_state)
    assert recorded.last_success is not None and recorded.primary_generations == (1, 2, 3)
    assert recorded.secondary_generations == (1, 2, 3) and recorded.applied_generation == 3


def test_second_sync_fetches_only_the_new_generation_incrementally(pair: Pair) -> None:
    assert pair.sync().status == "ok"
    pair.primary.commit("templates/etc/motd.j2", "changed {{ role }}\n")

    result = pair.sync()

    assert result.status == "ok", result.last_error
    assert result.transfer.streams == 1
    assert result.secondary_generations == (1, 2)
    remote = listing.list_config(pair.primary.config)
    local = listing.list_config(pair.secondary.config)
    assert [g.identity for g in local] == [g.identity for g in remote]
    assert pair.secondary.config.info(2) == pair.primary.config.info(2)
    assert (pair.secondary.config.path(2) / META_FILE).read_bytes() == (
        pair.primary.config.path(2) / META_FILE).read_bytes()


def test_sync_with_nothing_new_transfers_nothing(pair: Pair) -> None:
    assert pair.sync().status == "ok"
    result = pair.sync()
    assert result.status == "ok" and result.transfer.streams == 0 and result.transfer.bytes == 0


def test_primarys_verifier_results_are_kept_as_peer_results(pair: Pair) -> None:
    pair.primary.results.parent.mkdir(parents=True)
    pair.primary.results.write_text(json.dumps({"probes": [{"service": "web", "status": "ok"}]}))
    result = pair.sync()
    assert result.results_fetched is not None
    fetched = json.loads(pair.layout.peer_results.read_text())
    assert fetched == {"probes": [{"service": "web", "status": "ok"}]}


def test_a_trial_the_primary_does_not_stage_is_ended(pair: Pair) -> None:
    pair.secondary.install(make_bundle(pair.tmp / "s", "3.0"), select=True)
    marks.mark("demo", "3.0", pair.layout.trial_marks)
    pair.primary.install(make_bundle(pair.tmp / "p", "2.0"), select=True)

    result = pair.sync()

    assert result.status == "ok", result.last_error
    assert marks.staged_versions(pair.layout.trial_marks) == {}
    assert pair.secondary.modules.selected("demo") == "2.0"
    assert any("trial of 3.0 ended" in note for note in result.notes)


def test_a_primary_that_cannot_say_what_it_stages_leaves_the_trial_alone(pair: Pair) -> None:
    # As an older primary, whose hello predates updates: nothing said, nothing ended.
    pair.primary.update_record.parent.mkdir(parents=True)
    pair.primary.update_record.write_text("{ damaged")
    pair.secondary.install(make_bundle(pair.tmp / "s", "3.0"), select=True)
    marks.mark("demo", "3.0", pair.layout.trial_marks)
    pair.primary.install(make_bundle(pair.tmp / "p", "2.0"), select=True)

    result = pair.sync()

    assert result.status == "ok", result.last_error
    assert pair.secondary.modules.selected("demo") == "3.0"
    assert "2.0" in pair.secondary.modules.versions("demo")
    selection = next(d for d in result.drift if d.item == "selection demo")
    assert selection.klass == "compatible" and "staged" in selection.reason
    assert any("does not say what it stages" in note for note in result.notes)


def test_secondary_generations_the_primary_lacks_are_superseded(pair: Pair) -> None:
    pair.secondary.commit("templates/etc/motd.j2", "local 2\n")
    pair.secondary.commit("templates/etc/motd.j2", "local 3\n")

    result = pair.sync()

    assert result.status == "ok", result.last_error
    assert result.secondary_generations == (1,)
    assert generation_ids(pair.secondary.config.root) == generation_ids(pair.primary.config.root)
    assert any("superseded" in note for note in result.notes)


def test_uncommitted_edits_on_the_secondary_are_kept_aside(pair: Pair) -> None:
    (pair.secondary.config.work / "atlas.json").write_text('{"admin_email": "local@example.com"}\n')

    result = pair.sync()

    assert result.status == "ok", result.last_error
    kept = [n for n in result.notes if "uncommitted edits" in n]
    assert kept, result.notes
    kept_tree = Path(kept[0].rsplit(" ", 1)[1])
    assert "local@example.com" in (kept_tree / "atlas.json").read_text()
    assert "owner@example.com" in (pair.secondary.config.work / "atlas.json").read_text()


def test_sync_status_shows_the_record(pair: Pair) -> None:
    assert pair.cli("--now").returncode == 0
    shown = pair.cli("status", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["status"] == "ok" and data["last_success"] and data["generations"]["primary"] == [1]
    assert {"item", "class", "reason"} <= data["drift"][0].keys()
    text = pair.cli("status").stdout
    assert text.startswith("sync      ok — last success") and "primary   shop1 (127.0.0.1:" in text


def test_sync_refuses_to_run_on_the_primary(pair: Pair) -> None:
    pair.secondary.role_file.write_text('{"role": "primary"}\n')
    result = pair.cli("--now")
    assert result.returncode == 2
    assert "not the secondary" in result.stderr
    assert not pair.layout.sync_state.exists()
