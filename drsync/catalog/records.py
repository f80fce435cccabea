"""What a service needs to record a run, whatever records it."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Protocol

__all__ = ["RunRecorder", "owner_gone", "this_owner"]


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


def this_owner() -> str:
    """Who runs a run, to tell later whether it is still running: this host, the pid, the
    process's start time and the boot id (``host:pid:start:boot``, parts unknown empty)."""
    from drsync.repo.lock import boot_id, process_start_time

    pid = os.getpid()
    start = process_start_time(pid)
    return f"{socket.gethostname()}:{pid}:{'' if start is None else start}:{boot_id() or ''}"


def owner_gone(owner: str) -> str | None:
    """Why the process ``this_owner`` named has ended (``process 4242 is gone``), or None
    while it may still run, or when it ran on another host (only that host can tell)."""
    from drsync.repo.lock import LockInfo

    try:
        host, pid, start, boot = owner.rsplit(":", 3)
        info = LockInfo(host, int(pid), 0.0, "", "", boot or None,
                        int(start) if start else None)
    except ValueError:
        return None
    return info.stale_reason(0.0, max_age=float("inf"))  # None on another host
