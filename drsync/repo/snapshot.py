"""Snapshot manifests: what one backup captured, written last.

A snapshot names its source, times, host, tags and summary, and the chunks of
its *tree*: a JSON-lines stream (itself chunked, deduplicated and encrypted
like data) with one entry per file, directory, symlink or stream. Keeping
the entries in the tree stream keeps the snapshot object small however many
files or chunks a backup has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Entry", "Snapshot"]


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
    def from_doc(cls, doc: dict[str, Any]) -> Entry:
        return cls(
            path=str(doc["path"]),
            type=str(doc["type"]),
            mode=int(doc.get("mode", 0o644)),
            mtime_ns=int(doc.get("mtime_ns", 0)),
            size=int(doc.get("size", 0)),
            target=str(doc.get("target", "")),
            chunks=[str(c) for c in doc.get("chunks", [])],
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
    def from_doc(cls, doc: dict[str, Any], snapshot_id: str) -> Snapshot:
        return cls(
            time=str(doc["time"]),
            start_time=str(doc["start_time"]),
            host=str(doc["host"]),
            tags=[str(t) for t in doc.get("tags", [])],
            source_kind=str(doc["source"]["kind"]),
            source_spec=dict(doc["source"]["spec"]),
            tree=[str(c) for c in doc["tree"]],
            summary=dict(doc.get("summary", {})),
            drsync_version=str(doc.get("drsync_version", "")),
            id=snapshot_id,
        )

    @property
    def short_id(self) -> str:
        return self.id[:8]
