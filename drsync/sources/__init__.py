"""Sources turn what a tenant has into named byte streams, and back.

They know nothing of the repository: a source yields ``SourceItem``s (a
snapshot ``Entry`` and, for content, a way to open it); a target receives
entries and verified bytes. The backup and restore services join them to
``drsync.repo``.
"""

from drsync.sources.base import ItemMeta, SourceItem, SourceProblem
from drsync.sources.files import scan_paths
from drsync.sources.sqlite import sqlite_consistent_copy
from drsync.sources.tree import FileTreeTarget, LocalCopy, unfinished_restore

__all__ = [
    "FileTreeTarget",
    "ItemMeta",
    "LocalCopy",
    "SourceItem",
    "SourceProblem",
    "scan_paths",
    "sqlite_consistent_copy",
    "unfinished_restore",
]
