"""Stores: where repository objects live. ``open_store`` turns a URL into one.

It is also the one place where wrappers are composed around a backend, as
restic does: ``CachedStore(RetryStore(ThrottledStore(S3Store)))``. The
throttle sits inside the retry so that bytes sent again are paced like the
first ones; the cache of documents (``drsync.store.cache``, remote stores
only) outside both, so that a hit is neither paced nor retried.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from drsync.errors import UsageError
from drsync.malloc import resume_cyclic_gc
from drsync.store.base import ObjectInfo, Store, validate_key
from drsync.store.local import LocalStore
from drsync.store.memory import MemoryStore
from drsync.store.options import S3Options, StoreOptions

if TYPE_CHECKING:
    from drsync.store.throttle import TokenBucket

__all__ = ["LocalStore", "MemoryStore", "ObjectInfo", "S3Options", "Store", "StoreOptions",
           "open_store", "validate_key"]


_SCHEME_TYPO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?!//)")
_SCHEMES = ("s3", "file", "http", "https", "gs", "az", "b2", "sftp", "swift", "rest")


def url_problem(url: str) -> str | None:
    """What makes ``url`` no repository URL (None: nothing): a known scheme without its
    ``//`` (``s3:/bucket``, ``file:/srv``) would otherwise be a relative local path, and
    the backups would stay on this disk."""
    typo = _SCHEME_TYPO.match(url)
    if typo is None or typo.group(1).lower() not in _SCHEMES:
        return None
    scheme, rest = typo.group(1).lower(), url[typo.end():].lstrip("/")
    meant = f"s3://{rest}" if scheme == "s3" else f"file:///{rest}" if scheme == "file" else (
        f"{scheme}://{rest}")
    return (f"repository URL {url!r} is not a URL (a scheme needs '://') nor a local path "
            f"meant as one; did you mean {meant!r}?")


def open_store(url: str, options: StoreOptions | None = None, *,
               upload: TokenBucket | None = None) -> Store:
    """A plain path or ``file:///path`` opens a directory store; ``s3://bucket/prefix`` a
    bucket. ``options`` carries the S3 settings, retry deadline and bandwidth limits;
    ``upload`` is a bucket of the caller's (the agent's, whose rate follows its schedule)
    that paces uploads instead of the process's shared one."""
    if not url:
        raise UsageError("no repository given: use --repo, DRSYNC_REPO or `repo` in the config")
    options = (options or StoreOptions()).validate()
    problem = url_problem(url)
    if problem:
        raise UsageError(problem)
    store: Store
    if "://" not in url:
        store = LocalStore(url)
    else:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise UsageError(f"file URL {url!r} names a host; use file:///absolute/path")
            store = LocalStore(unquote(parsed.path))
        elif parsed.scheme == "s3":
            from drsync.store.s3 import S3Store  # botocore is imported only for S3 URLs

            store = S3Store(url, options.s3, connections=options.connections)
        else:
            raise UsageError(f"unsupported repository URL scheme {parsed.scheme!r} in {url!r}")
    wrapped = wrap_store(store, options, upload=upload)
    if options.cache_dir and not isinstance(store, LocalStore):
        from drsync.store.cache import CachedStore, cache_directory

        wrapped = CachedStore(wrapped, cache_directory(options.cache_dir, store.url))
    resume_cyclic_gc()  # start-up is over once the store is open (drsync.malloc)
    return wrapped


def wrap_store(store: Store, options: StoreOptions, *,
               upload: TokenBucket | None = None) -> Store:
    """Throttle (when limited), then retry (for stores that can fail transiently)."""
    from drsync.store.local import LocalStore as _Local

    if options.limit_upload or options.limit_download or upload is not None:
        from drsync.store.throttle import ThrottledStore, shared_bucket

        if upload is None and options.limit_upload:
            upload = shared_bucket("upload", options.limit_upload)
        store = ThrottledStore(
            store, upload,
            shared_bucket("download", options.limit_download) if options.limit_download else None,
        )
    if not isinstance(store, _Local):
        from drsync.store.retry import RetryPolicy, RetryStore

        store = RetryStore(store, RetryPolicy(deadline=options.retry_deadline))
    return store
