"""Bad input gets one clear line and changes nothing: cluster identities that could never
work or would inject configuration, settings out of bounds, files that are not what they
claim to be. Through the real command line or the real readers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atlas_services import untrusted
from atlas_services.errors import Refused
from atlas_services.settings import Settings
from testkit.repo import REPO

GOOD = {"--domain": "shop.example", "--interface": "eno1",
        "--primary-hostname": "shop1", "--primary-address": "192.168.1.10/24",
        "--secondary-hostname": "shop2", "--secondary-address": "192.168.1.11/24",
        "--gateway": "192.168.1.1", "--dns": "192.168.1.1"}


def cluster_init(tmp_path: Path, **changes: str) -> subprocess.CompletedProcess[str]:
    options = {**GOOD, **{f"--{k.replace('_', '-')}": v for k, v in changes.items()}}
    argv = [a for key, value in options.items() if value is not None for a in (key, value)]
    return subprocess.run([sys.executable, "-m", "atlas_services", "cluster", "init",
                           "--dir", str(tmp_path / "cluster"), *argv],
                          cwd=REPO, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("changes,said", [
    ({"domain": "shop example"}, "is not a DNS domain"),
    ({"domain": "shop.example\nrelayhost = [evil]"}, "is not a DNS domain"),
    ({"domain": "shop.example;"}, "is not a DNS domain"),
    ({"primary_address": "192.168.1.0/24"}, "is the network address"),
    ({"secondary_address": "192.168.1.255/24"}, "is the broadcast address"),
    ({"secondary_address": "10.9.0.11/24", "gateway": ""},
     "different subnets and the primary and the secondary has no gateway"),
    ({"gateway": "192.168.1.10"}, "is the server's own address"),
])
def test_cluster_init_refuses_identities_that_cannot_work(tmp_path: Path, changes: dict[str, str],
                                                          said: str) -> None:
    result = cluster_init(tmp_path, **changes)
    assert result.returncode == 2, result.stderr
    assert said in result.stderr
    assert result.stderr.startswith("atlas: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "cluster").exists()


@pytest.mark.parametrize("data,said", [
    ({"admin_email": "owner@shop.example\nBcc: everyone@example.com"}, "is not a mail address"),
    ({"admin_email": "owner at shop"}, "is not a mail address"),
    ({"verify_interval_s": 0}, "between 30 and 86400"),
    ({"verify_probe_timeout_s": 10**9}, "between 1 and 300"),
    ({"verify_history_cycles": 10**12}, "between 1 and 100000"),
    ({"sync_interval_s": 1}, "between 30 and 86400"),
    ({"promote_green_cycles": 0}, "between 1 and 1000"),
    ({"free_space_min_percent": 100}, "between 0 and 99"),
])
def test_settings_out_of_bounds_are_refused(data: dict[str, object], said: str) -> None:
    with pytest.raises(Refused, match=said):
        Settings.from_json(data, "atlas.json")


def test_settings_in_bounds_are_kept() -> None:
    settings = Settings.from_json({"admin_email": "it+atlas@shop-1.example", "sync_interval_s": 30,
                                   "free_space_min_percent": 0})
    assert settings.admin_email == "it+atlas@shop-1.example" and settings.sync_interval_s == 30


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    started = time.monotonic()
    with pytest.raises(OSError, match="not a regular file"):
        untrusted.read_bytes(tmp_path / "fifo")
    assert time.monotonic() - started < 1


def test_links_are_not_followed_anywhere_below_the_base(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real/file").write_text("x")
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "real/filelink").symlink_to("file")
    assert untrusted.read_text(tmp_path / "real/file", below=tmp_path) == "x"
    for path in (tmp_path / "link/file", tmp_path / "real/filelink"):
        with pytest.raises(OSError) as err:
            untrusted.read_text(path, below=tmp_path)
        assert "symbolic link" in untrusted.describe(err.value)


def test_a_device_or_a_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="not a regular file"):
        untrusted.read_bytes(Path("/dev/zero"))
    (tmp_path / "big").write_bytes(b"x" * 2000)
    with pytest.raises(OSError, match="larger than 1000 bytes"):
        untrusted.read_bytes(tmp_path / "big", 1000)


def test_json_nested_too_deep_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        untrusted.parse_json("[" * 100_000 + "]" * 100_000)


def test_a_holder_of_a_partition_holds_the_disk(tmp_path: Path) -> None:
    from atlas_services import blockdev

    disk = tmp_path / "sdb"
    (disk / "holders").mkdir(parents=True)
    (disk / "sdb1/holders/dm-0").mkdir(parents=True)
    (disk / "sdb1/partition").write_text("1\n")
    (disk / "sdb2/holders").mkdir(parents=True)
    (disk / "sdb2/partition").write_text("2\n")
    (disk / "queue").mkdir()
    assert blockdev.holders_of(disk) == ["dm-0"]
    (disk / "sdb1/holders/dm-0").rmdir()
    assert blockdev.holders_of(disk) == []
