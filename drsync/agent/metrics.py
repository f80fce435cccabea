"""Prometheus text-format metrics for node_exporter's textfile collector, written atomically
(temporary file + rename) after every run, so the collector never reads half a file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from drsync.agent.policy import RUN_STATUSES
from drsync.agent.state import AgentState, write_atomic

__all__ = ["MetricsInput", "render_metrics", "write_metrics"]


@dataclass(frozen=True)
class MetricsInput:
    tenant: str
    state: AgentState
    spool_files: int
    spool_bytes: int
    rpo_s: float | None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _timestamp(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else 0.0


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    return f"{value:.17g}"


def render_metrics(m: MetricsInput) -> str:
    """The whole file; every sample has the ``tenant`` label, every family HELP and TYPE."""
    t = f'tenant="{_label(m.tenant)}"'
    run = m.state.last_run
    lines: list[str] = []

    def family(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            lines.append(f"{name}{{{labels}}} {_number(value)}")

    family("drsync_last_success_timestamp_seconds",
           "Unix time the last successful (ok or partial) run finished; 0: never.",
           [(t, _timestamp(m.state.last_success))])
    family("drsync_last_run_status",
           "1 for the status of the last run, 0 for the others.",
           [(f'{t},status="{s}"', 1.0 if run is not None and run.status == s else 0.0)
            for s in RUN_STATUSES])
    family("drsync_last_run_bytes_read", "Bytes the last run read from its sources.",
           [(t, float(run.bytes_read if run else 0))])
    family("drsync_last_run_bytes_sent", "Bytes the last run uploaded to the store.",
           [(t, float(run.bytes_sent if run else 0))])
    family("drsync_last_run_duration_seconds", "How long the last run took.",
           [(t, run.duration_s if run else 0.0)])
    family("drsync_wal_spool_files", "WAL files waiting in the spool.",
           [(t, float(m.spool_files))])
    family("drsync_wal_spool_bytes", "Bytes of WAL waiting in the spool.",
           [(t, float(m.spool_bytes))])
    family("drsync_rpo_seconds",
           "Age of the newest restorable point (snapshot or archived WAL); NaN: none.",
           [(t, m.rpo_s if m.rpo_s is not None else float("nan"))])
    return "\n".join(lines) + "\n"


def write_metrics(path: str | Path, m: MetricsInput) -> None:
    # 0644: node_exporter's textfile collector, which reads it, runs as another user
    write_atomic(path, render_metrics(m), mode=0o644)
