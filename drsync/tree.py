"""The entry of a snapshot's tree: one file, directory, symlink or stream.

Shared by the layers that make entries (``drsync.sources``, which never
import the repository) and the one that stores them (``drsync.repo``): one
type for one idea. A source yields entries without chunks; the snapshot
writer fills ``chunks`` as it stores the content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Entry", "chunk_ids_field", "json_object", "text_field"]

_INT64 = 1 << 63
_CHUNK_ID = re.compile("[0-9a-f]{64}")
_MISSING: Any = object()


def json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _field(doc: dict[str, Any], key: str, default: Any) -> Any:
    value = doc.get(key, default)
    if value is _MISSING:
        raise ValueError(f"field {key!r} is missing")
    return value


def text_field(doc: dict[str, Any], key: str, default: Any = _MISSING) -> str:
    value = _field(doc, key, default)
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _whole(doc: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = _field(doc, key, default)
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"field {key!r} must be a whole number in {low}..{high}")
    return value


def chunk_ids_field(doc: dict[str, Any], key: str, default: Any = _MISSING) -> list[str]:
    """A list of chunk ids: 64 lower-case hex digits each (keyed BLAKE3, 32 bytes)."""
    value = _field(doc, key, default)
    if not isinstance(value, list) or not all(
            isinstance(c, str) and _CHUNK_ID.fullmatch(c) for c in value):
        raise ValueError(f"field {key!r} must be a list of chunk ids")
    return list(value)


@dataclass
class Entry:
    """One item of a snapshot's tree (``chunks`` empty until stored)."""

    path: str  # relative, '/'-separated
    type: str  # "file", "dir", "symlink", "stream"
    mode: int = 0o644
    mtime_ns: int = 0
    size: int = 0
    target: str = ""  # symlink target
    chunks: list[str] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path, "type": self.type}
        if self.type in ("file", "dir", "symlink"):
            doc["mode"] = self.mode
            doc["mtime_ns"] = self.mtime_ns
        if self.type in ("file", "stream"):
            doc["size"] = self.size
            doc["chunks"] = self.chunks
        if self.type == "symlink":
            doc["target"] = self.target
        return doc

    @classmethod
    def from_doc(cls, doc: Any) -> Entry:
        """An entry from its tree line's JSON; ValueError naming the field when malformed."""
        doc = json_object(doc, "tree entry")
        return cls(
            path=text_field(doc, "path"),
            type=text_field(doc, "type"),
            mode=_whole(doc, "mode", 0o644, 0, 0o7777),
            mtime_ns=_whole(doc, "mtime_ns", 0, -_INT64, _INT64 - 1),
            size=_whole(doc, "size", 0, 0, _INT64 - 1),
            target=text_field(doc, "target", ""),
            chunks=chunk_ids_field(doc, "chunks", []),
        )
