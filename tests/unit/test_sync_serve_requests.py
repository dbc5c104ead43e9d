"""sync-serve's request parser: the read verbs with exactly their arguments, nothing else."""

from __future__ import annotations

import pytest

from atlas_services.peer.protocol import MAX_REQUEST, Request, RequestRefused, parse_request


@pytest.mark.parametrize(("text", "expected"), [
    ("hello", Request("hello")),
    ("list", Request("list")),
    ("manifest", Request("manifest")),
    ("results", Request("results")),
    ("send-config 12", Request("send-config", ("12",))),
    ("send-config 12 11", Request("send-config", ("12", "11"))),
    ("send-module atlas_services 0.2.0", Request("send-module", ("atlas_services", "0.2.0"))),
    ("send-module atlas_services 0.2.0+b1 0.1.0~rc1", Request("send-module", ("atlas_services", "0.2.0+b1",
                                                                            "0.1.0~rc1"))),
])
def test_read_verbs_are_accepted(text: str, expected: Request) -> None:
    assert parse_request(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    (None, "cannot open a shell"),
    ("", "empty request"),
    ("sh", "unknown verb"),
    ("rm x", "unknown verb"),
    ("HELLO", "unknown verb"),
    ("list; id", "character ';'"),
    ("list && id", "character '&'"),
    ("list | id", "character '|'"),
    ("list\nid", "character '\\n'"),
    ("list\tx", "character '\\t'"),
    ("send-config $(id)", "character '$'"),
    ("send-config `id`", "character '`'"),
    ("send-config 1 'x'", "character \"'\""),
    ("send-config ../1", "character '/'"),
    ("send-config 1\\2", "character '\\\\'"),
    ("list  ", "exactly one space"),
    (" list", "exactly one space"),
    ("send-config", "wrong number of arguments"),
    ("send-config 1 2 3", "wrong number of arguments"),
    ("list x", "wrong number of arguments"),
    ("send-config 0", "GEN '0' is not valid"),
    ("send-config 01", "GEN '01' is not valid"),
    ("send-config -1", "GEN '-1' is not valid"),
    ("send-config 1234567890", "GEN '1234567890' is not valid"),
    ("send-config 3 3", "PARENT must differ"),
    ("send-module demo", "wrong number of arguments"),
    ("send-module Demo 1.0", "NAME 'Demo' is not valid"),
    ("send-module demo selected", "VERSION 'selected' is not valid"),
    ("send-module demo 1.0 --config-store", "PARENT '--config-store' is not valid"),
    ("send-module demo ..", "VERSION '..' is not valid"),
    ("send-module demo 1.0 1.0", "PARENT must differ"),
    ("x" * (MAX_REQUEST + 1), "longer than"),
    ("list ÿ", "character 'ÿ'"),
])
def test_anything_else_is_refused_with_its_reason(text: str | None, reason: str) -> None:
    with pytest.raises(RequestRefused) as caught:
        parse_request(text)
    assert reason in str(caught.value)
