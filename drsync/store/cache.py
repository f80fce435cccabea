"""A local cache of a remote repository's content-addressed documents.

Snapshots, index files, run records and drill records (``snapshots/``,
``index/``, ``runs/``, ``drills/``) are named by the SHA-256 of their bytes
(docs/FORMAT.md §1) and never change once written, so a copy read once can
serve every later read, as restic's cache does. Every night a tenant's backup
reads the whole index to deduplicate, and a restore, a drill or ``snapshots``
at the secondary site reads every snapshot: over a shared WAN link, hundreds
of requests and megabytes that are the same as last time. ``CachedStore``
wraps an S3 store (outermost, so a hit is neither paced nor retried):

- a whole read of a document is served from ``<directory>/<key>`` when the
  file's SHA-256 is its name; a file that does not hash to it (a torn write,
  a flipped bit on the cache's disk) is removed and the object read from the
  store again, so the cache can never make a sound repository look damaged,
  nor hide a damaged one (a document read from the store that does not hash
  to its name is returned as it is, for the repository to report, and never
  cached);
- documents this process reads or writes are kept (each written to a
  temporary file, then renamed; not fsynced: a torn copy only costs a re-read);
- a listing of one of those prefixes removes the cached documents it no
  longer names (forgotten snapshots, index files replaced by prune), and a
  delete through this store removes the copy at once;
- ``check`` reads around the cache (``[store] cache`` off for it): it is the
  store's objects it must prove sound, not their copies here;
- the cache is an optimisation only: a cache directory that cannot be
  created or written (a full disk, a read-only mount) is one warning per
  process (``warn_once``) and the command goes on reading from the store.

The cached bytes are the sealed objects as stored: encrypted and
authenticated, no more readable than the bucket. Files are created 0600, the
store's cache directory and its folders 0700. Pack files and WAL are never cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from drsync.store.base import ObjectInfo, Store
from drsync.store.capabilities import warn_once

__all__ = ["CACHED_PREFIXES", "CachedStore", "cache_directory"]

CACHED_PREFIXES = ("snapshots/", "index/", "runs/", "drills/")


def cache_directory(root: str | os.PathLike[str], url: str) -> Path:
    """The cache of the store at ``url`` under ``root``: one directory per URL, named by
    a digest of it (a bucket prefix can be any key) with a readable tail."""
    tail = "".join(c if c.isalnum() or c in "-_." else "_" for c in url.rstrip("/"))[-40:]
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return Path(root) / f"{digest}-{tail.strip('_')}"


def _young(path: Path, seconds: float = 3600) -> bool:
    """Whether ``path`` changed in the last hour (another process's temporary file)."""
    import time

    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


def _cached(key: str) -> bool:
    return key.startswith(CACHED_PREFIXES) and key.count("/") == 1


class CachedStore(Store):
    """``inner`` with its documents cached in ``directory`` (see the module's text)."""

    def __init__(self, inner: Store, directory: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.url = inner.url
        self.connections = inner.connections
        self.directory = Path(directory)
        self.hits = self.misses = 0  # whole document reads served from the cache / the store
        self._writable = True
        self._lock = threading.Lock()

    # -- the cache ----------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.directory / key

    def _lookup(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() == key.rsplit("/", 1)[1]:
            return data
        self._discard(key)  # torn or damaged: read from the store again
        return None

    def _keep(self, key: str, data: bytes) -> None:
        if not self._writable or hashlib.sha256(data).hexdigest() != key.rsplit("/", 1)[1]:
            return
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            if not path.parent.is_dir():  # the cache's own directory and the prefix's
                self.directory.parent.mkdir(parents=True, exist_ok=True)
                self.directory.mkdir(mode=0o700, exist_ok=True)
                path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            os.replace(tmp, path)
        except OSError as err:
            with self._lock:
                self._writable = False
            warn_once(self.url, "cache",
                      f"local cache {self.directory} not written ({err.strerror or err}); "
                      "reading documents from the store")

    def _discard(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._path(key).unlink(missing_ok=True)

    def _prune(self, prefix: str, listed: list[ObjectInfo]) -> None:
        """Remove the cached documents under ``prefix`` the store no longer lists."""
        folder = self._path(prefix.rstrip("/"))
        try:
            cached = [entry.name for entry in os.scandir(folder) if entry.is_file()]
        except OSError:
            return
        keep = {info.key.rsplit("/", 1)[1] for info in listed}
        for name in cached:
            if name not in keep and not (name.startswith(".") and _young(folder / name)):
                self._discard(f"{prefix}{name}")  # a temporary file left by a kill too

    # -- the store ----------------------------------------------------------------------

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset or length is not None or not _cached(key):
            return self.inner.get(key, offset, length)
        data = self._lookup(key)
        if data is not None:
            with self._lock:
                self.hits += 1
            return data
        data = self.inner.get(key)
        with self._lock:
            self.misses += 1
        self._keep(key, data)
        return data

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        self.inner.put(key, data, if_absent=if_absent)
        if _cached(key):
            self._keep(key, data)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        listed = list(self.inner.list(prefix))
        if prefix in CACHED_PREFIXES:
            self._prune(prefix, listed)
        return iter(listed)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        if _cached(key):
            self._discard(key)

    def close(self) -> None:
        self.inner.close()
