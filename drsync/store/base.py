"""The store interface: opaque bytes at validated keys, and nothing else.

A store knows no formats. Five verbs (put, get, stat, list, delete) are all
the layers above may use, so that a local directory, an NFS mount, memory
and an S3-compatible bucket are interchangeable. Retry, throttling and
logging wrap a store; they do not live inside one.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from dataclasses import dataclass

from drsync.errors import StoreError

__all__ = ["ObjectInfo", "Store", "parse_s3_url", "validate_key"]

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object name, else raise StoreError.

    Keys are ``/``-separated segments of letters, digits, ``.``, ``_`` and
    ``-``; no segment is empty, ``.`` or ``..`` or starts with a dot, and the
    key is never absolute. This keeps every key inside the store's root on
    any backend.
    """
    if not key or key.startswith("/") or len(key) > 512:
        raise StoreError(f"invalid object key {key!r}: must be a non-empty relative name")
    for segment in key.split("/"):
        if not _SEGMENT.match(segment) or segment in (".", ".."):
            raise StoreError(f"invalid object key {key!r}: bad segment {segment!r}")
    return key


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, 'some/prefix'); UsageError saying what a
    bucket name or prefix may hold. Here, not in drsync.store.s3: a config file's ``repo``
    is checked without importing botocore."""
    from drsync.errors import UsageError

    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not 3 <= len(bucket) <= 63 or not all(c.isalnum() or c in ".-" for c in bucket) \
            or bucket != bucket.lower() or not bucket.isascii():
        raise UsageError(f"S3 URL {url!r}: {bucket!r} is not a valid bucket name (3 to 63 "
                         "lowercase letters, digits, '.' and '-')")
    if prefix:
        try:
            validate_key(prefix)
        except StoreError:
            raise UsageError(f"S3 URL {url!r}: the prefix {prefix!r} is not a valid key ('/'-"
                             "separated names of ASCII letters, digits, '.', '_' and '-', "
                             "none starting with '.')") from None
    return bucket, prefix


def validate_prefix(prefix: str) -> str:
    """A list prefix is empty or a valid key optionally ending in ``/``."""
    if prefix:
        validate_key(prefix.rstrip("/"))
    return prefix


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class Store(abc.ABC):
    """Bytes at keys. Implementations must make ``put`` atomic: a reader sees
    the whole object or none of it, never a prefix."""

    url: str
    # How many transfers the store serves well in parallel (restic's Connections()):
    # the writer runs this many pack uploads at once. Wrappers pass the inner value on.
    connections: int = 1

    @abc.abstractmethod
    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        """Store ``data`` at ``key``. With ``if_absent``, raise ObjectExists when
        the key is already taken instead of replacing it."""

    @abc.abstractmethod
    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes, or ``length`` bytes from ``offset``.
        Raise ObjectNotFound when absent."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Return the object's size; raise ObjectNotFound when absent."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in no set order."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing an absent key is not an error."""

    def exists(self, key: str) -> bool:
        from drsync.errors import ObjectNotFound

        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections; the default has none."""
