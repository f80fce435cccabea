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

from drsync.tree import Entry, chunk_ids_field, json_object, text_field

__all__ = ["Entry", "Snapshot"]


@dataclass
class Snapshot:
    time: str  # ISO 8601 UTC of the end of the backup
    start_time: str
    host: str
    source_kind: str  # "files", "sqlite", "stdin", "pg_dump", "pg_base", "mariadb_dump"
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
        doc = json_object(doc, "snapshot")
        source = json_object(doc.get("source"), "snapshot field 'source'")
        tags = doc.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError("field 'tags' must be a list of strings")
        return cls(
            time=text_field(doc, "time"),
            start_time=text_field(doc, "start_time"),
            host=text_field(doc, "host"),
            tags=list(tags),
            source_kind=text_field(source, "kind"),
            source_spec=json_object(source.get("spec"), "snapshot field 'source.spec'"),
            tree=chunk_ids_field(doc, "tree"),
            summary=json_object(doc.get("summary", {}), "snapshot field 'summary'"),
            drsync_version=text_field(doc, "drsync_version", ""),
            id=snapshot_id,
        )

    @property
    def short_id(self) -> str:
        return self.id[:8]
