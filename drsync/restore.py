"""The restore service: a snapshot back to a directory or to standard output.

Every blob is verified (authenticated decryption, then its keyed hash)
before a byte of it is written; files appear under their final names only
when complete. The tree is read twice: once, metadata only, so that every
entry is checked (safe path, no conflict in the target) before the first
byte is written; then to stream the data.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from drsync import __version__
from drsync.catalog.records import RunRecorder
from drsync.errors import (
    DrsyncError,
    IntegrityError,
    RestoreTargetError,
    StoreError,
    UsageError,
)
from drsync.repo import Entry, Repository, Snapshot, SnapshotReader
from drsync.repo.runs import save_run_or_warn
from drsync.sources import (
    FileTreeTarget,
    LocalCopy,
    RestoringFile,
    refuse_unsafe_target,
    unfinished_restore,
)

__all__ = ["RestoreResult", "RestoreRun", "TreeWritten", "restore_snapshot", "write_tree"]


@dataclass
class RestoreResult:
    snapshot_id: str
    bytes_written: int
    items: int
    duration_s: float
    target: str | None = None
    delta: bool = False
    resumed: bool = False   # an unfinished restore of this snapshot found there, resumed
    bytes_fetched: int = 0  # from the store: what the link carried
    files_written: int = 0
    files_kept: int = 0     # delta: already there, verified, not fetched
    bytes_kept: int = 0
    bytes_reused: int = 0   # delta: of the files written, chunks their old copy held
    removed: int = 0        # delta: entries the snapshot does not hold, removed
    run_id: str | None = None

    @property
    def mb_per_s(self) -> float:
        """Megabytes (10^6 bytes) restored (written or verified) per second."""
        restored = self.bytes_written + self.bytes_kept
        return restored / 1e6 / self.duration_s if self.duration_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "target": self.target,
            "bytes_written": self.bytes_written,
            "items": self.items,
            "duration_s": round(self.duration_s, 6),
            "mb_per_s": round(self.mb_per_s, 3),
            "bytes_fetched": self.bytes_fetched,
            "files_written": self.files_written,
            "delta": self.delta,
            "resumed": self.resumed,
            "files_kept": self.files_kept,
            "bytes_kept": self.bytes_kept,
            "bytes_reused": self.bytes_reused,
            "removed": self.removed,
            "run_id": self.run_id,
        }


class RestoreRun:
    """One restore as a run of kind ``restore`` in the catalog and, as a run record, in
    the store (so that ``catalog rebuild`` brings it back): ``note`` what it did; a
    failure (any exception leaving the ``with``) is recorded with its first line."""

    def __init__(self, catalog: RunRecorder | None, repo: Repository, source: str,
                 tenant: str | None = None) -> None:
        self._catalog = catalog
        self._repo = repo
        self.run_id: str | None = None
        self.snapshot_id: str | None = None
        self.bytes_fetched = self.bytes_written = 0
        self._record: dict[str, Any] = {}
        if catalog is not None:
            host = socket.gethostname()
            started = datetime.now(UTC)
            self.run_id = catalog.start_run(repo.url, "restore", source, host,
                                            tenant=tenant or host, started=started)
            self._record = {"run_id": self.run_id, "tenant": tenant or host, "host": host,
                            "kind": "restore", "source": source,
                            "started": started.isoformat(), "drsync_version": __version__}

    def note(self, snapshot_id: str, *, fetched: int, written: int) -> None:
        self.snapshot_id, self.bytes_fetched, self.bytes_written = snapshot_id, fetched, written

    def __enter__(self) -> RestoreRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 _tb: object) -> None:
        if self._catalog is None or self.run_id is None:
            return
        error = None
        if err is not None:
            text = str(err) if isinstance(err, DrsyncError) else repr(err)
            error = (text.strip().splitlines() or [repr(err)])[0]
        # bytes_read: fetched from the store; bytes_added: written into the target.
        status, finished = "ok" if err is None else "failed", datetime.now(UTC)
        self._catalog.finish_run(self.run_id, status, bytes_read=self.bytes_fetched,
                                 bytes_added=self.bytes_written, snapshot_id=self.snapshot_id,
                                 error=error, finished=finished)
        if not isinstance(err, StoreError | KeyboardInterrupt):  # a dead store: the catalog has it
            save_run_or_warn(self._repo, {
                **self._record, "status": status, "finished": finished.isoformat(),
                "bytes_read": self.bytes_fetched, "bytes_added": self.bytes_written,
                "snapshot_id": self.snapshot_id, "error": error}, quiet=True)


class Counted:
    """Blocks passed through on their way into a target: counted in ``bytes`` and told to
    ``progress`` as they go."""

    def __init__(self, blocks: Iterable[bytes],
                 progress: Callable[[int], None] | None = None) -> None:
        self._blocks = blocks
        self._progress = progress
        self.bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        for block in self._blocks:
            self.bytes += len(block)
            if self._progress is not None:
                self._progress(len(block))
            yield block


def _counted(blocks: Iterable[bytes], progress: Callable[[int], None] | None) -> Iterator[bytes]:
    return iter(Counted(blocks, progress))


def _entries(reader: SnapshotReader, snap: Snapshot,
             prefix: str) -> Iterator[tuple[Entry, Entry]]:
    """The snapshot's entries under ``prefix`` (all when empty), paths relative to it."""
    cut = len(prefix) + 1 if prefix else 0
    for entry in reader.entries(snap):
        if prefix and not entry.path.startswith(prefix + "/"):
            continue
        yield entry, Entry(entry.path[cut:], entry.type, entry.mode, entry.mtime_ns,
                              entry.size, entry.target)


@dataclass
class TreeWritten:
    """What ``write_tree`` did: bytes and files written; with delta, what was kept."""
    bytes_written: int = 0
    items: int = 0
    files_written: int = 0
    files_kept: int = 0
    bytes_kept: int = 0
    bytes_reused: int = 0  # of files written: chunks their old copy held, not fetched
    removed: int = 0


def _local(reader: SnapshotReader, snap: Snapshot, tree: FileTreeTarget, prefix: str,
           progress: Callable[[int], None] | None) -> dict[int, LocalCopy]:
    """Delta: for each file (by its position in entry order) the target holds some chunks
    of, at their offsets, which ones: those are neither fetched nor, when the whole
    file is there, written (``progress`` is told a whole file's bytes as it verifies)."""
    key = reader.repo.key
    local: dict[int, LocalCopy] = {}
    for n, (entry, meta) in enumerate(_entries(reader, snap, prefix)):
        if entry.type not in ("file", "stream"):
            continue
        try:
            chunks = [(bytes.fromhex(cid), reader.plain_length(cid)) for cid in entry.chunks]
        except KeyError:
            continue  # a blob the index lacks: the restore names it when its turn comes
        found = tree.compare(meta, chunks, key.chunk_id)
        if found is not None:
            local[n] = found
            if found.whole and progress is not None:
                progress(meta.size)
    return local


def _copied(reader: SnapshotReader, tree: FileTreeTarget, entry: Entry, meta: Entry,
            matches: list[bool], restoring: RestoringFile, done: TreeWritten,
            progress: Callable[[int], None] | None) -> list[tuple[str, int]]:
    """A differing file: the chunks its old copy holds copied into ``restoring`` (read
    again and verified: it must not have changed since it was compared); the others,
    (id, offset), to fetch."""
    chunk_id = reader.repo.key.chunk_id
    fetch: list[tuple[str, int]] = []
    with tree.existing(meta) as fd:
        offset = 0
        for cid, match in zip(entry.chunks, matches, strict=True):
            length = reader.chunk_length(cid)
            if match:
                data = os.pread(fd, length, offset)
                if len(data) != length or chunk_id(data) != bytes.fromhex(cid):
                    raise RestoreTargetError(f"{tree.root / meta.path} changed while it was "
                                             "restored over; stop what writes it, run again")
                restoring.put(offset, data)
                done.bytes_reused += length
                if progress is not None:
                    progress(length)
            else:
                fetch.append((cid, offset))
            offset += length
    restoring.size = offset
    return fetch


def write_tree(reader: SnapshotReader, snap: Snapshot, tree: FileTreeTarget, *,
               prefix: str = "", progress: Callable[[int], None] | None = None) -> TreeWritten:
    """Write the snapshot's tree (or the part under ``prefix``) into ``tree``:
    every entry checked first, then the data.

    The one restore loop for files, SQLite and PostgreSQL data directories. This
    thread walks the entries and plans: it makes directories and links, opens
    each file's temporary and hands it, with its chunks' offsets, to the reader,
    whose worker threads write each verified chunk straight to its offset and
    link a file into place once its last chunk is written. The chunks of every
    file, in restore order, are one stream for the reader, so its reads are
    planned per pack across file boundaries (a pack of many small files, or of
    one relation's 32 KiB blocks, is a GET or two, not one a blob). With a delta
    target, chunks it already holds (verified) are not fetched: a whole file is
    kept, a differing one rewritten from its old copy's matching chunks and the
    fetched rest (``progress`` counts them all, a kept file's bytes as they are
    verified; it is told from the worker threads too).
    """
    tree.prepare(meta for _entry, meta in _entries(reader, snap, prefix))
    local = _local(reader, snap, tree, prefix, progress) if tree.delta else {}
    tree.begin(snap.id)
    done = TreeWritten()

    def files() -> Iterator[tuple[RestoringFile, list[tuple[str, int]]]]:
        for n, (entry, meta) in enumerate(_entries(reader, snap, prefix)):
            done.items += 1
            there = local.get(n)
            if entry.type == "dir":
                tree.directory(meta)
            elif entry.type == "symlink":
                tree.symlink(meta)
            elif there is not None and there.whole:
                tree.keep(meta)
            else:
                restoring = tree.open_file(meta)
                if there is None:
                    chunks, offset = [], 0
                    for cid in entry.chunks:
                        chunks.append((cid, offset))
                        offset += reader.chunk_length(cid)
                    restoring.size = offset
                else:
                    chunks = _copied(reader, tree, entry, meta, there.matches, restoring,
                                     done, progress)
                done.bytes_written += restoring.size
                done.files_written += 1
                yield restoring, chunks

    reader.deliver(files(), progress=progress)
    tree.finish()
    stats = tree.delta_stats
    done.files_kept, done.bytes_kept, done.removed = (stats.files_kept, stats.bytes_kept,
                                                       stats.removed)
    return done


def _stdout_failed(entry: Entry, written: int, err: OSError) -> RestoreTargetError:
    why = "the program reading it ended" if err.errno == errno.EPIPE else (
        err.strerror or str(err))
    return RestoreTargetError(f"cannot write {entry.path} to standard output after "
                              f"{written} bytes: {why}; what was written is incomplete")


@contextlib.contextmanager
def _changed_meanwhile(repo: Repository, indexes: list[str]) -> Iterator[None]:
    """An object found missing while the index files changed (a prune or repair ran
    meanwhile, and removed a pack this restore had planned to read) is said to be that,
    not damage: run again, the restore resumes."""
    try:
        yield
    except IntegrityError as err:
        try:
            changed = repo.index_names() != indexes
        except DrsyncError:
            changed = False
        if not changed:
            raise
        raise IntegrityError(f"{err}; the repository changed while this restore ran (a prune "
                             "or repair replaced its index): run the restore again, it "
                             "resumes with what is stored now") from None


def restore_snapshot(
    repo: Repository,
    ref: str,
    *,
    target: str | Path | None = None,
    stdout: BinaryIO | None = None,
    progress: Callable[[int], None] | None = None,
    on_snapshot: Callable[[int], None] | None = None,
    delta: bool = False,
    catalog: RunRecorder | None = None,
    tenant: str | None = None,
) -> RestoreResult:
    """Restore ``ref`` (an id, a prefix or ``latest``) into ``target`` or onto ``stdout``.

    ``delta``: ``target`` may hold files already; it is made equal to the snapshot,
    fetching only the files that differ. A target holding an unfinished restore
    of this same snapshot (killed, cut off) is resumed that way without asking.
    ``on_snapshot`` is told the snapshot's total size before bytes flow, for
    progress bars; ``catalog`` records the restore as a run.
    """
    if (target is None) == (stdout is None):
        raise UsageError("restore needs exactly one of --target DIR or --stdout")
    if delta and target is None:
        raise UsageError("--delta goes with --target DIR (or --pgdata DIR)")
    if target is not None:
        target = refuse_unsafe_target(target, delta=delta, store=repo.store)
    started = time.monotonic()
    where = "stdout" if target is None else str(Path(target).absolute())
    with RestoreRun(catalog, repo, f"files -> {where}" + (" (delta)" if delta else ""),
                    tenant) as run:
        snap = repo.find_snapshot(ref)
        run.snapshot_id = snap.id  # a failed restore names it too
        if on_snapshot is not None:
            on_snapshot(int(snap.summary.get("bytes_read", 0)))
        resumed = (not delta and target is not None
                   and unfinished_restore(target) == snap.id)
        delta = delta or resumed
        done = TreeWritten()
        with SnapshotReader(repo) as reader, _changed_meanwhile(repo, reader.index.names):
            if stdout is not None:
                streams = [e for e in reader.entries(snap) if e.type in ("file", "stream")]
                if len(streams) != 1:
                    raise UsageError(
                        f"snapshot {snap.short_id} holds {len(streams)} files; --stdout needs one"
                    )
                try:
                    for block in _counted(reader.blobs(streams[0].chunks), progress):
                        stdout.write(block)
                        done.bytes_written += len(block)
                    stdout.flush()
                except OSError as err:  # a full disk, or the reading program ended (EPIPE)
                    raise _stdout_failed(streams[0], done.bytes_written, err) from None
                done.items = done.files_written = 1
            else:
                assert target is not None
                with FileTreeTarget(target, snapshot=snap.short_id, delta=delta,
                                    remove_extra=not resumed) as tree:
                    done = write_tree(reader, snap, tree, progress=progress)
        fetched = reader.stats.bytes_fetched
        run.note(snap.id, fetched=fetched, written=done.bytes_written)
    return RestoreResult(snap.id, done.bytes_written, done.items, time.monotonic() - started,
                         target=None if target is None else where, delta=delta,
                         resumed=resumed,
                         bytes_fetched=fetched, files_written=done.files_written,
                         files_kept=done.files_kept, bytes_kept=done.bytes_kept,
                         bytes_reused=done.bytes_reused, removed=done.removed, run_id=run.run_id)
