"""Stores: where repository objects live. ``open_store`` turns a URL into one."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from drsync.errors import UsageError
from drsync.store.base import ObjectInfo, Store, validate_key
from drsync.store.local import LocalStore
from drsync.store.memory import MemoryStore

__all__ = ["LocalStore", "MemoryStore", "ObjectInfo", "Store", "open_store", "validate_key"]


def open_store(url: str) -> Store:
    """A plain path or ``file:///path`` opens a directory store.

    Other schemes (``s3://``) plug in here without the layers above changing.
    """
    if not url:
        raise UsageError("no repository given: use --repo, DRSYNC_REPO or `repo` in the config")
    if "://" not in url:
        return LocalStore(url)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise UsageError(f"file URL {url!r} names a host; use file:///absolute/path")
        return LocalStore(unquote(parsed.path))
    raise UsageError(f"unsupported repository URL scheme {parsed.scheme!r} in {url!r}")
