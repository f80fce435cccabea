"""Files and directory trees: regular files, directories and symlinks.

Backing up: each path given becomes a top-level name (its basename), walked
depth-first with directories before their contents. Special files (FIFOs,
sockets, devices) are reported and skipped; an unreadable file or directory
is reported and the run ends partial.

Restoring: a ``FileTreeTarget`` writes each file to a hidden temporary beside
its final name and renames it into place only once every byte verified, so a
failed restore never leaves a plausible-looking half file. Modes and mtimes
are restored; directory mtimes last, since writing into a directory moves it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from drsync.errors import RestoreTargetError, SourceError, UsageError
from drsync.sources.base import ItemMeta, SourceItem, SourceProblem

__all__ = ["FileTreeTarget", "safe_relative", "scan_paths"]


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
        yield SourceItem(ItemMeta(rel, "file", mode, st.st_mtime_ns, st.st_size), _opener(path),
                         path)
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


def safe_relative(name: str) -> PurePosixPath:
    """A snapshot path as a relative path that cannot leave the restore target."""
    rel = PurePosixPath(name)
    if rel.is_absolute() or not rel.parts or any(p in ("..", ".", "") for p in rel.parts):
        raise UsageError(f"refusing snapshot path {name!r}: it would leave the restore target")
    return rel


def _preallocate(fd: int, size: int) -> None:
    """Reserve the file's blocks first: a full disk fails before a byte is written, and
    ext4 writes into allocated blocks several times faster than it allocates them."""
    if size <= 0:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return  # the filesystem cannot preallocate (some NFS); write as usual
        raise


class FileTreeTarget:
    """Writes restored items under ``root``; refuses to overwrite existing files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self._dirs: list[tuple[Path, ItemMeta]] = []
        self.root.mkdir(parents=True, exist_ok=True)

    def _dest(self, meta: ItemMeta) -> Path:
        dest = self.root.joinpath(*safe_relative(meta.path).parts)
        if meta.type != "dir" and os.path.lexists(dest):
            raise UsageError(f"restore target {dest} already exists; restore into an empty place")
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    def directory(self, meta: ItemMeta) -> None:
        dest = self._dest(meta)
        dest.mkdir(exist_ok=True)
        self._dirs.append((dest, meta))

    def symlink(self, meta: ItemMeta) -> None:
        dest = self._dest(meta)
        os.symlink(meta.target, dest)
        os.utime(dest, ns=(meta.mtime_ns, meta.mtime_ns), follow_symlinks=False)

    def file(self, meta: ItemMeta, blocks: Iterable[bytes]) -> int:
        dest = self._dest(meta)
        tmp = dest.with_name(f".{dest.name}.drsync-tmp")
        written = 0
        try:
            with open(tmp, "wb") as fh:
                _preallocate(fh.fileno(), meta.size)
                for block in blocks:
                    fh.write(block)
                    written += len(block)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, meta.mode if meta.type == "file" else 0o600)
            if meta.mtime_ns:
                os.utime(tmp, ns=(meta.mtime_ns, meta.mtime_ns))
            os.replace(tmp, dest)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise RestoreTargetError(f"cannot write {dest}: {err.strerror or err}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return written

    def finish(self) -> None:
        for dest, meta in reversed(self._dirs):
            os.chmod(dest, meta.mode)
            os.utime(dest, ns=(meta.mtime_ns, meta.mtime_ns))
