"""Files and directory trees for a backup: regular files, directories and symlinks.

Each path given becomes a top-level name (its basename), walked depth-first
with directories before their contents. A SQLite database among the files is
chunked at its page boundaries (drsync.sources.blocks). Special files (FIFOs,
sockets, devices) are reported and skipped; an unreadable file or directory is
reported and the run ends partial. Restoring a tree is ``drsync.sources.tree``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator

from drsync.errors import SourceError, UsageError
from drsync.sources.base import ItemMeta, SourceItem, SourceProblem
from drsync.sources.blocks import file_block_chunk

__all__ = ["scan_paths"]


def _opener(path: str):  # type: ignore[no-untyped-def]
    return lambda: open(path, "rb")


def scan_paths(paths: Iterable[str], problems: list[SourceProblem]) -> Iterator[SourceItem]:
    """Yield items for every path, appending what was skipped to ``problems``."""
    roots: dict[str, str] = {}
    for raw in paths:
        path = os.path.abspath(raw)
        if not os.path.lexists(path):
            raise SourceError(f"source path {raw} does not exist")
        name = os.path.basename(path.rstrip("/")) or "root"
        if name in roots:
            raise UsageError(f"two sources share the name {name!r}: {roots[name]} and {path}")
        roots[name] = path
    for name, path in roots.items():
        yield from _walk(path, name, problems)


def _walk(path: str, rel: str, problems: list[SourceProblem]) -> Iterator[SourceItem]:
    try:
        st = os.lstat(path)
    except OSError as err:
        problems.append(SourceProblem(path, err.strerror or str(err)))
        return
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        yield SourceItem(ItemMeta(rel, "symlink", mode, st.st_mtime_ns, 0, os.readlink(path)))
    elif stat.S_ISREG(st.st_mode):
        if not os.access(path, os.R_OK):
            problems.append(SourceProblem(path, "permission denied"))
            return
        yield SourceItem(ItemMeta(rel, "file", mode, st.st_mtime_ns, st.st_size,
                                  fixed_chunk=file_block_chunk(path, st.st_size)),
                         _opener(path), path)
    elif stat.S_ISDIR(st.st_mode):
        try:
            names = sorted(os.listdir(path))
        except OSError as err:
            problems.append(SourceProblem(path, err.strerror or str(err)))
            return
        yield SourceItem(ItemMeta(rel, "dir", mode, st.st_mtime_ns))
        for child in names:
            yield from _walk(os.path.join(path, child), f"{rel}/{child}", problems)
    else:
        problems.append(SourceProblem(path, "special file (device, FIFO or socket) skipped",
                                      partial=False))
