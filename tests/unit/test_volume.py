"""volume.json: every field validated on read, newer formats refused, round trips exact."""

from __future__ import annotations

import json
from typing import Any

import pytest

from atlas_services import volume
from atlas_services.volume import VolumeError, VolumeProblem


def good() -> dict[str, Any]:
    return {"format_version": 1, "cluster_id": "11111111-1111-4111-8111-111111111111",
            "dataset_id": "33333333-3333-4333-8333-333333333333", "role": "secondary",
            "generation": 7, "created": "2026-11-25T10:00:00+00:00",
            "identity": {"hostname": "shop2", "address": "10.1.2.3/24", "gateway": "10.1.2.1",
                         "dns": ["10.1.2.1"], "interface": "eno1"}}


def test_round_trip() -> None:
    parsed = volume.parse(json.dumps(good()))
    assert parsed.to_json() == good()
    assert parsed.identity.ip == "10.1.2.3" and parsed.identity.prefix == 24
    assert parsed.bumped().generation == 8


BAD = [
    ("role", "tertiary"), ("generation", -1), ("generation", "7"), ("cluster_id", "nope"),
    ("created", "yesterday"), ("format_version", 0), ("extra", 1),
]


@pytest.mark.parametrize("key,value", BAD, ids=[f"{k}={v!r}" for k, v in BAD])
def test_invalid_fields_are_refused(key: str, value: object) -> None:
    data = good()
    data[key] = value
    with pytest.raises(VolumeError) as caught:
        volume.parse(json.dumps(data))
    assert caught.value.problem is VolumeProblem.INVALID


BAD_IDENTITY = [("hostname", "Shop_1"), ("address", "10.1.2.3"), ("address", "300.1.1.1/24"),
                ("gateway", "10.9.9.9"), ("dns", ["not-an-ip"]), ("interface", "eth0; rm")]


@pytest.mark.parametrize("key,value", BAD_IDENTITY, ids=[k for k, _ in BAD_IDENTITY])
def test_invalid_identity_is_refused(key: str, value: object) -> None:
    data = good()
    data["identity"][key] = value
    with pytest.raises(VolumeError):
        volume.parse(json.dumps(data))


def test_newer_format_is_its_own_refusal() -> None:
    data = good()
    data["format_version"] = 2
    data["something_new"] = True
    with pytest.raises(VolumeError) as caught:
        volume.parse(json.dumps(data))
    assert caught.value.problem is VolumeProblem.NEWER_FORMAT


def test_not_json_is_unreadable() -> None:
    with pytest.raises(VolumeError) as caught:
        volume.parse("{truncated")
    assert caught.value.problem is VolumeProblem.UNREADABLE
