"""Reading snapshots back: the tree's entries and each stream's bytes.

Reads are planned per pack. The reader looks ahead over the restore order
(a window of a bounded number of plaintext bytes), groups the blobs the
window needs by pack, and fetches each pack's needed bytes in one ranged
GET, or a few when the needed blobs are far apart (gaps over ``GAP`` bytes
are not fetched). Ranges are fetched on ``store.connections`` threads;
each stored range is decrypted, decompressed and verified on worker threads
(a group once, handing out every member the window wants from it: each
checked against its id), and the blobs are yielded in order. Nothing is
yielded that did not verify, and memory is bounded by the window: a blob
leaves the cache after its last use in the window (used again later, it is
fetched again).
"""

from __future__ import annotations

import collections
import json
import os
import threading
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from drsync.errors import IntegrityError, ObjectNotFound
from drsync.malloc import return_large_buffers_to_the_os
from drsync.repo.crypto import SealError
from drsync.repo.index import BlobLocation, Index, pack_key
from drsync.repo.repository import Repository
from drsync.repo.snapshot import Entry, Snapshot

__all__ = ["ReadStats", "SnapshotReader"]

MiB = 1 << 20
WINDOW = 32 * MiB   # least plaintext bytes of the restore order planned (and cached) at once
GAP = MiB           # needed blobs closer than this in a pack are fetched in one range
BATCH = MiB         # sealed bytes a worker opens per task
TREE_CACHE = 32 * MiB  # a tree this small is fetched once however often a restore walks it


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


@dataclass
class _Range:
    """One GET: bytes [start, end) of a pack and the blobs in them."""
    pack_id: str
    start: int
    end: int
    blobs: list[tuple[bytes, BlobLocation, Future[bytes]]]


@dataclass
class _Held:
    fut: Future[bytes]
    uses: int = 0


def coalesce(blobs: list[tuple[bytes, BlobLocation, Future[bytes]]],
             gap: int = GAP) -> list[_Range]:
    """One pack's needed blobs as few ranges: one when the needed bytes are most of
    the span, otherwise split at gaps of more than ``gap`` bytes."""
    blobs = sorted(blobs, key=lambda b: b[1].offset)
    pack_id = blobs[0][1].pack_id
    start, end = blobs[0][1].offset, max(b[1].offset + b[1].length for b in blobs)
    needed = sum({b[1].offset: b[1].length for b in blobs}.values())  # a group counts once
    if needed * 2 >= end - start:
        return [_Range(pack_id, start, end, blobs)]
    ranges: list[_Range] = []
    for blob in blobs:
        loc = blob[1]
        if ranges and loc.offset - ranges[-1].end <= gap:
            ranges[-1].end = max(ranges[-1].end, loc.offset + loc.length)
            ranges[-1].blobs.append(blob)
        else:
            ranges.append(_Range(pack_id, loc.offset, loc.offset + loc.length, [blob]))
    return ranges


def _by_range(blobs: list[tuple[bytes, BlobLocation, Future[bytes]]]
              ) -> Iterator[list[tuple[bytes, BlobLocation, Future[bytes]]]]:
    """The blobs of a range (sorted by offset) in runs that share one stored range: the
    wanted members of a group come together, a single blob alone."""
    run: list[tuple[bytes, BlobLocation, Future[bytes]]] = []
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
        return_large_buffers_to_the_os()
        self.repo = repo
        self.index = repo.load_index() if index is None else index
        self.stats = ReadStats()
        self._trees: dict[str, list[bytes]] = {}
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

    def plain_length(self, hex_id: str) -> int:
        """The plaintext length of a blob, from the index; KeyError when it has none."""
        loc = self.index.get(bytes.fromhex(hex_id))
        if loc is None:
            raise KeyError(hex_id)
        return loc.raw_length

    # -- the work on threads -------------------------------------------------------

    def _get(self, rng: _Range) -> None:
        """Fetch one range (I/O thread), then open its blobs (worker threads)."""
        handed = 0  # blobs of rng.blobs handed to a worker, which will settle them
        try:
            name = pack_key(rng.pack_id)
            try:
                data = self.repo.store.get(name, rng.start, rng.end - rng.start)
            except ObjectNotFound:
                raise self.repo.missing(name, "the index") from None
            self.stats.add(1, len(data), 0)
            batch: list[tuple[list[tuple[bytes, BlobLocation, Future[bytes]]], bytes]] = []
            size = 0
            for wanted in _by_range(rng.blobs):
                loc = wanted[0][1]
                at = loc.offset - rng.start
                batch.append((wanted, data[at:at + loc.length]))
                size += loc.length
                handed += len(wanted)
                if size >= BATCH or handed == len(rng.blobs):  # a MiB a task: few hand-offs
                    self._cpu.submit(self._open_all, batch)
                    batch, size = [], 0
        except BaseException as err:  # every blob still waiting learns why
            for _blob_id, _loc, fut in rng.blobs[handed:]:
                fut.set_exception(err)

    def _open_all(self, batch: list[tuple[list[tuple[bytes, BlobLocation, Future[bytes]]],
                                          bytes]]) -> None:
        for wanted, sealed in batch:
            self._open(wanted, sealed)

    def _open(self, wanted: list[tuple[bytes, BlobLocation, Future[bytes]]],
              sealed: bytes) -> None:
        """Open one stored range once and settle the futures of the blobs wanted from it
        (one for a single blob; any members of a group)."""
        blob_id, loc, _fut = wanted[0]
        try:
            try:
                plain = dict(self.repo.unseal_range(loc, sealed, blob_id))
            except SealError:
                # A byte flipped in transit fails like one flipped at rest: read this
                # range once more on its own (read_range retries and names the damage).
                self.stats.add(1, loc.length, 0)
                plain = dict(self.repo.read_range(blob_id, loc))
            self.stats.add(0, 0, len(wanted), 1)
            for member_id, _loc, fut in wanted:
                fut.set_result(plain[member_id])
        except BaseException as err:
            for _id, _loc, fut in wanted:
                if not fut.done():
                    fut.set_exception(err)

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
            wanted: dict[str, list[tuple[bytes, BlobLocation, Future[bytes]]]] = {}
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
                    held = cache[blob_id] = _Held(Future())
                    wanted.setdefault(loc.pack_id, []).append((blob_id, loc, held.fut))
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
