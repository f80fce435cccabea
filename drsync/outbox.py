"""Where this process keeps run records for later (``drsync.repo.runs``): set once, when
the settings are resolved, without importing the repository code."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["box", "use_outbox"]

_DIRECTORY: Path | None = None


def use_outbox(directory: str | Path | None) -> None:
    """The state directory's ``run-outbox``; None: nowhere (a record not stored is then
    only in the catalog)."""
    global _DIRECTORY
    _DIRECTORY = Path(directory) if directory else None


def box(url: str) -> Path | None:
    """The outbox of the repository at ``url`` (None: no outbox in this process)."""
    if _DIRECTORY is None:
        return None
    return _DIRECTORY / hashlib.sha256(url.encode()).hexdigest()[:16]
