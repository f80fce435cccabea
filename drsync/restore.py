"""The restore service: a snapshot back to a directory or to standard output.

Every blob is verified (authenticated decryption, then its keyed hash)
before a byte of it is written; files appear under their final names only
when complete. The tree is read twice: once, metadata only, so that every
entry is checked (safe path, no conflict in the target) before the first
byte is written; then to stream the data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from drsync.errors import UsageError
from drsync.repo import Entry, Repository, SnapshotReader
from drsync.sources import FileTreeTarget, ItemMeta

__all__ = ["RestoreResult", "restore_snapshot"]


@dataclass
class RestoreResult:
    snapshot_id: str
    bytes_written: int
    items: int
    duration_s: float

    @property
    def mb_per_s(self) -> float:
        """Megabytes (10^6 bytes) written per second."""
        return self.bytes_written / 1e6 / self.duration_s if self.duration_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "bytes_written": self.bytes_written,
            "items": self.items,
            "duration_s": round(self.duration_s, 6),
            "mb_per_s": round(self.mb_per_s, 3),
        }


def _meta(entry: Entry) -> ItemMeta:
    return ItemMeta(entry.path, entry.type, entry.mode, entry.mtime_ns, entry.size, entry.target)


def _counted(blocks: Iterator[bytes], progress: Callable[[int], None] | None) -> Iterator[bytes]:
    for block in blocks:
        if progress is not None:
            progress(len(block))
        yield block


def restore_snapshot(
    repo: Repository,
    ref: str,
    *,
    target: str | Path | None = None,
    stdout: BinaryIO | None = None,
    progress: Callable[[int], None] | None = None,
    on_snapshot: Callable[[int], None] | None = None,
) -> RestoreResult:
    """Restore ``ref`` (an id, a prefix or ``latest``) into ``target`` or onto ``stdout``.

    ``on_snapshot`` is told the snapshot's total size before bytes flow, for
    progress bars.
    """
    if (target is None) == (stdout is None):
        raise UsageError("restore needs exactly one of --target DIR or --stdout")
    started = time.monotonic()
    snap = repo.find_snapshot(ref)
    if on_snapshot is not None:
        on_snapshot(int(snap.summary.get("bytes_read", 0)))
    written = 0
    items = 0
    with SnapshotReader(repo) as reader:
        if stdout is not None:
            streams = [e for e in reader.entries(snap) if e.type in ("file", "stream")]
            if len(streams) != 1:
                raise UsageError(
                    f"snapshot {snap.short_id} holds {len(streams)} files; --stdout needs one"
                )
            for block in _counted(reader.blobs(streams[0].chunks), progress):
                stdout.write(block)
                written += len(block)
            stdout.flush()
            items = 1
        else:
            assert target is not None
            with FileTreeTarget(target, snapshot=snap.short_id) as tree:
                tree.prepare(_meta(entry) for entry in reader.entries(snap))
                for entry in reader.entries(snap):
                    items += 1
                    meta = _meta(entry)
                    if entry.type == "dir":
                        tree.directory(meta)
                    elif entry.type == "symlink":
                        tree.symlink(meta)
                    else:
                        written += tree.file(meta, _counted(reader.blobs(entry.chunks),
                                                            progress))
                tree.finish()
    return RestoreResult(snap.id, written, items, time.monotonic() - started)
