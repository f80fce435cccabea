"""The repository format: chunk, dedup, compress, encrypt, pack, index, snapshot.

Everything at rest is described byte by byte in docs/FORMAT.md.

The public names are imported on first use (PEP 562), so that a caller that
needs one module (``wal-push`` needs only ``crypto``, ``keys`` and ``wal``)
does not pay for the chunker, the pack writer and the reader.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drsync.repo.index import Index
    from drsync.repo.keys import KdfParams, KeyFile, Secret
    from drsync.repo.reader import SnapshotReader
    from drsync.repo.repository import RepoConfig, Repository
    from drsync.repo.snapshot import Entry, Snapshot
    from drsync.repo.writer import SnapshotWriter, WriterStats

__all__ = [
    "Entry",
    "Index",
    "KdfParams",
    "KeyFile",
    "RepoConfig",
    "Repository",
    "Secret",
    "Snapshot",
    "SnapshotReader",
    "SnapshotWriter",
    "WriterStats",
]

_HOMES = {
    "Index": "index", "KdfParams": "keys", "KeyFile": "keys", "Secret": "keys",
    "SnapshotReader": "reader", "RepoConfig": "repository", "Repository": "repository",
    "Entry": "snapshot", "Snapshot": "snapshot", "SnapshotWriter": "writer",
    "WriterStats": "writer",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'drsync.repo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"drsync.repo.{home}"), name)
    globals()[name] = value
    return value
