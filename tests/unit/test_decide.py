"""The role decision, over every combination of facts it must tell apart."""

from __future__ import annotations

import pytest

from atlas_services.detect import DataSetFacts, Facts, Reason, decide
from atlas_services.roles import Role
from atlas_services.settings import Settings
from atlas_services.volume import Identity, Volume, VolumeProblem

CLUSTER = "11111111-1111-4111-8111-111111111111"
OTHER_CLUSTER = "22222222-2222-4222-8222-222222222222"


def vol(role: Role = Role.PRIMARY, cluster: str = CLUSTER) -> Volume:
    ident = Identity(hostname="shop1", address="192.168.1.10/24", gateway="192.168.1.1",
                     dns=("192.168.1.1",), interface="eno1")
    return Volume(cluster_id=cluster, dataset_id="33333333-3333-4333-8333-333333333333",
                  role=role, generation=4, identity=ident, created="2026-11-25T00:00:00+00:00")


def ds(volume: Volume | None = None, present: int = 2, expected: int = 2,
       problem: VolumeProblem | None = None, fsid: str = "f1") -> DataSetFacts:
    devices = tuple(f"/dev/vd{c}" for c in "bcdefgh"[:present])
    return DataSetFacts(fsid=fsid, devices=devices, expected_devices=expected, volume=volume,
                        problem=problem, problem_text="problem" if problem else "")


CASES = [
    # name, datasets, known cluster, address in use, outcome, reason, degraded
    ("no data set", [], None, None, Role.STANDBY, Reason.NO_DATASET, False),
    ("primary", [ds(vol(Role.PRIMARY))], CLUSTER, False, Role.PRIMARY, Reason.OK, False),
    ("secondary", [ds(vol(Role.SECONDARY))], CLUSTER, False, Role.SECONDARY, Reason.OK, False),
    ("first boot adopts cluster", [ds(vol())], None, False, Role.PRIMARY, Reason.OK, False),
    ("single-disk set", [ds(vol(), 1, 1)], CLUSTER, False, Role.PRIMARY, Reason.OK, False),
    ("both sets", [ds(vol(Role.PRIMARY)), ds(vol(Role.SECONDARY), fsid="f2")], CLUSTER, False,
     Role.REFUSED, Reason.TWO_DATASETS, False),
    ("foreign", [ds(vol(cluster=OTHER_CLUSTER))], CLUSTER, False, Role.REFUSED,
     Reason.FOREIGN_CLUSTER, False),
    ("raid1 one missing", [ds(vol(), 1, 2)], CLUSTER, False, Role.PRIMARY, Reason.DEGRADED,
     True),
    ("raid1 of three, two missing", [ds(vol(), 1, 3)], CLUSTER, False, Role.REFUSED,
     Reason.RAID_BELOW_POLICY, False),
    ("unreadable", [ds(None, problem=VolumeProblem.UNREADABLE)], CLUSTER, None,
     Role.REFUSED, Reason.VOLUME_UNREADABLE, False),
    ("invalid", [ds(None, problem=VolumeProblem.INVALID)], CLUSTER, None, Role.REFUSED,
     Reason.VOLUME_INVALID, False),
    ("missing volume.json", [ds(None, problem=VolumeProblem.MISSING)], CLUSTER, None,
     Role.REFUSED, Reason.VOLUME_MISSING, False),
    ("newer format", [ds(None, problem=VolumeProblem.NEWER_FORMAT)], CLUSTER, None,
     Role.REFUSED, Reason.VOLUME_NEWER_FORMAT, False),
    ("address in use", [ds(vol())], CLUSTER, True, Role.REFUSED, Reason.ADDRESS_IN_USE,
     False),
    ("address not probed yet", [ds(vol())], CLUSTER, None, Role.PRIMARY, Reason.OK, False),
    ("foreign beats address", [ds(vol(cluster=OTHER_CLUSTER))], CLUSTER, True, Role.REFUSED,
     Reason.FOREIGN_CLUSTER, False),
]


@pytest.mark.parametrize("name,datasets,known,in_use,outcome,reason,degraded", CASES,
                         ids=[c[0] for c in CASES])
def test_decision(name: str, datasets: list[DataSetFacts], known: str | None,
                  in_use: bool | None, outcome: Role, reason: Reason, degraded: bool) -> None:
    decision = decide(Facts(tuple(datasets), known, in_use), Settings())
    assert (decision.role, decision.reason, decision.degraded) == (outcome, reason, degraded)
    assert decision.message


def test_degraded_refused_when_policy_forbids() -> None:
    decision = decide(Facts((ds(vol(), 1, 2),), CLUSTER, False),
                      Settings(allow_degraded_raid=False))
    assert (decision.role, decision.reason) == (Role.REFUSED, Reason.RAID_BELOW_POLICY)


@pytest.mark.parametrize("outcome,target", [(Role.PRIMARY, "atlas-primary.target"),
                                            (Role.SECONDARY, "atlas-secondary.target"),
                                            (Role.STANDBY, "atlas-standby.target"),
                                            (Role.REFUSED, "atlas-standby.target")])
def test_refusal_never_starts_a_business_target(outcome: Role, target: str) -> None:
    from atlas_services.detect import Decision

    assert Decision(outcome, Reason.OK, "x").target == target
