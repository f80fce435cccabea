"""What every source yields, in its own terms (sources never import the repository)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["ItemMeta", "SourceItem", "SourceProblem"]


@dataclass(frozen=True)
class ItemMeta:
    """One named item: a file, directory, symlink or stream."""

    path: str  # relative, '/'-separated
    type: str  # "file", "dir", "symlink", "stream"
    mode: int = 0o644
    mtime_ns: int = 0
    size: int = 0
    target: str = ""  # symlink target
    # > 0: store the content in chunks cut at every multiple of this many bytes
    # (block-structured files: a changed page changes one chunk); 0: content-defined.
    fixed_chunk: int = 0


@dataclass
class SourceItem:
    meta: ItemMeta
    open: Callable[[], BinaryIO] | None = None  # content, for files and streams
    origin: str = ""  # where it was read from, for messages


@dataclass(frozen=True)
class SourceProblem:
    """Something not backed up: the path and why."""

    path: str
    reason: str
    partial: bool = True  # False: skipped by design (special files), reported only
