"""Incremental streams: one changed file in a 10,000-file configuration tree costs a tiny
fraction of the whole tree on the wire."""

from __future__ import annotations

from pathlib import Path

from atlas_services.store import subvol
from testkit.syncpair import Pair


def test_one_changed_file_in_a_10000_file_tree_streams_under_one_percent(pair: Pair, tmp_path: Path) -> None:
    static = pair.primary.config.work / "static"
    static.mkdir()
    for i in range(10_000):
        (static / f"page{i:05d}.html").write_text(f"<p>page {i} of the shop's site</p>\n" * 4)
    pair.primary.config.commit("10,000 files")
    assert pair.sync().status == "ok"
    (static / "page04711.html").write_text("<p>changed</p>\n")
    generation = pair.primary.config.commit("one file changed").number

    result = pair.sync()

    assert result.status == "ok", result.last_error
    assert result.transfer.streams == 1
    full_stream = tmp_path / "full.stream"
    subvol.send_to_file(pair.primary.config.path(generation), full_stream)
    full, incremental = full_stream.stat().st_size, result.transfer.bytes
    print(f"\nfull stream {full} bytes, incremental stream {incremental} bytes "
          f"({100 * incremental / full:.3f} % of full), sync {result.duration_s:.2f} s")
    assert incremental < full / 100
    received = pair.secondary.config.path(generation) / "static/page04711.html"
    assert received.read_text() == "<p>changed</p>\n"
