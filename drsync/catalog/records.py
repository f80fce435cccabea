"""What a service needs to record a run, whatever records it."""

from __future__ import annotations

from typing import Protocol

__all__ = ["RunRecorder"]


class RunRecorder(Protocol):
    def start_run(self, repo: str, kind: str, source: str, host: str) -> str:
        """Record a run as running; return its id."""

    def finish_run(self, run_id: str, status: str, *, bytes_read: int = 0,
                   bytes_added: int = 0, snapshot_id: str | None = None,
                   error: str | None = None) -> None:
        """Record the outcome: ok, partial or failed."""
