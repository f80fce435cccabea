"""A store in a local or mounted (NFS) directory.

Writes are crash-safe: the bytes go to a hidden temporary file in the target's
own directory (never renamed across directories, which network filesystems
do not make atomic), are fsynced, then renamed into place (or hard-linked,
for put-if-absent, which fails atomically when the name is taken), and the
directory is fsynced so the new name survives power loss.

A staged object (``stage``: a pack being built, named by its hash only when it
is complete) is written once, into a file with no name (``O_TMPFILE``) in the
directory of its prefix, or a hidden temporary there where the filesystem has
no such files; ``commit`` fsyncs it, hard-links it beside its place under a
hidden name and renames it into place within that directory. Before, a pack
was built in a temporary file elsewhere, read back and written again by
``put``: twice the bytes through the page cache for every pack of a backup.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

from drsync.atomic import owner_for
from drsync.errors import ObjectExists, ObjectNotFound, StoreError
from drsync.store.base import ObjectInfo, Store, validate_key, validate_prefix
from drsync.store.capabilities import PendingUpload, Staged

__all__ = ["NO_ANONYMOUS", "NO_HARD_LINKS", "TMP_PREFIX", "LocalStore", "describe_os_error",
           "fsync_dir"]

TMP_PREFIX = ".tmp-"
STALE_TMP_S = 900.0


def describe_os_error(err: OSError) -> str:
    """The reason, in words an operator acts on."""
    if err.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif err.errno == errno.EDQUOT:
        reason = "disk quota exceeded"
    elif err.errno == errno.ESTALE:
        reason = "stale file handle (network filesystem remounted?)"
    elif err.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    elif err.errno == errno.EROFS:
        reason = "read-only filesystem"
    else:
        reason = err.strerror or str(err)
    return reason


def _describe(err: OSError, what: str) -> str:
    return f"{what}: {describe_os_error(err)}"


def _preallocate(fd: int, size: int) -> None:
    """Reserve blocks before writing: a full disk fails at once, and ext4 writes into
    allocated blocks several times faster than it allocates them while writing."""
    if size < 65536:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise  # ENOSPC and friends: reported by put() like any write error


# A file with no name until it is linked (Linux O_TMPFILE), read back for hashing.
_ANONYMOUS_FLAGS = os.O_RDWR | getattr(os, "O_TMPFILE", 0) | os.O_CLOEXEC
# What a kernel or filesystem without O_TMPFILE answers (old kernels: EISDIR).
NO_ANONYMOUS = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL,
                          errno.ENOSYS})
# What a filesystem that cannot hard-link answers; /proc missing: ENOENT is not among
# them, it is an error like any other.
NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK,
                           errno.ENOSYS})


def fsync_dir(path: Path) -> None:
    """Make a directory's new or removed names durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(Store):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.url = str(self.root)
        self._made_dirs: set[Path] = set()
        self.owner = owner_for(self.root)  # root writing into another user's repository

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._made_dirs:
            return
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            if self.owner is not None:
                for made in (directory, *directory.parents):
                    if made == self.root or self.root not in made.parents:
                        break
                    os.chown(made, *self.owner)
            fsync_dir(directory.parent)
        self._made_dirs.add(directory)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        path = self._path(key)
        tmp = path.with_name(TMP_PREFIX + os.urandom(8).hex())
        try:
            self._ensure_dir(path.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if self.owner is not None:
                    os.fchown(fd, *self.owner)
                _preallocate(fd, len(data))
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            if if_absent:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise ObjectExists(f"{self.url}: object {key} already exists") from None
                finally:
                    tmp.unlink(missing_ok=True)
            else:
                os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise StoreError(_describe(err, f"{self.url}: writing {key}")) from None

    def stage(self, prefix: str, size_hint: int = 0) -> Staged:
        """A staged object whose key will start with ``prefix`` (a directory, "data/"):
        written in that directory, so ``commit`` links it into place without a copy.
        ``size_hint`` bytes are preallocated (the rest given back at ``commit``)."""
        return _LocalStaged(self, prefix, size_hint)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                if offset:
                    fh.seek(offset)
                return fh.read() if length is None else fh.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.url}: object {key} not found") from None
        except OSError as err:
            raise StoreError(_describe(err, f"{self.url}: reading {key}")) from None

    def stat(self, key: str) -> ObjectInfo:
        try:
            return ObjectInfo(key, self._path(key).stat().st_size)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.url}: object {key} not found") from None
        except OSError as err:
            raise StoreError(_describe(err, f"{self.url}: stat {key}")) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # Walk only the directory the prefix names, not the whole store.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        if not start.is_dir():
            return
        try:
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel_dir = os.path.relpath(dirpath, self.root)
                for name in filenames:
                    if name.startswith("."):
                        continue  # temporaries of an interrupted put
                    key = name if rel_dir == "." else f"{rel_dir}/{name}"
                    if key.startswith(prefix):
                        full = os.path.join(dirpath, name)
                        yield ObjectInfo(key, os.stat(full).st_size)
        except OSError as err:
            raise StoreError(_describe(err, f"{self.url}: listing {prefix or '/'}")) from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
        except FileNotFoundError:
            return
        except OSError as err:
            raise StoreError(_describe(err, f"{self.url}: deleting {key}")) from None

    # -- the PendingUploads capability: temporaries a killed put left behind ---------

    def pending_uploads(self) -> builtins.list[PendingUpload]:
        """Temporaries older than ``STALE_TMP_S``: a put takes seconds, so these belong to
        a dead process (younger ones may be a concurrent wal-ship's, and are left alone)."""
        found: builtins.list[PendingUpload] = []
        if not self.root.is_dir():
            return found
        now = time.time()
        for dirpath, _dirs, filenames in os.walk(self.root):
            for name in filenames:
                if not name.startswith(TMP_PREFIX):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue  # finished meanwhile
                if now - st.st_mtime >= STALE_TMP_S:
                    key = os.path.relpath(path, self.root)
                    found.append(PendingUpload(key, name, st.st_mtime, st.st_size))
        return found

    def abort_upload(self, upload: PendingUpload) -> None:
        try:
            (self.root / upload.key).unlink(missing_ok=True)
        except OSError as err:
            raise StoreError(_describe(err, f"{self.url}: removing {upload.key}")) from None


class _LocalStaged(Staged):
    """A staged object of a LocalStore (see the module's docstring)."""

    def __init__(self, store: LocalStore, prefix: str, size_hint: int) -> None:
        self._store = store
        self._name: Path | None = None  # a named temporary, where O_TMPFILE is not had
        directory = store.root / validate_prefix(prefix).rstrip("/") if prefix else store.root
        try:
            store._ensure_dir(directory)
            fd = -1
            if getattr(os, "O_TMPFILE", 0) and os.path.isdir("/proc/self/fd"):
                try:
                    fd = os.open(directory, _ANONYMOUS_FLAGS, 0o600)
                except OSError as err:
                    if err.errno not in NO_ANONYMOUS:
                        raise
            if fd < 0:
                self._name = directory / (TMP_PREFIX + os.urandom(8).hex())
                fd = os.open(self._name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o600)
            try:
                if store.owner is not None:
                    os.fchown(fd, *store.owner)
                _preallocate(fd, size_hint)
            except OSError:
                os.close(fd)
                raise
        except OSError as err:
            self._forget_name()
            raise StoreError(_describe(err, f"{store.url}: writing an object in "
                                            f"{prefix or '/'}")) from None
        self.file = os.fdopen(fd, "w+b", buffering=0)  # a failed write fails here, not later
        self._where = prefix or "/"

    def write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[self.file.write(view) or 0:]
        except OSError as err:
            raise StoreError(_describe(err, f"{self._store.url}: writing an object in "
                                            f"{self._where}")) from None

    def _forget_name(self) -> None:
        if self._name is not None:
            self._name.unlink(missing_ok=True)
            self._name = None

    def commit(self, key: str) -> None:
        store = self._store
        path = store._path(key)
        tmp = path.with_name(TMP_PREFIX + os.urandom(8).hex())
        try:
            with self.file:
                self.file.flush()
                fd = self.file.fileno()
                os.ftruncate(fd, self.file.tell())  # what the preallocation left over
                os.fsync(fd)
                # Written once and not read back by the backup: its pages leave the page
                # cache, for the next packs to reuse (as a restore's windows do, tree.py).
                with contextlib.suppress(OSError):
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                store._ensure_dir(path.parent)
                parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    try:
                        # linkat(AT_SYMLINK_FOLLOW): os.link without a dir_fd calls link(),
                        # which links /proc's magic symlink itself and fails with EXDEV.
                        source = self._name or f"/proc/self/fd/{fd}"
                        os.link(source, tmp.name, dst_dir_fd=parent, follow_symlinks=True)
                    except OSError as err:
                        # A filesystem without hard links; or a named temporary removed
                        # meanwhile (`check --cleanup-uploads` finds one unchanged for
                        # half an hour: a pack of a slow backup, on NFS): the bytes are
                        # still held by the descriptor, copied by put.
                        vanished = self._name is not None and err.errno == errno.ENOENT
                        if err.errno not in NO_HARD_LINKS | {errno.EXDEV} and not vanished:
                            raise
                        self.file.seek(0)
                        store.put(key, self.file.read())
                        return
                    os.replace(tmp.name, path.name, src_dir_fd=parent, dst_dir_fd=parent)
                    os.fsync(parent)
                finally:
                    os.close(parent)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise StoreError(_describe(err, f"{store.url}: writing {key}")) from None
        finally:
            self._forget_name()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self._forget_name()
