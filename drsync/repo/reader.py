"""Reading snapshots back: the tree's entries and each stream's bytes.

Reads are planned per pack. The reader looks ahead over the restore order
(a window of a bounded number of plaintext bytes), groups the blobs the
window needs by pack, and fetches each pack's needed bytes in one ranged
GET, or a few when the needed blobs are far apart (gaps over ``GAP`` bytes
are not fetched). Ranges are fetched on ``store.connections`` threads;
each stored range is decrypted, decompressed and verified on worker threads
(a group once, handing out every member the window wants from it: each
checked against its id), and the blobs are yielded in order (``blobs``) or
written by those threads straight to where they go (``deliver``). Nothing is yielded or written that
did not verify, and memory is bounded by the window: a blob leaves the cache
after its last use in the window (used again later, it is fetched again).

The unit of work on a worker thread is one stored range (a blob or a group):
it is opened (``SnapshotReader._open_stored``: decrypted, decompressed, every
chunk's keyed id checked) into one or more (chunk id, plaintext), each then
settled: handed to the ``blobs`` consumer (as bytes), or written at each of
its destinations (``deliver``: a group's members as views of the group's
verified plaintext, so no byte is copied between decompression and the write).
"""

from __future__ import annotations

import collections
import json
import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from drsync.errors import IntegrityError, ObjectNotFound
from drsync.malloc import return_large_buffers_to_the_os
from drsync.repo.crypto import SealError
from drsync.repo.group import Group
from drsync.repo.index import BlobLocation, Index, pack_key
from drsync.repo.repository import Repository
from drsync.repo.snapshot import Entry, Snapshot

__all__ = ["ReadStats", "Sink", "SnapshotReader"]

MiB = 1 << 20
WINDOW = 32 * MiB   # least plaintext bytes of the restore order planned (and cached) at once
GAP = MiB           # needed blobs closer than this in a pack are fetched in one range
BATCH = MiB         # sealed bytes a worker opens per task
TREE_CACHE = 32 * MiB  # a tree this small is fetched once however often a restore walks it
SINKS = 128         # most sinks (files being written, two descriptors each) deliver keeps open


@dataclass
class ReadStats:
    """What the reads cost: ranged GETs, bytes fetched, blobs verified, stored ranges
    (single blobs and groups) opened."""
    gets: int = 0
    bytes_fetched: int = 0
    blobs: int = 0
    opened: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, gets: int, fetched: int, blobs: int, opened: int = 0) -> None:
        with self._lock:
            self.gets += gets
            self.bytes_fetched += fetched
            self.blobs += blobs
            self.opened += opened


class Sink(Protocol):
    """Where ``deliver`` writes verified plaintext: a file being restored. Both are
    called on worker threads; ``done`` once, after the last ``put``."""

    def put(self, offset: int, data: bytes | memoryview) -> None: ...

    def done(self) -> None: ...


class _Settle(Protocol):
    """What becomes of one chunk's verified plaintext (or of the failure to get it)."""

    def ok(self, chunk_id: bytes, plain: bytes | memoryview) -> int: ...

    def fail(self, err: BaseException) -> None: ...


S = TypeVar("S")


@dataclass
class _Range(Generic[S]):
    """One GET: bytes [start, end) of a pack and the blobs in them."""
    pack_id: str
    start: int
    end: int
    blobs: list[tuple[bytes, BlobLocation, S]]


@dataclass
class _Held:
    fut: Future[bytes]
    uses: int = 0


class _ToFuture:
    """``blobs``: the plaintext to the consumer, who waits on ``fut`` in restore order."""

    def __init__(self) -> None:
        self.fut: Future[bytes] = Future()

    def ok(self, chunk_id: bytes, plain: bytes | memoryview) -> int:
        self.fut.set_result(plain if isinstance(plain, bytes) else bytes(plain))
        return 0

    def fail(self, err: BaseException) -> None:
        self.fut.set_exception(err)


@dataclass(eq=False)
class _Open:
    """``deliver``: a sink whose chunks are not all written yet."""
    sink: Sink
    left: int


class _Scatter:
    """``deliver``'s bookkeeping, shared by the planning thread and the workers."""

    def __init__(self, progress: Callable[[int], None] | None, window: int) -> None:
        self.cond = threading.Condition()
        self.window = window
        self.planned = 0   # plaintext bytes planned and not yet written
        self.sinks = 0     # sinks open: some chunk planned, not every chunk written
        self.tasks = 0     # ranges and batches submitted and not yet finished
        self.error: BaseException | None = None
        self.progress = progress

    def written(self, wrote: int, settled: list[_Settle]) -> None:
        """A batch written (``wrote`` bytes): sinks that got their last chunk are done."""
        finished: list[_Open] = []
        with self.cond:
            for settle in settled:
                assert isinstance(settle, _ToSinks)
                for dests in settle.dests.values():
                    for opened, _offset in dests:
                        opened.left -= 1
                        if opened.left == 0:
                            finished.append(opened)
                self.planned -= settle.planned
        try:
            for opened in finished:
                opened.sink.done()
        except BaseException as err:
            self.failed(err)
        if self.progress is not None and wrote:
            self.progress(wrote)
        with self.cond:
            self.sinks -= len(finished)
            if self.sinks == 0 or self.refill():  # else the planner has nothing to do
                self.cond.notify_all()

    def refill(self) -> bool:
        """Room for the planner to plan more (half the window, half the sinks, free)."""
        return self.planned <= self.window // 2 and self.sinks <= SINKS // 2

    def failed(self, err: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = err
            self.cond.notify_all()

    def task_done(self) -> None:
        with self.cond:
            self.tasks -= 1
            self.cond.notify_all()


class _ToSinks:
    """``deliver``: each chunk's plaintext written at each of its destinations."""

    def __init__(self, scatter: _Scatter) -> None:
        self.scatter = scatter
        self.dests: dict[bytes, list[tuple[_Open, int]]] = {}
        self.planned = 0

    def add(self, chunk_id: bytes, opened: _Open, offset: int, length: int) -> None:
        self.dests.setdefault(chunk_id, []).append((opened, offset))
        self.planned += length

    def ok(self, chunk_id: bytes, plain: bytes | memoryview) -> int:
        dests = self.dests[chunk_id]
        for opened, offset in dests:
            opened.sink.put(offset, plain)
        return len(plain) * len(dests)

    def fail(self, err: BaseException) -> None:
        self.scatter.failed(err)


def _put_runs(group: Group, wanted: list[tuple[bytes, BlobLocation, _Settle]],
              plain: dict[bytes, bytes | memoryview]) -> int | None:
    """``deliver``: a group's wanted members written at their destinations, each run of
    members that follow one another both in the group's plaintext and in one sink
    written with one ``put`` (a base backup's 32 KiB blocks: one write a group, not
    one a block). The bytes written; None, having written nothing, when the members
    are copies rather than views of one plaintext (then each is written alone)."""
    views = [plain[member_id] for member_id, _loc, _settle in wanted]
    base = views[0].obj if isinstance(views[0], memoryview) else None
    if base is None or any(not isinstance(v, memoryview) or v.obj is not base for v in views):
        return None  # copies (a range read again on its own)
    position: dict[bytes, int] = {}
    at = 0
    for member_id, length in zip(group.ids, group.lengths, strict=True):
        position.setdefault(member_id, at)
        at += length
    writes: list[tuple[int, int, int, int, _Open]] = []
    for member_id, _loc, settle in wanted:
        assert isinstance(settle, _ToSinks)
        start, length = position[member_id], len(plain[member_id])
        for opened, offset in settle.dests[member_id]:
            writes.append((id(opened), offset, start, length, opened))
    writes.sort(key=lambda w: (w[0], w[1]))
    whole = memoryview(base).toreadonly()
    wrote = 0
    run: list[Any] | None = None  # [sink, offset, start, length] of the run being built
    for _sink, offset, start, length, opened in writes:
        if (run is not None and run[0] is opened and run[1] + run[3] == offset
                and run[2] + run[3] == start):
            run[3] += length
            continue
        if run is not None:
            run[0].sink.put(run[1], whole[run[2]:run[2] + run[3]])
            wrote += run[3]
        run = [opened, offset, start, length]
    if run is not None:
        run[0].sink.put(run[1], whole[run[2]:run[2] + run[3]])
        wrote += run[3]
    return wrote


def coalesce(blobs: list[tuple[bytes, BlobLocation, S]], gap: int = GAP) -> list[_Range[S]]:
    """One pack's needed blobs as few ranges: one when the needed bytes are most of
    the span, otherwise split at gaps of more than ``gap`` bytes."""
    blobs = sorted(blobs, key=lambda b: b[1].offset)
    pack_id = blobs[0][1].pack_id
    start, end = blobs[0][1].offset, max(b[1].offset + b[1].length for b in blobs)
    needed = sum({b[1].offset: b[1].length for b in blobs}.values())  # a group counts once
    if needed * 2 >= end - start:
        return [_Range(pack_id, start, end, blobs)]
    ranges: list[_Range[S]] = []
    for blob in blobs:
        loc = blob[1]
        if ranges and loc.offset - ranges[-1].end <= gap:
            ranges[-1].end = max(ranges[-1].end, loc.offset + loc.length)
            ranges[-1].blobs.append(blob)
        else:
            ranges.append(_Range(pack_id, loc.offset, loc.offset + loc.length, [blob]))
    return ranges


def _by_range(blobs: list[tuple[bytes, BlobLocation, S]]
              ) -> Iterator[list[tuple[bytes, BlobLocation, S]]]:
    """The blobs of a range (sorted by offset) in runs that share one stored range: the
    wanted members of a group come together, a single blob alone."""
    run: list[tuple[bytes, BlobLocation, S]] = []
    for blob in blobs:
        if run and (blob[1].group is None or blob[1].offset != run[0][1].offset):
            yield run
            run = []
        run.append(blob)
    if run:
        yield run


class SnapshotReader:
    def __init__(self, repo: Repository, index: Index | None = None,
                 workers: int | None = None, *, window: int = WINDOW) -> None:
        """``workers`` threads open blobs; ``store.connections`` threads fetch ranges."""
        self.repo = repo
        self.index = repo.load_index() if index is None else index
        self.stats = ReadStats()
        self._trees: dict[str, list[bytes]] = {}
        return_large_buffers_to_the_os()
        # At least four packs' worth, so that a refill (half the window) spans whole packs.
        self._window = window if window != WINDOW else max(WINDOW, 4 * repo.config.pack_size)
        self._fetchers = max(1, repo.store.connections)
        cpus = workers or max(2, min(8, os.cpu_count() or 2))
        self._io = ThreadPoolExecutor(self._fetchers, thread_name_prefix="restore-get")
        self._cpu = ThreadPoolExecutor(cpus, thread_name_prefix="restore-open")

    def close(self) -> None:
        self._io.shutdown(wait=True, cancel_futures=True)
        self._cpu.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _locate(self, hex_id: str) -> tuple[bytes, BlobLocation]:
        blob_id = bytes.fromhex(hex_id)
        loc = self.index.get(blob_id)
        if loc is None:
            lost = self.index.lost(blob_id)
            if lost is not None:
                raise self.repo.missing(pack_key(lost.pack_id), "the index",
                                        self.index.lost_packs.get(lost.pack_id, "missing"))
            raise IntegrityError(f"{self.repo.url}: blob {hex_id[:16]} is in no index (missing)")
        return blob_id, loc

    def chunk_length(self, hex_id: str) -> int:
        """The plaintext length of a blob, from the index; IntegrityError (naming what is
        missing) when the index lacks it."""
        return self._locate(hex_id)[1].raw_length

    def plain_length(self, hex_id: str) -> int:
        """The plaintext length of a blob, from the index; KeyError when it has none."""
        loc = self.index.get(bytes.fromhex(hex_id))
        if loc is None:
            raise KeyError(hex_id)
        return loc.raw_length

    # -- the work on threads -------------------------------------------------------

    def _get(self, rng: _Range[_Settle], scatter: _Scatter | None = None) -> None:
        """Fetch one range (I/O thread), then open its blobs (worker threads)."""
        handed = 0  # blobs of rng.blobs handed to a worker, which will settle them
        try:
            if scatter is not None and scatter.error is not None:
                return  # a deliver that failed: nothing more is fetched
            name = pack_key(rng.pack_id)
            try:
                data = self.repo.store.get(name, rng.start, rng.end - rng.start)
            except ObjectNotFound:
                raise self.repo.missing(name, "the index") from None
            self.stats.add(1, len(data), 0)
            view = memoryview(data)  # each blob a view of the range, not a copy
            batch: list[tuple[list[tuple[bytes, BlobLocation, _Settle]], memoryview]] = []
            size = n = 0
            for wanted in _by_range(rng.blobs):
                loc = wanted[0][1]
                at = loc.offset - rng.start
                batch.append((wanted, view[at:at + loc.length]))
                size += loc.length
                n += len(wanted)
                if size >= BATCH or n == len(rng.blobs):  # a MiB a task: few hand-offs
                    if scatter is not None:
                        with scatter.cond:
                            scatter.tasks += 1
                    self._cpu.submit(self._open_all, batch, scatter)
                    handed, batch, size = n, [], 0
        except BaseException as err:  # every blob still waiting learns why
            for _blob_id, _loc, settle in rng.blobs[handed:]:
                settle.fail(err)
        finally:
            if scatter is not None:
                scatter.task_done()

    def _open_all(self, batch: list[tuple[list[tuple[bytes, BlobLocation, _Settle]],
                                          memoryview]],
                  scatter: _Scatter | None) -> None:
        wrote = opened = 0
        settled: list[_Settle] = []
        try:
            for wanted, sealed in batch:
                if scatter is not None and scatter.error is not None:
                    return  # a deliver that failed: no sink is touched any more
                blob_id, loc, _settle = wanted[0]
                done = 0
                try:
                    plain = self._open_stored(blob_id, loc, sealed, views=scatter is not None)
                    opened += 1
                    if scatter is not None and loc.group is not None and len(wanted) > 1:
                        runs = _put_runs(loc.group, wanted, plain)
                        if runs is not None:
                            wrote, done = wrote + runs, len(wanted)
                    for member_id, _loc, settle in wanted[done:]:
                        wrote += settle.ok(member_id, plain[member_id])
                        done += 1
                except BaseException as err:
                    for _id, _loc, settle in wanted[done:]:
                        settle.fail(err)
                    if scatter is not None:
                        return
                settled += [settle for _id, _loc, settle in wanted[:done]]
            if scatter is not None:
                scatter.written(wrote, settled)
        finally:
            self.stats.add(0, 0, len(settled), opened)
            if scatter is not None:
                scatter.task_done()

    def _open_stored(self, blob_id: bytes, loc: BlobLocation, sealed: memoryview, *,
                     views: bool = False) -> dict[bytes, bytes | memoryview]:
        """One stored range's chunks, chunk id -> verified plaintext (one for a single
        blob, every member of a group): decrypted, decompressed and each checked against
        its keyed id. ``views`` (``deliver``, whose sinks write each and drop it): a
        group's members are views of its plaintext, not copies."""
        try:
            if views:
                return dict(self.repo.unseal_views(loc, sealed, blob_id))
            return dict(self.repo.unseal_range(loc, sealed, blob_id))
        except SealError:
            # A byte flipped in transit fails like one flipped at rest: read this
            # range once more on its own (read_range retries and names the damage).
            self.stats.add(1, loc.length, 0)
            return dict(self.repo.read_range(blob_id, loc))

    # -- the plan -------------------------------------------------------------------

    def blobs(self, ids: Iterable[str]) -> Generator[bytes, None, None]:
        """Each blob's verified plaintext, in order; reads planned per pack ahead."""
        source = iter(ids)
        ahead: collections.deque[tuple[bytes, Future[bytes]]] = collections.deque()
        cache: dict[bytes, _Held] = {}  # blob id -> its future and uses left in `ahead`
        tasks: list[Future[None]] = []
        planned = 0  # plaintext bytes in `ahead`
        exhausted = False

        def plan() -> None:
            nonlocal planned, exhausted
            wanted: dict[str, list[tuple[bytes, BlobLocation, _Settle]]] = {}
            while planned < self._window:
                hex_id = next(source, None)
                if hex_id is None:
                    exhausted = True
                    break
                try:
                    blob_id, loc = self._locate(hex_id)
                except IntegrityError as err:  # raised when its turn comes, not before
                    failed: Future[bytes] = Future()
                    failed.set_exception(err)
                    ahead.append((b"", failed))
                    continue
                held = cache.get(blob_id)
                if held is None:
                    settle = _ToFuture()
                    held = cache[blob_id] = _Held(settle.fut)
                    wanted.setdefault(loc.pack_id, []).append((blob_id, loc, settle))
                held.uses += 1
                ahead.append((blob_id, held.fut))
                planned += loc.raw_length
            tasks[:] = [task for task in tasks if not task.done()]
            for blobs in wanted.values():
                for rng in coalesce(blobs):
                    tasks.append(self._io.submit(self._get, rng))

        try:
            plan()
            while ahead:
                blob_id, fut = ahead.popleft()
                data = fut.result()
                planned -= len(data)
                held = cache.get(blob_id)
                if held is not None:
                    held.uses -= 1
                    if held.uses == 0:
                        del cache[blob_id]
                if not exhausted and planned < self._window // 2:
                    plan()
                yield data
        finally:
            for task in tasks:  # a consumer that stops early leaves no fetch queued
                task.cancel()

    def deliver(self, files: Iterable[tuple[Sink, Sequence[tuple[str, int]]]], *,
                progress: Callable[[int], None] | None = None) -> None:
        """Write every chunk of every sink, on the worker threads.

        ``files`` yields, in restore order, a sink and its chunks (hex id, offset
        in the sink); it is consumed on this thread, ahead of the writes by the
        window (and by at most ``SINKS`` open sinks). Each chunk's verified
        plaintext is ``put`` at its offsets by the worker that opened it, a chunk
        needed several times in the window is fetched once, and a sink is
        ``done`` on the worker that wrote its last chunk (at once, when it has
        none); ``progress`` is told the bytes written. Returns when every sink is
        done; on a failure, raises it once no worker touches a sink any more.
        """
        scatter = _Scatter(progress, self._window)
        source = iter(files)
        current: tuple[_Open, Iterator[tuple[str, int]]] | None = None
        exhausted = False
        tasks: list[Future[None]] = []

        def plan() -> None:
            nonlocal current, exhausted
            wanted: dict[str, dict[bytes, tuple[BlobLocation, _ToSinks]]] = {}
            planned = opened = 0
            room, seats = self._window - scatter.planned, SINKS - scatter.sinks
            while planned < room:
                if current is None:
                    if opened >= seats:
                        break
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    sink, chunks = item
                    if not chunks:
                        sink.done()
                        continue
                    current, opened = (_Open(sink, len(chunks)), iter(chunks)), opened + 1
                state, rest = current
                for hex_id, offset in rest:
                    blob_id, loc = self._locate(hex_id)
                    in_pack = wanted.setdefault(loc.pack_id, {})
                    held = in_pack.get(blob_id)
                    if held is None:
                        held = in_pack[blob_id] = (loc, _ToSinks(scatter))
                    held[1].add(blob_id, state, offset, loc.raw_length)
                    planned += loc.raw_length
                    if planned >= room:
                        break
                else:
                    current = None
            ranges: list[_Range[_Settle]] = []
            for in_pack in wanted.values():
                needed: list[tuple[bytes, BlobLocation, _Settle]] = [
                    (blob_id, loc, settle) for blob_id, (loc, settle) in in_pack.items()]
                ranges += coalesce(needed)
            with scatter.cond:
                scatter.planned += planned
                scatter.sinks += opened
                scatter.tasks += len(ranges)
            tasks[:] = [task for task in tasks if not task.done()]
            for rng in ranges:
                tasks.append(self._io.submit(self._get, rng, scatter))

        def finished() -> bool:
            return scatter.error is not None or (exhausted and scatter.sinks == 0)

        try:
            plan()
            with scatter.cond:
                while not finished():
                    if not exhausted and scatter.refill():
                        scatter.cond.release()
                        try:
                            plan()
                        finally:
                            scatter.cond.acquire()
                    else:
                        scatter.cond.wait()
        except BaseException as err:
            scatter.failed(err)
        finally:
            for task in tasks:  # fetches not started are not made
                if task.cancel():
                    scatter.task_done()
            with scatter.cond:
                scatter.cond.wait_for(lambda: scatter.tasks == 0)
        if scatter.error is not None:
            raise scatter.error

    def entries(self, snap: Snapshot) -> Iterator[Entry]:
        """The snapshot's tree, one entry at a time (lines may span chunks)."""
        parts: list[bytes] = []
        for data in self._tree(snap):
            start = 0
            while (end := data.find(b"\n", start)) >= 0:
                parts.append(data[start:end])
                yield self._entry(snap, b"".join(parts))
                parts = []
                start = end + 1
            parts.append(data[start:])
        rest = b"".join(parts)
        if rest.strip():
            yield self._entry(snap, rest)

    def _tree(self, snap: Snapshot) -> Iterator[bytes]:
        """The tree's blobs; kept (when small) for the next walk of the same tree."""
        held = self._trees.get(snap.id)
        if held is not None:
            yield from held
            return
        kept: list[bytes] | None = []
        size = 0
        for data in self.blobs(snap.tree):
            if kept is not None:
                size += len(data)
                if size <= TREE_CACHE:
                    kept.append(data)
                else:
                    kept = None
            yield data
        if kept is not None:
            self._trees = {snap.id: kept}  # one tree at a time: memory stays bounded

    def _entry(self, snap: Snapshot, line: bytes) -> Entry:
        try:
            return Entry.from_doc(json.loads(line))
        except (ValueError, KeyError, TypeError) as err:
            raise IntegrityError(
                f"{self.repo.url}: snapshot {snap.short_id}: malformed tree entry: {err}"
            ) from None
