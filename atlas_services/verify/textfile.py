"""The Prometheus textfile (node-exporter's textfile collector format) for the last cycle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from atlas_services import fsutil, paths
from atlas_services.results import Cycle

_METRICS = (
    ("atlas_probe_ok", "1 if the probe's last result was ok, else 0."),
    ("atlas_probe_status", "The probe's last status: 0 ok, 1 degraded, 2 failed."),
    ("atlas_probe_latency_seconds", "How long the probe's last check took."),
)


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return repr(round(float(value), 6))


def _lines(cycle: Cycle) -> Iterator[str]:
    for metric, help_text in _METRICS:
        yield f"# HELP {metric} {help_text}"
        yield f"# TYPE {metric} gauge"
        for r in cycle.results:
            labels = _labels(service=r.probe, role=r.role, host=r.host)
            value = {"atlas_probe_ok": 1.0 if r.ok else 0.0,
                     "atlas_probe_status": float(r.status.rank),
                     "atlas_probe_latency_seconds": r.latency_s}[metric]
            yield f"{metric}{labels} {_number(value)}"
    cycle_labels = _labels(role=cycle.role, host=cycle.host)
    yield "# HELP atlas_verify_last_cycle_timestamp_seconds When the last verification cycle finished."
    yield "# TYPE atlas_verify_last_cycle_timestamp_seconds gauge"
    yield f"atlas_verify_last_cycle_timestamp_seconds{cycle_labels} {_number(cycle.finished.timestamp())}"
    yield "# HELP atlas_verify_cycle_duration_seconds How long the last verification cycle took."
    yield "# TYPE atlas_verify_cycle_duration_seconds gauge"
    yield f"atlas_verify_cycle_duration_seconds{cycle_labels} {_number(cycle.duration_s)}"


def format_textfile(cycle: Cycle) -> str:
    return "\n".join(_lines(cycle)) + "\n"


def write_textfile(cycle: Cycle, directory: Path,
                   name: str = paths.VERIFY_TEXTFILE) -> Path:
    """Write atomically: node-exporter may read the directory at any moment."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    fsutil.write_atomic(target, format_textfile(cycle), 0o644)
    return target
