"""An in-memory store for tests: honest semantics, no disk."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from drsync.errors import ObjectExists, ObjectNotFound
from drsync.store.base import ObjectInfo, Store, validate_key, validate_prefix

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        validate_key(key)
        with self._lock:
            if if_absent and key in self.objects:
                raise ObjectExists(f"{self.url}: object {key} already exists")
            self.objects[key] = bytes(data)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        validate_key(key)
        with self._lock:
            try:
                data = self.objects[key]
            except KeyError:
                raise ObjectNotFound(f"{self.url}: object {key} not found") from None
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        with self._lock:
            if key not in self.objects:
                raise ObjectNotFound(f"{self.url}: object {key} not found")
            return ObjectInfo(key, len(self.objects[key]))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        with self._lock:
            items = [ObjectInfo(k, len(v)) for k, v in self.objects.items() if k.startswith(prefix)]
        yield from items

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._lock:
            self.objects.pop(key, None)
