"""What a service needs to record a run, whatever records it."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

__all__ = ["RunRecorder"]


class RunRecorder(Protocol):
    def start_run(self, repo: str, kind: str, source: str, host: str, *,
                  tenant: str | None = None, started: datetime | None = None,
                  planned_start: datetime | None = None,
                  deadline: datetime | None = None) -> str:
        """Record a run as running; return its id. ``tenant`` names it in the fleet file
        (default: ``host``); ``started`` defaults to now; ``planned_start`` and ``deadline``
        are the schedule's slot, when a scheduler started the run."""

    def finish_run(self, run_id: str, status: str, *, bytes_read: int = 0,
                   bytes_added: int = 0, snapshot_id: str | None = None,
                   error: str | None = None, bytes_sent: int = 0,
                   finished: datetime | None = None) -> None:
        """Record the outcome: ok, partial, failed, missed or overrun."""
