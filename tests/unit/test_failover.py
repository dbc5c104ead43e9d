"""What the secondary's answers mean for a failover (the pure part of failover prepare)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from atlas_services.failover import evaluate, trial_check
from atlas_services.update import record

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def cycle(status: str = "ok", age_s: float = 30) -> dict[str, object]:
    finished = (NOW - timedelta(seconds=age_s)).isoformat()
    return {"status": status, "finished": finished,
            "results": [{"probe": "web", "status": status}]}


def pulled(status: str = "ok", secondary: tuple[int, ...] = (1, 2, 3)) -> dict[str, object]:
    return {"status": status, "generations": {"secondary": list(secondary)}}


def test_ready_when_synced_current_and_green() -> None:
    assert all(c.ok for c in evaluate(pulled(), cycle(), 3, 120, NOW))


def test_not_ready_when_the_secondary_lags_a_generation() -> None:
    checks = {c.name: c for c in evaluate(pulled(secondary=(1, 2)), cycle(), 3, 120, NOW)}
    assert not checks["configuration"].ok and "generation 2" in checks["configuration"].detail


def test_not_ready_when_the_secondary_is_red_or_its_result_is_old() -> None:
    red = {c.name: c for c in evaluate(pulled(), cycle("failed"), 3, 120, NOW)}
    assert not red["secondary verified green"].ok and "web" in red["secondary verified green"].detail
    old = {c.name: c for c in evaluate(pulled(), cycle(age_s=3600), 3, 120, NOW)}
    assert not old["secondary verified green"].ok


def test_not_ready_when_the_final_sync_failed() -> None:
    checks = {c.name: c for c in evaluate(pulled("failed"), cycle(), 3, 120, NOW)}
    assert not checks["final sync"].ok


def test_not_ready_while_an_update_is_on_trial(tmp_path: Path) -> None:
    assert trial_check(tmp_path / "record.json").ok
    update = record.StagedUpdate("atlas_services", "0.2.0", "a" * 32, "2026-11-25T12:00:00Z", "0.1.0",
                                 "c" * 64)
    record.write(record.UpdateRecord({"atlas_services": update}), tmp_path / "record.json")
    check = trial_check(tmp_path / "record.json")
    assert not check.ok and "atlas_services 0.2.0 on trial" in check.detail
