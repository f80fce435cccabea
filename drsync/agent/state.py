"""The agent's own state, one small JSON file per tenant in the state directory: the last
window it handled and its last run, written atomically after every run (the catalog holds
the history; this is what ``agent status`` and the metrics read first)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from drsync import atomic
from drsync.errors import StoreError

__all__ = ["AgentState", "LastRun", "agent_dir", "write_atomic"]


def agent_dir(state_dir: str, tenant: str) -> Path:
    """``<state dir>/agent/<tenant>``: the job store, the state file."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", tenant) or "_"
    return Path(state_dir) / "agent" / safe


def write_atomic(path: str | Path, text: str, mode: int = 0o600) -> None:
    """``text`` under ``path``, whole or not at all (``drsync.atomic``); one line if not."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_atomic(path, text, mode=mode)
    except OSError as err:
        raise StoreError(f"cannot write {path}: {err.strerror}") from None


@dataclass
class LastRun:
    run_id: str
    status: str  # ok | partial | failed | missed | overrun
    window: str  # ISO opening of the window the run belonged to
    started: str
    finished: str
    snapshot_ids: list[str] = field(default_factory=list)
    bytes_read: int = 0
    bytes_sent: int = 0
    duration_s: float = 0.0
    error: str | None = None
    night: dict[str, Any] | None = None  # the WAL-or-delta choice (policy.NightChoice)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_read / 1e6 / self.duration_s if self.duration_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mb_per_s": round(self.mb_per_s, 3),
                "snapshot_id": self.snapshot_ids[-1] if self.snapshot_ids else None}


@dataclass
class AgentState:
    path: Path
    last_window: datetime | None = None
    last_run: LastRun | None = None
    last_success: str | None = None  # ISO time the last ok/partial run finished

    @classmethod
    def load(cls, path: Path) -> AgentState:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            run = doc.get("last_run")
            return cls(path, datetime.fromisoformat(doc["last_window"])
                       if doc.get("last_window") else None,
                       LastRun(**{k: v for k, v in run.items() if k in LastRun.__annotations__})
                       if run else None, doc.get("last_success"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return cls(path)  # a damaged state file only costs the history it held

    def save(self) -> None:
        doc = {"last_window": self.last_window.isoformat() if self.last_window else None,
               "last_run": asdict(self.last_run) if self.last_run else None,
               "last_success": self.last_success}
        write_atomic(self.path, json.dumps(doc, indent=1) + "\n")

    def record(self, run: LastRun, window: datetime, *, handled: bool = True) -> None:
        """Keep the run; ``handled``: its window is done with (a run stopped by SIGTERM is
        not, so an agent started again while the window has room runs it again)."""
        self.last_run = run
        if handled:
            self.last_window = window
        if run.status in ("ok", "partial"):
            self.last_success = run.finished
        self.save()
