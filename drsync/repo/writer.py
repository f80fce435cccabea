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
sealed in groups (drsync.repo.group) of new chunks in file order, up to
``group_target`` bytes from at most ``GROUP_SPAN`` bytes of the file; every
chunk keeps its own id and index entry, so dedup is unchanged. They go to the
workers a run of ``group_target`` bytes at a time (read by the worker itself,
at the run's offset, when the stream is a regular file); a run whose chunks are
all new is sealed as one group in the same task, the others' new chunks are
grouped here and sealed on a worker.

Stopping: a writer given ``should_stop`` asks it before every chunk (every
run of a block-structured stream), once more just before the snapshot, and,
on the uploader threads, before starting every pack: once the source is read,
the chunking thread only waits for queued packs, and a stop asked then must
not wait for them to be sent. When it answers with a reason, the pack being
uploaded finishes, packs still queued are dropped (their chunks are simply
not stored), what was stored is indexed, and ``RunInterrupted`` is raised: no
snapshot, nothing the next run cannot adopt. ``should_stop`` is therefore
called from several threads; a stop an uploader saw holds for the whole run
(packs were dropped), whatever ``should_stop`` answers afterwards.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import queue
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import IO, Any, BinaryIO

from pyfastcdc import FastCDC

from drsync.errors import DrsyncError, RunInterrupted, StoreError
from drsync.malloc import return_large_buffers_to_the_os
from drsync.repo.chunking import cut_stream
from drsync.repo.group import GROUP_SPAN, GROUP_TARGET, seal_group, seal_group_plain
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
# A run of a block-structured stream on its way back from a worker: its bytes, its
# chunks' ids, and its seal as one group (None: grouped chunk by chunk in the writer).
_SealedRun = tuple[bytes, list[bytes], bytes | None]


def _regular_file(reader: BinaryIO) -> int | None:
    """The descriptor of the regular file ``reader`` reads (for reads at offsets, from
    ``reader.tell()`` on), or None: a pipe, an object without one."""
    raw = reader.raw if isinstance(reader, io.BufferedReader) else reader
    if not isinstance(raw, io.FileIO):
        return None
    try:
        return raw.fileno() if stat.S_ISREG(os.fstat(raw.fileno()).st_mode) else None
    except OSError:
        return None


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

    Before starting a pack a thread asks ``should_stop``; once it (or ``cancel``)
    gave a reason, no further pack is started, and the queued ones are dropped.
    """

    def __init__(self, repo: Repository, index: Index, stats: WriterStats,
                 should_stop: Callable[[], str | None] | None = None) -> None:
        self._repo = repo
        self._index = index
        self._stats = stats
        self._should_stop = should_stop
        self._threads_n = max(1, repo.store.connections)
        self._queue: queue.Queue[PackBuilder | None] = queue.Queue(
            UPLOAD_QUEUE + self._threads_n - 1
        )
        self._unindexed: list[tuple[str, int, list[BlobEntry]]] = []
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self.stop_reason: str | None = None  # why packs stopped being started
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
            try:
                if self.error is not None or self._stopped():
                    item.close()  # drain: the producer never blocks after a failure or a stop
                else:
                    self._store(item)
            except BaseException as err:
                self.error = err
                item.close()
            del item  # not held while waiting for the next pack

    def _stopped(self) -> bool:
        """Whether a stop was asked (remembered once seen: ``should_stop`` may change
        its mind, the packs dropped meanwhile stay dropped)."""
        if self.stop_reason is None and self._should_stop is not None:
            reason = self._should_stop()
            if reason and self.stop_reason is None:
                self.stop_reason = reason
        return self.stop_reason is not None

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

    def cancel(self, reason: str) -> None:
        """Upload no pack that has not started; ``close`` still indexes the stored ones."""
        if self.stop_reason is None:
            self.stop_reason = reason

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
        self._group: list[tuple[bytes, memoryview]] = []  # new chunks, open group
        self._group_bytes = 0
        self._group_start = 0  # where in its stream the open group's first chunk is
        self._stream_at = 0  # where in the grouped stream the next chunk accepted is
        # Groups (and lone chunks) being sealed, in file order: (id, plaintext length) of
        # each member, and the seal.
        self._sealing: collections.deque[
            tuple[list[tuple[bytes, int]], Future[bytes]]] = collections.deque()
        self._uploader = self._make_uploader()
        self._tree: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115
        self._closed = False

    def _make_uploader(self) -> _Uploader:
        return _Uploader(self._repo, self._index, self.stats, self._should_stop)

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

    def _accept_grouped(self, chunk_id: bytes, data: memoryview) -> bytes:
        """A chunk of a run that is not sealed whole: into the open group when it is new
        (a group is closed at ``group_target`` bytes or ``GROUP_SPAN`` of the file)."""
        raw_length = len(data)
        self.stats.chunks += 1
        at = self._stream_at
        self._stream_at += raw_length
        if chunk_id in self._index or chunk_id in self._added:
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
            self._sealing.append(([(chunk_id, len(data))], self._pool.submit(
                self._repo.key.seal_chunk, data, chunk_id, self._level)))
        elif members:
            self._sealing.append(([(cid, len(data)) for cid, data in members],
                                  self._pool.submit(seal_group, self._repo.key, members,
                                                    self._level)))
        self._store_sealed(wait=len(self._sealing) > self._window // 4)

    def _store_sealed(self, *, wait: bool = False) -> None:
        """Store the sealed groups whose seal is done (with ``wait``, one at least)."""
        while self._sealing and (wait or self._sealing[0][1].done()):
            members, fut = self._sealing.popleft()
            sealed = fut.result()
            if len(members) == 1:
                self._store_blob(BLOB_DATA, members[0][0], sealed, members[0][1])
            else:
                self._store_group(members, sealed)
            wait = False

    def _store_group(self, members: list[tuple[bytes, int]], sealed: bytes) -> None:
        """A new group into the pack being built (a full pack goes to the uploader)."""
        self._pack.add_group(members, sealed)
        if len(self._pack) >= self._repo.config.pack_size:
            self._flush_pack()

    def _stream(self, reader: BinaryIO, blob_type: int, emit: Callable[[list[bytes]], None],
                fixed_size: int | None = None) -> int:
        """Chunk ``reader``; call ``emit`` with the chunk ids in order, a list at a time;
        return bytes read.
        A block-structured stream (``fixed_size``) seals its new chunks in groups."""
        if fixed_size and blob_type == BLOB_DATA and 2 * fixed_size <= self._group_target:
            return self._stream_blocks(reader, emit, fixed_size)
        work = self._process
        accept = self._accept
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
                emit([accept(result, blob_type) for result in inflight.popleft().result()])
        if batch:
            inflight.append(self._pool.submit(self._process_batch, work, batch, blob_type))
        while inflight:
            emit([accept(result, blob_type) for result in inflight.popleft().result()])
        return total

    # -- block-structured streams: read, hashed and sealed a group at a time ------------

    def _stream_blocks(self, reader: BinaryIO, emit: Callable[[list[bytes]], None],
                       size: int) -> int:
        """``_stream`` of a block-structured stream (chunks of ``size`` bytes, sealed in
        groups). It goes a group's worth (``group_target``) at a time to a worker, which
        hashes that run's chunks and, when every one is new (a full backup, a rewritten
        run of pages), compresses and seals the run as one group right away
        (``_seal_run``). A regular file is read by the workers themselves, each run at
        its offset (``_pread_runs``), so that hashing and compressing find the bytes in
        the cache of the core that read them. Reading every 32 KiB chunk here, handing
        it to a worker to hash, back to be grouped and on again to be sealed, cost
        about as much CPU as the hashing and compressing. Runs holding chunks already
        stored are grouped chunk by chunk (``_accept_grouped``)."""
        self._close_group()  # one a failed stream left open: groups stay per stream
        self._stream_at = 0
        run = max(size, self._group_target // size * size)
        fd = _regular_file(reader)
        tasks = (self._pread_runs(reader, fd, run, size) if fd is not None
                 else (self._pool.submit(self._seal_run, data, size)
                       for data in _fixed_chunks(reader, run)))
        inflight: collections.deque[Future[_SealedRun]] = collections.deque()
        try:
            more = True
            while more:
                self._check_stop()
                task = next(tasks, None)
                if task is None:
                    break
                inflight.append(task)
                while more and inflight and (len(inflight) >= self._window
                                             or inflight[0].done()):
                    more = self._take_run(inflight.popleft().result(), run, size, emit)
            while inflight:
                result = inflight.popleft().result()
                more = more and self._take_run(result, run, size, emit)
        finally:
            # Nothing reads the file once the caller closes it (its descriptor reused).
            for task in inflight:
                task.cancel()
            futures_wait(inflight)
        self._finish_groups()
        return self._stream_at

    def _pread_runs(self, reader: BinaryIO, fd: int, run: int,
                    size: int) -> Iterator[Future[_SealedRun]]:
        """A worker's task for every run of the file from ``reader``'s position to its
        end; once the last is read, the runs the file grew by meanwhile (the end a
        sequential read finds)."""
        at = reader.tell()
        last: Future[_SealedRun] | None = None
        while True:
            if last is not None:
                futures_wait([last])
            end = os.fstat(fd).st_size
            if end <= at:
                return
            while at < end:
                last = self._pool.submit(self._read_run, fd, at, run, size)
                yield last
                at += run

    def _read_run(self, fd: int, at: int, run: int, size: int) -> _SealedRun:
        return self._seal_run(os.pread(fd, run, at), size)

    def _take_run(self, result: _SealedRun, run: int, size: int,
                  emit: Callable[[list[bytes]], None]) -> bool:
        """Accept one run, in order; False when it ends the stream (read short: the end
        of the file, or of one that shrank while it was read, whose later runs, read at
        their offsets, must not follow it)."""
        data = result[0]
        if data:
            self.stats.bytes_read += len(data)
            if self._progress is not None:
                self._progress(len(data))
            self._accept_run(result, size, emit)
        return len(data) == run

    def _seal_run(self, data: bytes, size: int) -> _SealedRun:
        """On a worker: the ids of ``data``'s chunks, and its seal as one group when they
        are all new and distinct as far as this thread can see (``_accept_run`` decides)."""
        view = memoryview(data)
        ids = [self._repo.key.chunk_id(view[at:at + size]) for at in range(0, len(data), size)]
        if len(ids) < 2 or len(set(ids)) < len(ids) or not self._all_new(ids):
            return data, ids, None
        return data, ids, seal_group_plain(self._repo.key, ids, data, self._level)

    def _all_new(self, ids: list[bytes]) -> bool:
        return self._index.holds_none(ids) and self._added.isdisjoint(ids)

    def _accept_run(self, result: _SealedRun, size: int,
                    emit: Callable[[list[bytes]], None]) -> None:
        data, ids, sealed = result
        if sealed is not None and self._all_new(ids):
            self._close_group()  # the open group's chunks come before these in the file
            self.stats.chunks += len(ids)
            self.stats.chunks_new += len(ids)
            self._added.update(ids)
            last = len(data) - (len(ids) - 1) * size
            done: Future[bytes] = Future()
            done.set_result(sealed)
            self._sealing.append(([(chunk_id, size) for chunk_id in ids[:-1]]
                                  + [(ids[-1], last)], done))
            self._store_sealed(wait=len(self._sealing) > self._window // 4)
            self._stream_at += len(data)
            emit(ids)
            return
        view = memoryview(data)
        emit([self._accept_grouped(chunk_id, view[i * size:(i + 1) * size])
              for i, chunk_id in enumerate(ids)])

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

        def emit(chunk_ids: list[bytes]) -> None:
            nonlocal first
            if chunk_ids:
                listed = '","'.join([chunk_id.hex() for chunk_id in chunk_ids])
                self._tree.write((b'"' if first else b',"') + listed.encode() + b'"')
                first = False

        size = self._stream(reader, BLOB_DATA, emit, fixed_size)
        self._tree.write(f'],"size":{size}}}\n'.encode())
        return size

    # -- finishing ----------------------------------------------------------------

    def _check_stop(self) -> None:
        reason = self._uploader.stop_reason
        if reason is None and self._should_stop is not None:
            reason = self._should_stop()
        if reason:
            self._uploader.cancel(reason)
            raise RunInterrupted(f"stopped ({reason}) before the snapshot was written; "
                                 "packs already stored are reused by the next run", reason)

    def commit(self, *, host: str, source_kind: str, source_spec: dict[str, Any],
               tags: list[str], summary: dict[str, Any], version: str,
               before_snapshot: Callable[[], None] | None = None) -> Snapshot:
        """Store the tree, the last pack, the indexes, then the snapshot; ``before_snapshot``
        (the writer lock's ``confirm_held``) may refuse that last write."""
        tree_ids: list[str] = []
        self._tree.seek(0)
        self._stream(self._tree, BLOB_TREE,  # type: ignore[arg-type]
                     lambda cids: tree_ids.extend(cid.hex() for cid in cids))
        self._finish_groups()
        self._flush_pack()
        self._uploader.close()
        self._check_stop()  # the last moment a stop (a deadline) can keep the snapshot out
        self._shutdown()
        if before_snapshot is not None:
            before_snapshot()
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
        self.stop_reason = None

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
