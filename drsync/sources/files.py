"""Files and directory trees: regular files, directories and symlinks.

Backing up: each path given becomes a top-level name (its basename), walked
depth-first with directories before their contents. Special files (FIFOs,
sockets, devices) are reported and skipped; an unreadable file or directory
is reported and the run ends partial.

Restoring: a ``FileTreeTarget`` writes only inside its target (it walks it
with directory descriptors and never follows a symlink), checks every entry
before the first byte, and writes each file to a hidden temporary beside its
final name, linking it into place only once every byte verified, so a failed
restore never leaves a plausible-looking half file. Modes and mtimes are
restored; directory mtimes last, since writing into a directory moves it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from drsync.errors import RestoreTargetError, SourceError, UnsafePath, UsageError
from drsync.paths import path_problem, tree_problems
from drsync.sources.base import SourceBase, SourceItem, SourceProblem
from drsync.tree import Entry

__all__ = ["FileTreeTarget", "FilesSource", "scan_paths"]


def _opener(path: str):  # type: ignore[no-untyped-def]
    return lambda: open(path, "rb")


class FilesSource(SourceBase):
    """Files, directories and symlinks under each path; an unreadable one is a problem."""

    kind = "files"
    skips_unreadable = True

    def __init__(self, paths: Iterable[str]) -> None:
        super().__init__()
        self._paths = list(paths)
        self._spec["paths"] = list(self._paths)

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
                         path)
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


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# A filesystem that cannot hard-link answers one of these; the temporary is renamed instead.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


class FileTreeTarget:
    """Writes restored items under ``root`` and nowhere else; never replaces what is there.

    The target is walked with directory descriptors, one component at a time
    and never following a symlink, so no link (already in the target, or made
    by an earlier entry) can carry a write, a mode or a time outside it. Files
    are created ``O_EXCL | O_NOFOLLOW`` under a random temporary name and
    linked to their final name, which fails rather than replace anything.
    ``prepare`` checks every entry before the first byte is written.
    """

    def __init__(self, root: str | Path, *, snapshot: str = "") -> None:
        self.root = Path(root).absolute()
        self._snapshot = f"snapshot {snapshot} " if snapshot else ""
        self._root_fd: int | None = None
        self._stack: list[tuple[str, int]] = []  # the open directories of the current path
        self._dirs: list[tuple[list[str], Entry]] = []

    def __enter__(self) -> FileTreeTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._unwind(0)
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    # -- before the first byte ---------------------------------------------------

    def prepare(self, metas: Iterable[Entry]) -> None:
        """Refuse unsafe entries and conflicts with what the target holds, writing nothing."""
        items = [(m.path, m.type) for m in metas]
        problems = tree_problems(items)
        if problems:
            path, reason = problems[0]
            more = f" ({len(problems)} unsafe entries in all)" if len(problems) > 1 else ""
            raise self._unsafe(path, reason + more)
        if not os.path.lexists(self.root):
            return
        if not self.root.is_dir():
            raise UsageError(f"restore target {self.root} is not a directory")
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            dirs: set[str] = set()  # known to be real directories in the target
            for path, kind in items:
                self._probe(root_fd, path, kind, dirs)
        finally:
            os.close(root_fd)

    def _probe(self, root_fd: int, path: str, kind: str, dirs: set[str]) -> None:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            here = "/".join(parts[:depth])
            wants_dir = depth < len(parts) or kind == "dir"
            if wants_dir and here in dirs:
                continue
            try:
                st = os.stat(here, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                return  # nothing below exists either
            if wants_dir and stat.S_ISLNK(st.st_mode):
                raise self._unsafe(path, f"{here!r} is a symlink in the target {self.root}")
            if wants_dir and stat.S_ISDIR(st.st_mode):
                dirs.add(here)
                continue
            raise self._exists(here)

    # -- writing -------------------------------------------------------------------

    def directory(self, meta: Entry) -> None:
        parts = self._parts(meta)
        with self._writing(meta):
            parent = self._enter(parts[:-1], meta.path, create=True)
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
            except FileExistsError:
                self._existing_dir(parent, parts, meta.path)
            self._dirs.append((parts, meta))

    def symlink(self, meta: Entry) -> None:
        parts = self._parts(meta)
        with self._writing(meta):
            parent = self._enter(parts[:-1], meta.path, create=True)
            try:
                os.symlink(meta.target, parts[-1], dir_fd=parent)
            except FileExistsError:
                raise self._exists(meta.path) from None
            os.utime(parts[-1], ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=parent,
                     follow_symlinks=False)

    def file(self, meta: Entry, blocks: Iterable[bytes]) -> int:
        parts = self._parts(meta)
        name = parts[-1]
        with self._writing(meta):
            parent = self._enter(parts[:-1], meta.path, create=True)
            if _lexists(parent, name):
                raise self._exists(meta.path)
            tmp = f".{name[:64]}.{secrets.token_hex(8)}.drsync-tmp"
            fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            try:
                written = _write_all(fd, meta, blocks)
                self._place(parent, tmp, name, meta.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=parent)
                raise
            return written

    def finish(self) -> None:
        """Directory modes and times last (writing into a directory moves its mtime)."""
        for parts, meta in reversed(self._dirs):
            with self._writing(meta):
                fd = self._enter(parts, meta.path)
                os.fchmod(fd, meta.mode)
                os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
        with self._writing(Entry("", "dir")):
            self._open_root()  # an empty snapshot still leaves its (empty) target
        self.close()

    # -- the walk --------------------------------------------------------------------

    def _enter(self, parts: list[str], entry: str = "", *, create: bool = False) -> int:
        """The descriptor of directory ``parts`` under the root, opened component by
        component without following a symlink; missing ones made when ``create``."""
        keep = 0
        while (keep < len(self._stack) and keep < len(parts)
               and self._stack[keep][0] == parts[keep]):
            keep += 1
        self._unwind(keep)
        fd = self._stack[-1][1] if self._stack else self._open_root()
        for depth in range(keep, len(parts)):
            fd = self._open_dir(fd, parts[: depth + 1], entry, create)
            self._stack.append((parts[depth], fd))
        return fd

    def _unwind(self, keep: int) -> None:
        for _name, fd in reversed(self._stack[keep:]):
            os.close(fd)
        del self._stack[keep:]

    def _open_root(self) -> int:
        if self._root_fd is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._root_fd

    def _open_dir(self, parent: int, parts: list[str], entry: str, create: bool) -> int:
        try:
            return os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                self._existing_dir(parent, parts, entry)  # raises, unless it just changed
            raise
        with contextlib.suppress(FileExistsError):
            os.mkdir(parts[-1], dir_fd=parent)
        return self._open_dir(parent, parts, entry, create=False)

    def _existing_dir(self, parent: int, parts: list[str], entry: str) -> None:
        """Accept a real directory at ``parts``; refuse a symlink or anything else."""
        here = "/".join(parts)
        st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise self._unsafe(entry, f"{here!r} is a symlink in the target {self.root}")
        if not stat.S_ISDIR(st.st_mode):
            raise self._exists(here)

    def _place(self, parent: int, tmp: str, name: str, entry: str) -> None:
        """Give the finished temporary its name; a link cannot replace an existing one."""
        try:
            os.link(tmp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            raise self._exists(entry) from None
        except OSError as err:
            if err.errno not in _NO_HARD_LINKS:
                raise
            if _lexists(parent, name):
                raise self._exists(entry) from None
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
            return
        os.unlink(tmp, dir_fd=parent)

    # -- messages --------------------------------------------------------------------

    def _parts(self, meta: Entry) -> list[str]:
        reason = path_problem(meta.path)
        if reason is not None:
            raise self._unsafe(meta.path, reason)
        return meta.path.split("/")

    def _unsafe(self, path: str, reason: str) -> UnsafePath:
        return UnsafePath(f"refusing {self._snapshot}entry {path!r}: {reason}; a restore "
                          f"writes only inside its target")

    def _exists(self, path: str) -> UsageError:
        return UsageError(f"restore target {self.root / path} already exists; restore into an "
                          "empty place")

    @contextlib.contextmanager
    def _writing(self, meta: Entry) -> Iterator[None]:
        try:
            yield
        except OSError as err:
            raise RestoreTargetError(
                f"cannot write {self.root / meta.path}: {err.strerror or err}") from None


def _lexists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _write_all(fd: int, meta: Entry, blocks: Iterable[bytes]) -> int:
    """Write, sync, then set mode and mtime on the descriptor itself."""
    written = 0
    with os.fdopen(fd, "wb") as fh:
        _preallocate(fd, meta.size)
        for block in blocks:
            fh.write(block)
            written += len(block)
        fh.flush()
        os.fsync(fd)
        os.fchmod(fd, meta.mode if meta.type == "file" else 0o600)
        if meta.mtime_ns:
            os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
    return written
