"""The repository format: chunk, dedup, compress, encrypt, pack, index, snapshot.

Everything at rest is described byte by byte in docs/FORMAT.md.
"""

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
