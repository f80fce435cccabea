"""Snapshot manifests: what one backup captured, written last.

A snapshot names its source, times, host, tags and summary, and the chunks of
its *tree*: a JSON-lines stream (itself chunked, deduplicated and encrypted
like data) with one entry per file, directory, symlink or stream. Keeping
the entries in the tree stream keeps the snapshot object small however many
files or chunks a backup has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Entry", "Snapshot"]

_INT64 = 1 << 63
_CHUNK_ID = re.compile("[0-9a-f]{64}")
_MISSING: Any = object()


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _field(doc: dict[str, Any], key: str, default: Any) -> Any:
    value = doc.get(key, default)
    if value is _MISSING:
        raise ValueError(f"field {key!r} is missing")
    return value


def _text(doc: dict[str, Any], key: str, default: Any = _MISSING) -> str:
    value = _field(doc, key, default)
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _whole(doc: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = _field(doc, key, default)
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"field {key!r} must be a whole number in {low}..{high}")
    return value


def _chunk_ids(doc: dict[str, Any], key: str, default: Any = _MISSING) -> list[str]:
    """A list of chunk ids: 64 lower-case hex digits each (keyed BLAKE3, 32 bytes)."""
    value = _field(doc, key, default)
    if not isinstance(value, list) or not all(
            isinstance(c, str) and _CHUNK_ID.fullmatch(c) for c in value):
        raise ValueError(f"field {key!r} must be a list of chunk ids")
    return list(value)


@dataclass
class Entry:
    """One item of a snapshot's tree."""

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
        doc = _object(doc, "tree entry")
        return cls(
            path=_text(doc, "path"),
            type=_text(doc, "type"),
            mode=_whole(doc, "mode", 0o644, 0, 0o7777),
            mtime_ns=_whole(doc, "mtime_ns", 0, -_INT64, _INT64 - 1),
            size=_whole(doc, "size", 0, 0, _INT64 - 1),
            target=_text(doc, "target", ""),
            chunks=_chunk_ids(doc, "chunks", []),
        )


@dataclass
class Snapshot:
    time: str  # ISO 8601 UTC of the end of the backup
    start_time: str
    host: str
    source_kind: str  # "files", "sqlite", "stdin"
    source_spec: dict[str, Any]
    tree: list[str]  # chunk ids (hex) of the tree stream
    tags: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    drsync_version: str = ""
    id: str = ""  # sha256 of the stored object; set when stored or loaded

    def to_doc(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "start_time": self.start_time,
            "host": self.host,
            "tags": self.tags,
            "source": {"kind": self.source_kind, "spec": self.source_spec},
            "tree": self.tree,
            "summary": self.summary,
            "drsync_version": self.drsync_version,
        }

    @classmethod
    def from_doc(cls, doc: Any, snapshot_id: str) -> Snapshot:
        """A snapshot from its sealed document; ValueError naming the field when malformed
        (a document can authenticate and still be the wrong shape)."""
        doc = _object(doc, "snapshot")
        source = _object(doc.get("source"), "snapshot field 'source'")
        tags = doc.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError("field 'tags' must be a list of strings")
        return cls(
            time=_text(doc, "time"),
            start_time=_text(doc, "start_time"),
            host=_text(doc, "host"),
            tags=list(tags),
            source_kind=_text(source, "kind"),
            source_spec=_object(source.get("spec"), "snapshot field 'source.spec'"),
            tree=_chunk_ids(doc, "tree"),
            summary=_object(doc.get("summary", {}), "snapshot field 'summary'"),
            drsync_version=_text(doc, "drsync_version", ""),
            id=snapshot_id,
        )

    @property
    def short_id(self) -> str:
        return self.id[:8]
