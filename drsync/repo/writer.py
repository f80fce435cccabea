"""The backup pipeline: chunk -> id -> dedup -> compress -> encrypt -> pack -> store.

Streaming end to end with bounded memory: the chunker reads the source in
blocks and hands out each chunk as a view into its block (drsync.repo.chunking:
no copy), at most ``window`` tasks (a chunk, or several small ones
making ``TASK_BYTES``) are in flight on the worker threads (zstd, BLAKE3,
AES-GCM and the chunker all release the GIL, so two cores are busy), and at
most ``UPLOAD_QUEUE`` finished packs (files, see pack.py) wait for
the uploader thread. File entries stream their chunk ids into a spooled tree
file, so even a snapshot's list of chunks is never held whole.

Ordering: a pack is stored before any index names it; indexes are written
every ``INDEX_EVERY`` packs (so an interrupted run's finished packs are
reused by the next run) and at the end; the snapshot is written last.

Block-structured streams (``fixed_size``: PostgreSQL relations, SQLite) are
sealed in groups (drsync.repo.group): the workers only hash their chunks, the
new ones are collected in file order up to ``group_target`` bytes, from at
most ``GROUP_SPAN`` bytes of the file, and each group is compressed and
sealed once on a worker; every chunk keeps its own id and index entry, so
dedup is unchanged.

Stopping: a writer given ``should_stop`` asks it before every chunk and
once more just before the snapshot. When it answers with a reason, the
pack being uploaded finishes, packs still queued are dropped (their chunks
are simply not stored), what was stored is indexed, and ``RunInterrupted``
is raised: no snapshot, nothing the next run cannot adopt.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, BinaryIO

from pyfastcdc import FastCDC

from drsync.errors import DrsyncError, RunInterrupted, StoreError
from drsync.malloc import return_large_buffers_to_the_os
from drsync.repo.chunking import cut_stream
from drsync.repo.group import GROUP_SPAN, GROUP_TARGET, seal_group
from drsync.repo.index import Index, index_document, pack_key
from drsync.repo.objects import TYPE_INDEX
from drsync.repo.pack import BLOB_DATA, BLOB_TREE, BlobEntry, PackBuilder, staged_pack
from drsync.repo.repository import Repository, utc_now
from drsync.repo.resume import adopt_unindexed
from drsync.repo.snapshot import Entry, Snapshot

__all__ = ["SnapshotWriter", "WriterStats", "adopt_orphan_packs"]

INDEX_EVERY = 8
UPLOAD_QUEUE = 2
# Chunks go to the sealing threads in tasks of at least this many bytes: one task per
# 32 KiB fixed chunk cost a third of a base backup's CPU in futures and thread wake-ups.
TASK_BYTES = 256 << 10
_Processed = tuple[bytes, bytes | None, int]


def _fixed_chunks(reader: BinaryIO, size: int) -> Iterator[bytes]:
    """Chunks of exactly ``size`` bytes (the last may be shorter), even from a pipe."""
    while True:
        data = reader.read(size)
        if not data:
            return
        while len(data) < size:
            more = reader.read(size - len(data))
            if not more:
                break
            data += more
        yield bytes(data)


class WriterStats:
    def __init__(self) -> None:
        self.bytes_read = 0
        self.bytes_added = 0  # bytes stored: packs, indexes, snapshot
        self.chunks = 0
        self.chunks_new = 0
        self.packs = 0


class _Uploader:
    """Threads that store finished packs, then the indexes naming them.

    ``repo.store.connections`` threads upload at once (one for a local
    directory, several for S3). A pack joins the list of packs awaiting an
    index only after its put returned, so an index never names a pack that is
    not stored, however the uploads interleave.
    """

    def __init__(self, repo: Repository, index: Index, stats: WriterStats) -> None:
        self._repo = repo
        self._index = index
        self._stats = stats
        self._threads_n = max(1, repo.store.connections)
        self._queue: queue.Queue[PackBuilder | None] = queue.Queue(
            UPLOAD_QUEUE + self._threads_n - 1
        )
        self._unindexed: list[tuple[str, int, list[BlobEntry]]] = []
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self._cancelled = False
        self._threads = [
            threading.Thread(target=self._run, name=f"pack-uploader-{i}", daemon=True)
            for i in range(self._threads_n)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, pack: PackBuilder) -> None:
        """Queue a full pack; sealing its header and hashing it happen on an uploader
        thread, off the chunking thread."""
        self.raise_error()
        self._queue.put(pack)

    def raise_error(self) -> None:
        if self.error is not None:
            if isinstance(self.error, DrsyncError):
                raise self.error
            raise StoreError(f"{self._repo.url}: storing a pack failed: {self.error}")

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is not None or self._cancelled:
                item.close()  # drain so the producer never blocks after a failure or a stop
                continue
            try:
                self._store(item)
            except BaseException as err:
                self.error = err
                item.close()
            del item  # not held while waiting for the next pack

    def _store(self, item: PackBuilder) -> None:
        """Seal, store and (in batches) index one pack (a local store links the file it
        was written to into place; another reads it back once and puts it). Not a loop
        variable: that would hold the last pack while the thread waits."""
        pack_id, size = item.seal()
        item.commit(pack_key(pack_id))
        entries = item.entries
        with self._lock:
            self._stats.bytes_added += size
            self._stats.packs += 1
            self._index.add_pack(pack_id, size, entries)
            self._unindexed.append((pack_id, size, entries))
            batch = self._take_batch(INDEX_EVERY)
        if batch:
            self._write_index(batch)

    def _take_batch(self, at_least: int) -> list[tuple[str, int, list[BlobEntry]]]:
        if len(self._unindexed) < at_least:
            return []
        batch, self._unindexed = self._unindexed, []
        return batch

    def _write_index(self, batch: list[tuple[str, int, list[BlobEntry]]]) -> None:
        if batch:
            _oid, size = self._repo.save_document(TYPE_INDEX, "index", index_document(batch))
            with self._lock:
                self._stats.bytes_added += size

    def cancel(self) -> None:
        """Upload no pack that has not started; ``close`` still indexes the stored ones."""
        self._cancelled = True

    def close(self) -> None:
        """Wait for every queued pack, then index the rest."""
        for _thread in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self.raise_error()
        with self._lock:
            batch = self._take_batch(1)
        self._write_index(batch)


def adopt_orphan_packs(repo: Repository, index: Index) -> int:
    """Index the complete packs that no readable index names.

    A run killed between storing a pack and writing the index that names it
    leaves the pack orphaned; so does an index file that cannot be read. Such
    a pack is adopted only if its bytes hash to its name and its header
    decrypts, so nothing unverified is ever reused (see drsync.repo.resume).
    ``index`` comes from ``load_index`` (the packs it saw present are the ones
    considered); call ``abort_interrupted_uploads`` before loading it, so the
    uploads it finishes are among them. Writes one index file for every pack
    adopted, here or in memory by ``load_index``; returns how many.
    """
    present = index.present if index.present is not None else repo.stored_packs()
    adopt_unindexed(repo.store, repo.key, index, present)
    if index.adopted:
        repo.save_document(TYPE_INDEX, "index", index_document(index.adopted))
    count = len(index.adopted)
    index.adopted = []
    return count


class SnapshotWriter:
    """Collects one snapshot's streams and entries; ``commit`` makes it visible."""

    def __init__(
        self,
        repo: Repository,
        index: Index,
        *,
        compression_level: int | None = None,
        workers: int | None = None,
        progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], str | None] | None = None,
        group_target: int = GROUP_TARGET,
    ) -> None:
        """``group_target``: plaintext bytes a group of a block-structured stream's new
        chunks is closed at (drsync.repo.group); 0 seals every chunk alone."""
        return_large_buffers_to_the_os()
        self._group_target = group_target
        cfg = repo.config
        self._should_stop = should_stop
        self._repo = repo
        self._index = index
        self._level = cfg.compression_level if compression_level is None else compression_level
        self._workers = workers or min(4, os.cpu_count() or 2)
        self._window = self._workers * 4
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="seal")
        self._chunker = FastCDC(cfg.chunk_avg, min_size=cfg.chunk_min, max_size=cfg.chunk_max,
                                seed=repo.key.chunker_seed())
        self._progress = progress
        self.stats = WriterStats()
        self.start_time = utc_now()
        self._added: set[bytes] = set()  # ids packed this run, not yet in the index
        self._pack = self._new_pack()
        self._group: list[tuple[bytes, bytes]] = []  # new chunks of the open group
        self._group_bytes = 0
        self._group_start = 0  # where in its stream the open group's first chunk is
        self._stream_at = 0  # where in the grouped stream the next chunk accepted is
        self._sealing: collections.deque[
            tuple[list[tuple[bytes, bytes]], Future[bytes]]] = collections.deque()
        self._uploader = self._make_uploader()
        self._tree: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115
        self._closed = False

    def _make_uploader(self) -> _Uploader:
        return _Uploader(self._repo, self._index, self.stats)

    # -- the pipeline -----------------------------------------------------------

    def _process(self, data: bytes | memoryview, blob_type: int) -> _Processed:
        chunk_id = self._repo.key.chunk_id(data)
        if chunk_id in self._index or chunk_id in self._added:
            return chunk_id, None, len(data)
        return chunk_id, self._repo.key.seal_chunk(data, chunk_id, self._level), len(data)

    def _accept(self, result: _Processed, blob_type: int) -> bytes:
        chunk_id, sealed, raw_length = result
        self.stats.chunks += 1
        if sealed is None or chunk_id in self._index or chunk_id in self._added:
            return chunk_id
        self._added.add(chunk_id)
        self.stats.chunks_new += 1
        self._store_blob(blob_type, chunk_id, sealed, raw_length)
        return chunk_id

    def _store_blob(self, blob_type: int, chunk_id: bytes, sealed: bytes,
                    raw_length: int) -> None:
        """A new blob into the pack being built (a full pack goes to the uploader)."""
        self._pack.add(blob_type, chunk_id, sealed, raw_length)
        if len(self._pack) >= self._repo.config.pack_size:
            self._flush_pack()

    def _flush_pack(self) -> None:
        if not self._pack.entries:
            return
        self._uploader.submit(self._pack)
        self._pack = self._new_pack()

    def _new_pack(self) -> PackBuilder:
        return staged_pack(self._repo.key, self._repo.store, self._repo.config.pack_size)

    # -- groups: the new chunks of a block-structured file, sealed together -----------

    def _identify(self, data: bytes | memoryview, blob_type: int) -> _Processed:
        """A chunk to group: its id now, its seal with its group's (``_close_group``).
        Fixed-size chunks are bytes already (``bytes`` returns the same object)."""
        return self._repo.key.chunk_id(data), bytes(data), len(data)

    def _accept_grouped(self, result: _Processed, blob_type: int) -> bytes:
        chunk_id, data, raw_length = result
        self.stats.chunks += 1
        at = self._stream_at
        self._stream_at += raw_length
        if data is None or chunk_id in self._index or chunk_id in self._added:
            return chunk_id
        self._added.add(chunk_id)
        self.stats.chunks_new += 1
        if self._group and (self._group_bytes + raw_length > self._group_target
                            or at + raw_length - self._group_start > GROUP_SPAN):
            self._close_group()
        if not self._group:
            self._group_start = at
        self._group.append((chunk_id, data))
        self._group_bytes += raw_length
        return chunk_id

    def _close_group(self) -> None:
        """Seal the open group on a worker (a single chunk as an ordinary blob), then
        store the sealed groups that are ready, in order."""
        members, self._group, self._group_bytes = self._group, [], 0
        if len(members) == 1:
            chunk_id, data = members[0]
            self._sealing.append((members, self._pool.submit(
                self._repo.key.seal_chunk, data, chunk_id, self._level)))
        elif members:
            self._sealing.append((members, self._pool.submit(
                seal_group, self._repo.key, members, self._level)))
        self._store_sealed(wait=len(self._sealing) > self._window // 4)

    def _store_sealed(self, *, wait: bool = False) -> None:
        """Store the sealed groups whose seal is done (with ``wait``, one at least)."""
        while self._sealing and (wait or self._sealing[0][1].done()):
            members, fut = self._sealing.popleft()
            sealed = fut.result()
            if len(members) == 1:
                self._store_blob(BLOB_DATA, members[0][0], sealed, len(members[0][1]))
            else:
                self._store_group([(cid, len(data)) for cid, data in members], sealed)
            wait = False

    def _store_group(self, members: list[tuple[bytes, int]], sealed: bytes) -> None:
        """A new group into the pack being built (a full pack goes to the uploader)."""
        self._pack.add_group(members, sealed)
        if len(self._pack) >= self._repo.config.pack_size:
            self._flush_pack()

    def _stream(self, reader: BinaryIO, blob_type: int, emit: Callable[[bytes], None],
                fixed_size: int | None = None) -> int:
        """Chunk ``reader``; call ``emit`` with each chunk id in order; return bytes read.
        A block-structured stream (``fixed_size``) seals its new chunks in groups."""
        grouped = bool(fixed_size) and blob_type == BLOB_DATA and (
            2 * (fixed_size or 0) <= self._group_target)
        work = self._identify if grouped else self._process
        accept = self._accept_grouped if grouped else self._accept
        if grouped:
            self._close_group()  # one a failed stream left open: groups stay per stream
            self._stream_at = 0
        inflight: collections.deque[Future[list[_Processed]]] = collections.deque()
        total = 0
        chunks: Iterator[bytes | memoryview] = (
            _fixed_chunks(reader, fixed_size) if fixed_size
            else cut_stream(self._chunker, reader)  # views, each alive until it is sealed
        )
        batch: list[bytes | memoryview] = []
        batch_bytes = 0
        for data in chunks:
            self._check_stop()
            total += len(data)
            if blob_type == BLOB_DATA:
                self.stats.bytes_read += len(data)
                if self._progress is not None:
                    self._progress(len(data))
            batch.append(data)
            batch_bytes += len(data)
            if batch_bytes < TASK_BYTES:
                continue
            inflight.append(self._pool.submit(self._process_batch, work, batch, blob_type))
            batch, batch_bytes = [], 0
            while len(inflight) >= self._window or (inflight and inflight[0].done()):
                for result in inflight.popleft().result():
                    emit(accept(result, blob_type))
        if batch:
            inflight.append(self._pool.submit(self._process_batch, work, batch, blob_type))
        while inflight:
            for result in inflight.popleft().result():
                emit(accept(result, blob_type))
        if grouped:
            self._finish_groups()
        return total

    @staticmethod
    def _process_batch(work: Callable[[bytes | memoryview, int], _Processed],
                       batch: list[bytes | memoryview],
                       blob_type: int) -> list[_Processed]:
        return [work(data, blob_type) for data in batch]

    def _finish_groups(self) -> None:
        """Seal and store the open group and every group still sealing. Also called by
        ``commit``: a stream that failed half-way (its entry dropped) may have left
        accepted chunks here, which later streams count as stored."""
        self._close_group()
        while self._sealing:
            self._store_sealed(wait=True)

    # -- the tree -----------------------------------------------------------------

    def add_entry(self, entry: Entry) -> None:
        """Record a directory, symlink or other entry with no content."""
        self._tree.write(json.dumps(entry.to_doc(), separators=(",", ":")).encode() + b"\n")

    def add_stream(self, entry: Entry, reader: BinaryIO, *, fixed_size: int | None = None) -> int:
        """Store a file's or stream's content and its entry; return bytes read.

        The entry's chunk list is written into the tree as chunks are made,
        so it never sits whole in memory. ``fixed_size`` cuts chunks at every
        multiple of that many bytes instead of content-defined boundaries: for
        block-structured files (PostgreSQL relations, 8 KiB pages) an
        offset-aligned cut means a changed page changes exactly one chunk.
        """
        if fixed_size is not None and not 4096 <= fixed_size <= self._repo.config.chunk_max:
            raise ValueError(f"fixed chunk size {fixed_size} out of range")
        start = self._tree.tell()
        try:
            return self._add_stream(entry, reader, fixed_size)
        except BaseException:
            # Drop the half-written entry; chunks already packed are harmless.
            self._tree.seek(start)
            self._tree.truncate()
            raise

    def _add_stream(self, entry: Entry, reader: BinaryIO, fixed_size: int | None) -> int:
        doc: dict[str, Any] = entry.to_doc()
        doc.pop("chunks", None)
        doc.pop("size", None)
        head = json.dumps(doc, separators=(",", ":"))[:-1] + ',"chunks":['
        self._tree.write(head.encode())
        first = True

        def emit(chunk_id: bytes) -> None:
            nonlocal first
            self._tree.write((b'"' if first else b',"') + chunk_id.hex().encode() + b'"')
            first = False

        size = self._stream(reader, BLOB_DATA, emit, fixed_size)
        self._tree.write(f'],"size":{size}}}\n'.encode())
        return size

    # -- finishing ----------------------------------------------------------------

    def _check_stop(self) -> None:
        reason = self._should_stop() if self._should_stop is not None else None
        if reason:
            self._uploader.cancel()
            raise RunInterrupted(f"stopped ({reason}) before the snapshot was written; "
                                 "packs already stored are reused by the next run", reason)

    def commit(self, *, host: str, source_kind: str, source_spec: dict[str, Any],
               tags: list[str], summary: dict[str, Any], version: str) -> Snapshot:
        """Store the tree, the last pack, the indexes, then the snapshot."""
        tree_ids: list[str] = []
        self._tree.seek(0)
        self._stream(self._tree, BLOB_TREE,  # type: ignore[arg-type]
                     lambda cid: tree_ids.append(cid.hex()))
        self._finish_groups()
        self._flush_pack()
        self._uploader.close()
        self._check_stop()  # the last moment a stop (a deadline) can keep the snapshot out
        self._shutdown()
        snap = Snapshot(
            time=utc_now(), start_time=self.start_time, host=host, source_kind=source_kind,
            source_spec=source_spec, tree=tree_ids, tags=tags, drsync_version=version,
            summary={**summary, "bytes_read": self.stats.bytes_read,
                     "chunks": self.stats.chunks, "chunks_new": self.stats.chunks_new,
                     "packs": self.stats.packs},
        )
        _oid, size = self._repo.save_snapshot(snap)
        self.stats.bytes_added += size
        return snap

    def _shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._tree.close()
            self._pack.close()  # a pack left unfinished by a stop or a failure

    def abort(self) -> None:
        """Stop without a snapshot; stored packs stay (indexed ones are reused later)."""
        with contextlib.suppress(DrsyncError):
            self._uploader.close()
        self._shutdown()


class _NoUploads(_Uploader):
    """The uploader of a dry run: nothing is stored, no thread is started."""

    def __init__(self) -> None:  # no threads, no store: not the parent's
        self.error = None
        self._cancelled = False

    def submit(self, pack: PackBuilder) -> None:
        raise AssertionError("a dry run stores no pack")

    def close(self) -> None:
        pass


# What one new blob costs beyond its sealed bytes: its entry in the pack's header and
# its line in an index file (hex id, offsets; compressed with the rest of the index):
# about 33 bytes of a compressed pack header, 40 of an index file.
BLOB_OVERHEAD = 33 + 40


class DeltaEstimator(SnapshotWriter):
    """A dry run of a backup: the same chunks, ids, dedup lookups and sealing as
    ``SnapshotWriter``, but nothing is stored and no lock is needed. ``finish`` says
    how many bytes the backup would add to the store, i.e. put on the link."""

    def __init__(self, repo: Repository, index: Index, **kw: Any) -> None:
        super().__init__(repo, index, **kw)
        self.new_raw_bytes = 0
        self.new_stored_bytes = 0

    def _make_uploader(self) -> _Uploader:
        return _NoUploads()

    def _store_blob(self, blob_type: int, chunk_id: bytes, sealed: bytes,
                    raw_length: int) -> None:
        self.new_raw_bytes += raw_length
        self.new_stored_bytes += len(sealed) + BLOB_OVERHEAD

    def _store_group(self, members: list[tuple[bytes, int]], sealed: bytes) -> None:
        self.new_raw_bytes += sum(raw_length for _id, raw_length in members)
        self.new_stored_bytes += len(sealed) + BLOB_OVERHEAD * len(members)

    def commit(self, **_kw: Any) -> Snapshot:
        raise AssertionError("a dry run writes no snapshot; call finish")

    def finish(self) -> int:
        """Chunk the tree as a commit would; the bytes the backup would store."""
        self._tree.seek(0)
        self._stream(self._tree, BLOB_TREE, lambda _cid: None)  # type: ignore[arg-type]
        self._finish_groups()
        self._shutdown()
        return self.new_stored_bytes
