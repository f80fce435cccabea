"""The restore service: a snapshot back to a directory or to standard output.

Every blob is verified (authenticated decryption, then its keyed hash)
before a byte of it is written; files appear under their final names only
when complete. The tree is read twice: once, metadata only, so that every
entry is checked (safe path, no conflict in the target) before the first
byte is written; then to stream the data.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from drsync.errors import UsageError
from drsync.repo import Entry, Repository, Snapshot, SnapshotReader
from drsync.sources import FileTreeTarget

__all__ = ["RestoreResult", "restore_snapshot", "write_tree"]


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


def _counted(blocks: Iterator[bytes], progress: Callable[[int], None] | None) -> Iterator[bytes]:
    for block in blocks:
        if progress is not None:
            progress(len(block))
        yield block


def _entries(reader: SnapshotReader, snap: Snapshot,
             prefix: str) -> Iterator[tuple[Entry, Entry]]:
    """The snapshot's entries under ``prefix`` (all when empty), paths relative to it."""
    cut = len(prefix) + 1 if prefix else 0
    for entry in reader.entries(snap):
        if prefix and not entry.path.startswith(prefix + "/"):
            continue
        yield entry, Entry(entry.path[cut:], entry.type, entry.mode, entry.mtime_ns,
                              entry.size, entry.target)


def write_tree(reader: SnapshotReader, snap: Snapshot, tree: FileTreeTarget, *,
               prefix: str = "", progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Write the snapshot's tree (or the part under ``prefix``) into ``tree``:
    every entry checked first, then the data; returns (bytes written, items).

    The one restore loop for files, SQLite and PostgreSQL data directories. The
    chunks of every file, in restore order, are one stream for the reader, so
    its reads are planned per pack across file boundaries (a pack of many small
    files, or of one relation's 32 KiB blocks, is a GET or two, not one a blob).
    """
    tree.prepare(meta for _entry, meta in _entries(reader, snap, prefix))
    order: Iterable[str] = (cid for entry, _m in _entries(reader, snap, prefix)
                            if entry.type in ("file", "stream") for cid in entry.chunks)
    stream = reader.blobs(order)
    written = items = 0
    try:
        for entry, meta in _entries(reader, snap, prefix):
            items += 1
            if entry.type == "dir":
                tree.directory(meta)
            elif entry.type == "symlink":
                tree.symlink(meta)
            else:
                blocks = itertools.islice(stream, len(entry.chunks))
                written += tree.file(meta, _counted(blocks, progress))
    finally:
        stream.close()
    tree.finish()
    return written, items


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
                written, items = write_tree(reader, snap, tree, progress=progress)
    return RestoreResult(snap.id, written, items, time.monotonic() - started)
