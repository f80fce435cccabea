"""Sources turn what a tenant has into named byte streams, and back.

They know nothing of the repository: a :class:`Source` yields
``SourceItem``s (a snapshot tree ``Entry``, from ``drsync.tree``, and, for
content, a way to open it); a target receives entries and verified bytes.
The backup and restore services join them to ``drsync.repo``.
"""

from drsync.sources.base import Source, SourceBase, SourceItem, SourceProblem
from drsync.sources.files import FilesSource, scan_paths
from drsync.sources.sqlite import SqliteSource, sqlite_consistent_copy
from drsync.sources.stdin import StdinSource
from drsync.sources.tree import (
    FileTreeTarget,
    LocalCopy,
    RestoringFile,
    refuse_unsafe_target,
    unfinished_restore,
)

__all__ = [
    "FileTreeTarget",
    "FilesSource",
    "LocalCopy",
    "RestoringFile",
    "Source",
    "SourceBase",
    "SourceItem",
    "SourceProblem",
    "SqliteSource",
    "StdinSource",
    "refuse_unsafe_target",
    "scan_paths",
    "sqlite_consistent_copy",
    "unfinished_restore",
]
