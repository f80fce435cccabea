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
from drsync.sources.base import SourceBase, SourceItem, SourceProblem
from drsync.sources.blocks import file_block_chunk
from drsync.tree import Entry

__all__ = ["FilesSource", "scan_paths"]


def _opener(path: str):  # type: ignore[no-untyped-def]
    return lambda: open(path, "rb")


class FilesSource(SourceBase):
    """Files, directories and symlinks under each path; an unreadable one is a problem."""

    kind = "files"
    skips_unreadable = True

    def __init__(self, paths: Iterable[str]) -> None:
        super().__init__()
        self._paths = list(paths)
        # Absolute: the identity retention groups by (`backup data` in two directories is
        # two sources, `backup src` and `backup /abs/src` one), as the snapshot shows it.
        self._spec["paths"] = [os.path.abspath(p) for p in self._paths]

    def describe(self) -> str:
        return " ".join(self._paths)

    def items(self) -> Iterator[SourceItem]:
        return scan_paths(self._paths, self.problems)


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
        yield SourceItem(Entry(rel, "symlink", mode, st.st_mtime_ns, 0, os.readlink(path)))
    elif stat.S_ISREG(st.st_mode):
        if not os.access(path, os.R_OK):
            problems.append(SourceProblem(path, "permission denied"))
            return
        yield SourceItem(Entry(rel, "file", mode, st.st_mtime_ns, st.st_size), _opener(path),
                         path, fixed_chunk=file_block_chunk(path, st.st_size))
    elif stat.S_ISDIR(st.st_mode):
        try:
            names = sorted(os.listdir(path))
        except OSError as err:
            problems.append(SourceProblem(path, err.strerror or str(err)))
            return
        yield SourceItem(Entry(rel, "dir", mode, st.st_mtime_ns))
        for child in names:
            yield from _walk(os.path.join(path, child), f"{rel}/{child}", problems)
    else:
        problems.append(SourceProblem(path, "special file (device, FIFO or socket) skipped",
                                      partial=False))
