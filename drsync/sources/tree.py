"""Restoring a tree into a directory: ``FileTreeTarget``, the one writer of every restore.

A ``FileTreeTarget`` writes only inside its target (it walks it
with directory descriptors and never follows a symlink), checks every entry
before the first byte, and writes each file without a name (Linux
``O_TMPFILE``; elsewhere, and in a delta restore, a hidden temporary beside
its final name), linking it into place only once every byte verified, so a
failed restore never leaves a plausible-looking half file. Modes and mtimes are
restored; directory mtimes last, since writing into a directory moves it.
A file being restored (``RestoringFile``) is written at its offsets by any
thread (the reader's workers) and linked into place by the one that wrote
its last chunk; what a restore wrote is made durable all at once, by
``finish``, before the unfinished mark goes.

A delta restore (``delta=True``, as pgBackRest's ``--delta``) goes into a
target that already holds files (a stale standby, a half-finished earlier
restore): ``prepare`` removes what the snapshot does not hold (and what has
the wrong type there), walking the target by descriptor as the writes do;
``compare`` tells which chunks of a file there already are the snapshot's
(each chunk's keyed hash, at its offset), so that a whole file is kept
(mode and mtime set) instead of fetched, and a file that differs is
rewritten from its matching chunks (read again, and verified, from the old
copy) and the fetched rest, then replaced by an atomic rename of the
verified temporary. The result is what a restore into an empty target
makes. While a restore writes, ``UNFINISHED`` in the target's root names
its snapshot, so that the same restore run again after a kill resumes as a
delta (``unfinished_restore``); a resume removes only the killed restore's
temporaries, never what else the target held (``remove_extra=False``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from drsync.errors import RestoreTargetError, UnsafePath, UsageError
from drsync.paths import path_problem, tree_problems
from drsync.store.capabilities import capability
from drsync.store.local import NO_ANONYMOUS, NO_HARD_LINKS, LocalStore
from drsync.tree import Entry

__all__ = ["UNFINISHED", "DeltaStats", "FileTreeTarget", "LocalCopy", "RestoringFile",
           "refuse_unsafe_target", "unfinished_restore"]
# The hidden temporary of a file being restored (see RestoringFile), and nothing else.
_TEMPORARY = re.compile(r"\..{1,64}\.[0-9a-f]{16}\.drsync-tmp", re.S)

# In the target's root while a restore writes into it: the snapshot's id. Run again, the
# same restore finds it and resumes as a delta; a finished restore removes it.
UNFINISHED = ".drsync-restore-unfinished"


# Files at least this large have their blocks reserved first (``_preallocate``); a
# smaller one is written in a few calls anyway, and the reservation would be one more
# journal transaction a file (most of a data directory's files are a few pages).
_PREALLOCATE_FROM = 1 << 20


def _preallocate(fd: int, size: int) -> None:
    """Reserve the file's blocks first: a full disk fails before a byte is written, and
    ext4 writes into allocated blocks several times faster than it allocates them."""
    if size < _PREALLOCATE_FROM:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return  # the filesystem cannot preallocate (some NFS); write as usual
        raise


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# A file with no name yet (Linux O_TMPFILE), linked into place through /proc by ``done``.
_ANONYMOUS_FLAGS = os.O_WRONLY | getattr(os, "O_TMPFILE", 0) | os.O_CLOEXEC


@dataclass
class LocalCopy:
    """What a delta target holds of a file: which chunks match, at their offsets, and
    whether the file is whole (every chunk, and nothing after them)."""
    matches: list[bool]
    whole: bool


@dataclass
class DeltaStats:
    """What a delta restore found in its target: files kept as they were, entries removed."""
    files_kept: int = 0
    bytes_kept: int = 0
    removed: int = 0  # entries (a directory with all below it counts once) removed


class FileTreeTarget:
    """Writes restored items under ``root`` and nowhere else; never replaces what is there
    (unless ``delta``: then it makes the target equal to the snapshot, see the module).

    The target is walked with directory descriptors, one component at a time
    and never following a symlink, so no link (already in the target, or made
    by an earlier entry) can carry a write, a mode or a time outside it. Files
    are created without a name (``O_TMPFILE``), or ``O_EXCL | O_NOFOLLOW``
    under a random temporary name, and linked to their final name, which
    fails rather than replace anything.
    ``prepare`` checks every entry before the first byte is written.
    """

    def __init__(self, root: str | Path, *, snapshot: str = "", delta: bool = False,
                 remove_extra: bool = True) -> None:
        self.root = Path(root).absolute()
        self.delta = delta
        # A delta restore asked for removes what the snapshot lacks; one resuming a killed
        # restore (``remove_extra=False``) removes only that restore's temporaries: what
        # else the target held was there before, and is someone else's.
        self.remove_extra = remove_extra
        self.delta_stats = DeltaStats()
        self._snapshot = f"snapshot {snapshot} " if snapshot else ""
        self._root_fd: int | None = None
        self._stack: list[tuple[str, int]] = []  # the open directories of the current path
        self._dirs: list[tuple[list[str], Entry]] = []
        self._mark = True  # begin() marks the target unfinished, finish() unmarks it
        self._open_files: set[RestoringFile] = set()  # opened, not yet done
        # New files are created without a name (O_TMPFILE) until one fails to be: a
        # delta restore's replace needs a named temporary to rename.
        self._anonymous = (not delta and bool(getattr(os, "O_TMPFILE", 0))
                           and os.path.isdir("/proc/self/fd"))
        self._filesystems: dict[int, int] = {}  # st_dev -> a directory on it, for finish
        self._flusher = _Flusher()

    def __enter__(self) -> FileTreeTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the walk's descriptors; remove the temporaries of files never done
        (a restore that failed: nothing writes them any more)."""
        self._flusher.join()
        for restoring in list(self._open_files):
            restoring.abandon()
        for fd in self._filesystems.values():
            os.close(fd)
        self._filesystems.clear()
        self._unwind(0)
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    # -- before the first byte ---------------------------------------------------

    def prepare(self, metas: Iterable[Entry]) -> None:
        """Refuse unsafe entries and conflicts with what the target holds, writing nothing."""
        metas_list = list(metas)
        items = [(m.path, m.type) for m in metas_list]
        # A snapshot of a target with a mark in it restores that file: no mark then.
        self._mark = all(path != UNFINISHED for path, _kind in items)
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
            if self.delta:
                wanted = {m.path: (m.type, m.target) for m in metas_list}
                with self._writing(Entry("", "dir")):
                    self._prune(root_fd, "", wanted)
                return
            dirs: set[str] = set()  # known to be real directories in the target
            for path, kind in items:
                self._probe(root_fd, path, kind, dirs)
        finally:
            os.close(root_fd)

    def _prune(self, dir_fd: int, above: str, wanted: dict[str, tuple[str, str]]) -> None:
        """Remove, under the directory ``dir_fd`` (``above`` in the tree), every entry the
        snapshot does not hold as it is there; descend into the directories it keeps.
        Never follows a symlink: a link is an entry to keep or remove, not a way out."""
        for name in sorted(os.listdir(dir_fd)):
            rel = f"{above}{name}"
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            kind, link = wanted.get(rel, ("", ""))
            if not self.remove_extra and not kind and not (
                    _TEMPORARY.fullmatch(name) and stat.S_ISREG(st.st_mode)):
                continue  # not the snapshot's, not a restore's temporary: not ours
            if kind == "dir" and stat.S_ISDIR(st.st_mode):
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError as err:
                    if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                else:
                    try:
                        self._prune(child, f"{rel}/", wanted)
                    finally:
                        os.close(child)
                    continue
            elif (kind in ("file", "stream") and stat.S_ISREG(st.st_mode)) or (
                    kind == "symlink" and stat.S_ISLNK(st.st_mode)
                    and os.readlink(name, dir_fd=dir_fd) == link):
                continue
            if not self.remove_extra and kind:
                raise RestoreTargetError(
                    f"{self.root / rel} is in the way of the snapshot's {kind} (the restore "
                    "being resumed did not put it there): move it, or run with --delta to "
                    "make the target equal to the snapshot")
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=dir_fd)  # descriptor-based: links are unlinked
            else:
                os.unlink(name, dir_fd=dir_fd)
            self.delta_stats.removed += 1

    def compare(self, meta: Entry, chunks: list[tuple[bytes, int]],
                chunk_id: Callable[[bytes], bytes]) -> LocalCopy | None:
        """Delta: which of ``meta``'s chunks (``(id, length)`` in order, ids by
        ``chunk_id``) the file there already holds at their offsets; None when there
        is no plain file, or it holds none of them. Reads the file, writes nothing."""
        try:
            fd = self._open_existing(meta)
        except OSError:
            return None  # absent, or not a plain file: it is written
        with os.fdopen(fd, "rb", buffering=0) as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            matches = []
            for blob_id, length in chunks:
                data = fh.read(length)
                matches.append(len(data) == length and chunk_id(data) == blob_id)
        if not any(matches) and chunks:
            return None
        # Kept, a file gets the snapshot's mode and mtime in place; a file with another
        # name (a hard link, maybe outside the target) would have them too. It is
        # rewritten instead, from its matching chunks, and the new file renamed over it.
        whole = all(matches) and st.st_size == meta.size and st.st_nlink == 1
        return LocalCopy(matches, whole)

    @contextlib.contextmanager
    def existing(self, meta: Entry) -> Iterator[int]:
        """Delta: a descriptor reading the file now at ``meta``'s place (the copy that
        ``compare`` looked at), never through a link."""
        with self._writing(meta):
            fd = self._open_existing(meta)
        try:
            yield fd
        finally:
            os.close(fd)

    def _open_existing(self, meta: Entry) -> int:
        parts = self._parts(meta)
        parent = self._enter(parts[:-1], meta.path)
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)

    def keep(self, meta: Entry) -> None:
        """Delta: the file there has the snapshot's bytes; give it the snapshot's mode and
        mtime (through its own descriptor, never following a link)."""
        parts = self._parts(meta)
        with self._writing(meta):
            parent = self._enter(parts[:-1], meta.path)
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                os.fchmod(fd, meta.mode if meta.type == "file" else 0o600)
                if meta.mtime_ns:
                    os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
            finally:
                os.close(fd)
        self.delta_stats.files_kept += 1
        self.delta_stats.bytes_kept += meta.size

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
                if not (self.delta and _link_to(parent, parts[-1]) == meta.target):
                    raise self._exists(meta.path) from None
            os.utime(parts[-1], ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=parent,
                     follow_symlinks=False)

    def file(self, meta: Entry, blocks: Iterable[bytes]) -> int:
        """Write one file from its blocks, in order, on this thread; the bytes written."""
        restoring = self.open_file(meta)
        offset = 0
        try:
            for block in blocks:
                restoring.put(offset, block)
                offset += len(block)
            restoring.size = offset
            restoring.done()
        except BaseException:
            restoring.abandon()
            raise
        return offset

    def open_file(self, meta: Entry) -> RestoringFile:
        """A new file at ``meta``'s place, written by ``put`` at any offset from any
        thread and linked into place by ``done``: without a name, or a hidden
        temporary beside its final name, until then (``close`` removes one never
        done). The file itself is created by the first ``put`` (or ``done``), on
        whichever thread makes it: creating a file costs more than writing a small
        one, and this thread walks the tree for the workers."""
        parts = self._parts(meta)
        with self._writing(meta):
            parent = os.dup(self._enter(parts[:-1], meta.path, create=True))
        restoring = RestoringFile(self, meta, parent, parts[-1])
        self._open_files.add(restoring)
        return restoring

    def _create(self, parent: int, meta: Entry, name: str) -> tuple[int, str | None]:
        """The descriptor of a new file for ``meta`` in ``parent``, and its temporary name
        (None: it has none yet)."""
        tmp: str | None = None
        with self._writing(meta):
            fd = self._open_anonymous(parent)
            if fd is None:
                if not self.delta and _lexists(parent, name):
                    raise self._exists(meta.path)
                tmp = f".{name[:64]}.{secrets.token_hex(8)}.drsync-tmp"
                fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            try:
                _preallocate(fd, meta.size)
            except BaseException:
                os.close(fd)
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=parent)
                raise
        return fd, tmp

    def _open_anonymous(self, parent: int) -> int | None:
        """A new file in ``parent`` with no name (O_TMPFILE): nothing to remove if it is
        never done, even after a kill, and one directory change (its link) instead of
        three (create, link, unlink), which on ext4 cost more than writing a small
        file. None where the filesystem cannot (then named temporaries, from then on).
        ``prepare`` found no entry in the way; the link by ``done`` never replaces one."""
        if not self._anonymous:
            return None
        try:
            return os.open(".", _ANONYMOUS_FLAGS, 0o600, dir_fd=parent)
        except OSError as err:
            if err.errno not in NO_ANONYMOUS:  # without O_TMPFILE
                raise
            self._anonymous = False
            return None

    def begin(self, snapshot_id: str) -> None:
        """Before the first byte: mark the target as holding an unfinished restore of
        ``snapshot_id`` (durably: a kill right after it still leaves the mark)."""
        if not self._mark:
            return
        with self._writing(Entry(UNFINISHED, "file")):
            root = self._open_root()
            fd = os.open(UNFINISHED, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=root)
            with os.fdopen(fd, "w") as fh:
                fh.write(snapshot_id + "\n")
                fh.flush()
                os.fsync(fd)
            os.fsync(root)

    def finish(self) -> None:
        """Directory modes and times last (writing into a directory moves its mtime);
        then everything written made durable at once, and only then the mark removed.

        Files are not synced one by one: a restore of a data directory (a thousand
        files, most tiny) spent its time in their fsyncs. One ``syncfs`` of each
        filesystem written to makes every file and directory entry durable together;
        a crash before it leaves the mark, and the restore run again compares every
        file chunk by chunk, so a file left short or holed by the crash is rewritten."""
        for parts, meta in reversed(self._dirs):
            with self._writing(meta):
                fd = self._enter(parts, meta.path)
                os.fchmod(fd, meta.mode)
                os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
        with self._writing(Entry("", "dir")):
            root = self._open_root()  # an empty snapshot still leaves its (empty) target
            failed = self._flusher.join()
            if failed is not None:  # a flush ahead failed: the file it was for is named
                raise self._cannot_write(*failed)
            for fd in self._filesystems.values():
                _sync_filesystem(fd)
            if self._mark:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(UNFINISHED, dir_fd=root)
                os.fsync(root)
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
            self._root_fd = self._seen(os.open(self.root,
                                               os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        return self._root_fd

    def _seen(self, dir_fd: int) -> int:
        """A directory written into: its filesystem is synced by ``finish`` (a delta
        target may hold a mount point, e.g. pg_wal on its own disk)."""
        dev = os.fstat(dir_fd).st_dev
        if dev not in self._filesystems:
            self._filesystems[dev] = os.dup(dir_fd)
        return dir_fd

    def _open_dir(self, parent: int, parts: list[str], entry: str, create: bool) -> int:
        try:
            return self._seen(os.open(parts[-1], _DIR_FLAGS, dir_fd=parent))
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

    def _place(self, parent: int, tmp: str | None, name: str, entry: str, fd: int) -> None:
        """Give the finished temporary its name; a link cannot replace an existing one.
        Delta: a rename replaces the differing file ``prepare`` left there, atomically.
        An anonymous one (``tmp`` None) is linked through its descriptor."""
        if tmp is None:
            try:
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=parent, follow_symlinks=True)
            except FileExistsError:
                raise self._exists(entry) from None
            return
        if self.delta:
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
            return
        try:
            os.link(tmp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            raise self._exists(entry) from None
        except OSError as err:
            if err.errno not in NO_HARD_LINKS:  # without links: renamed
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
                          "empty place, or add --delta to make the target equal to the snapshot")

    @contextlib.contextmanager
    def _writing(self, meta: Entry) -> Iterator[None]:
        try:
            yield
        except OSError as err:
            raise self._cannot_write(meta, err) from None

    def _cannot_write(self, meta: Entry, err: OSError) -> RestoreTargetError:
        return RestoreTargetError(f"cannot write {self.root / meta.path}: {err.strerror or err}")


class RestoringFile:
    """One file being written by a restore (``FileTreeTarget.open_file``): ``put`` at
    any offset, from any thread (one writer a range); ``done`` once every byte is
    there. Safe by construction: it writes only through the descriptor of the
    file it created (without a name, or ``O_EXCL`` under a temporary one) in the
    directory it was given by descriptor, and links it into place there. The
    file is created by the first ``put`` or ``done``, on that thread."""

    def __init__(self, tree: FileTreeTarget, meta: Entry, parent: int, name: str) -> None:
        self.meta = meta
        self.size = meta.size  # what the file holds when done (the chunks' total)
        self._tree, self._parent, self._name = tree, parent, name
        self._fd = -1  # created by the first put or done (``_descriptor``)
        self._tmp: str | None = None
        self._creating = threading.Lock()
        self._unflushed = 0  # bytes put since writeback was last started
        self._flushed_to = 0  # writeback started below this offset
        self._dropped_to = 0  # written out and dropped from the page cache below this offset

    def _descriptor(self) -> int:
        if self._fd < 0:
            with self._creating:  # two workers may bring its first chunks at once
                if self._fd < 0:
                    fd, self._tmp = self._tree._create(self._parent, self.meta, self._name)
                    self._fd = fd
        return self._fd

    def put(self, offset: int, data: bytes | memoryview) -> None:
        fd = self._descriptor()
        try:
            done = os.pwrite(fd, data, offset)
            while done < len(data):  # a short write (a signal): write the rest
                done += os.pwrite(fd, memoryview(data)[done:], offset + done)
            self._unflushed += done
            if self._unflushed >= _WRITEBACK_EVERY:  # racy between threads: a hint only
                # Chunks come about in offset order: start writeback of what lies below
                # this one since the last time (the whole file, each time, cost 4%).
                start, self._flushed_to, self._unflushed = self._flushed_to, offset, 0
                if offset > start:
                    _start_writeback(fd, start, offset - start)
                    # The range whose writeback began one step ago: wait for it, drop it.
                    dropped, self._dropped_to = self._dropped_to, start
                    if start > dropped:
                        _drop_written(fd, dropped, start - dropped)
                        self._tree._flusher.window_written(fd, self.meta)
        except OSError as err:
            raise self._tree._cannot_write(self.meta, err) from None

    def done(self) -> None:
        """Give it its size, mode and mtime (on the descriptor), then its name."""
        meta = self.meta
        try:
            fd = self._descriptor()
            with self._tree._writing(meta):
                if self.size != meta.size:
                    os.ftruncate(fd, self.size)
                os.fchmod(fd, meta.mode if meta.type == "file" else 0o600)
                if meta.mtime_ns:
                    os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
                self._tree._place(self._parent, self._tmp, self._name, meta.path, fd)
        except BaseException:
            self.abandon()  # e.g. its name taken meanwhile: no temporary is left behind
            raise
        self._release()

    def abandon(self) -> None:
        """A file that will not be done: its temporary removed (an anonymous one goes
        with its descriptor)."""
        if self._tmp is not None and self._parent >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp, dir_fd=self._parent)
        self._release()

    def _release(self) -> None:
        self._tree._open_files.discard(self)
        for fd in (self._fd, self._parent):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._parent = -1


class _Flusher:
    """Flushes ahead of ``finish``'s ``syncfs``, on a thread of its own.

    A window written out by ``_drop_written`` has only reached the device, and a
    virtual disk's host (or a controller's write-back cache) may still hold it:
    the final ``syncfs`` then waited for all of it at once, 0.7-1.7 s of a 1 GB
    restore's 3.6-4.5 s on this VM. Every ``FLUSH_EVERY`` windows, one ``fdatasync``
    of the file being written runs here (one at a time, on a duplicate of its
    descriptor) while the restore goes on, so that the device's cache is emptied
    as the restore proceeds. Not for durability (``syncfs`` still makes it so); a
    flush that fails is kept and ``finish`` fails on it, naming the file."""

    FLUSH_EVERY = 4  # windows (of _WRITEBACK_EVERY bytes) between flushes

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows = 0
        self._thread: threading.Thread | None = None
        self.failed: tuple[Entry, OSError] | None = None

    def window_written(self, fd: int, meta: Entry) -> None:
        with self._lock:
            self._windows += 1
            if self._windows % self.FLUSH_EVERY or (
                    self._thread is not None and self._thread.is_alive()):
                return
            try:  # a duplicate: the file may be done, and its descriptor closed, meanwhile
                copy = os.dup(fd)
            except OSError:
                return  # no descriptor to spare: the final syncfs does it all
            self._thread = threading.Thread(target=self._flush, args=(copy, meta),
                                            name="restore-flush", daemon=True)
            self._thread.start()

    def _flush(self, fd: int, meta: Entry) -> None:
        try:
            os.fdatasync(fd)
        except OSError as err:
            with self._lock:
                self.failed = self.failed or (meta, err)
        finally:
            os.close(fd)

    def join(self) -> tuple[Entry, OSError] | None:
        """Wait for the flush in flight; the first one that failed, if any did."""
        thread = self._thread
        if thread is not None:
            thread.join()
        return self.failed


def _sync_filesystem(fd: int) -> None:
    """Make everything written on ``fd``'s filesystem durable (Linux ``syncfs``; where
    it is missing, ``sync``, which on Linux also waits for the writes)."""
    syncfs = getattr(_libc(), "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    if syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _drop_written(fd: int, offset: int, length: int) -> None:
    """Wait until this range (whose writeback began a step ago) is written out, then drop
    its pages from the page cache, so that a restore's page cache stays a few windows
    deep instead of its whole size. The next windows then reuse the pages just freed:
    on a VM that hands free memory back to its host (virtio-balloon free page
    reporting), writing into pages that had been free for a few seconds cost about 3 s
    of system time a GB here, in the copy itself, against 0.5 s. Not for durability
    (the final ``syncfs`` is), and a hint only: errors are left to that ``syncfs``."""
    wait = _sync_file_range()
    if wait is not None:
        wait(fd, offset, length, _SYNC_FILE_RANGE_WAIT_ALL)
    _start_writeback(fd, offset, length)  # DONTNEED: now clean, the pages are dropped


# SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
_SYNC_FILE_RANGE_WAIT_ALL = 1 | 2 | 4


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    function = getattr(_libc(), "sync_file_range", None)  # Linux only
    if function is None:
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def refuse_unsafe_target(target: str | Path, *, delta: bool, store: object = None,
                         flag: str = "--target") -> Path:
    """The target as an absolute path, or UsageError when restoring there would destroy
    what must not be: an empty value (the working directory), with ``delta`` (which
    removes what the snapshot lacks) the root directory, and the repository of a local
    ``store`` (the target inside it, or, with delta, holding it)."""
    if not str(target).strip():
        raise UsageError(f"{flag} is empty (an unset variable?): name the directory to "
                         "restore into")
    root = Path(os.path.abspath(target))
    real = Path(os.path.realpath(root))
    if delta and real == Path("/"):
        raise UsageError(f"refusing a --delta restore into {root}: it would remove every "
                         "file of the system the snapshot does not hold")
    local = capability(store, LocalStore)
    if local is not None:
        repo_root = local.root
        repo_real = Path(os.path.realpath(repo_root))
        within = real == repo_real or repo_real in real.parents
        if within or (delta and real in repo_real.parents):
            where = "holds it" if within else "is inside it (a --delta would remove it)"
            raise UsageError(f"refusing to restore into {root}: the repository {repo_root} "
                             f"{where}; restore somewhere else")
    return root


def unfinished_restore(root: str | Path) -> str | None:
    """The snapshot id of the unfinished restore ``root`` holds (``begin`` marked it and no
    ``finish`` followed), else None. Read without following a link."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = os.open(UNFINISHED, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
        with os.fdopen(fd, "rb") as fh:
            return fh.read(200).decode(errors="replace").strip() or None
    except OSError:
        return None
    finally:
        os.close(root_fd)


def _link_to(dir_fd: int, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None


def _lexists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


# Every this many bytes put into a file, writeback of what it holds is started (not waited
# for), so the disk works while later chunks are decrypted and the final sync has little left;
# the range started a step before is then waited for and dropped (``_drop_written``).
_WRITEBACK_EVERY = 16 << 20


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing this range's dirty pages out now (Linux:
    POSIX_FADV_DONTNEED begins asynchronous writeback; it never waits, never loses data)."""
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
