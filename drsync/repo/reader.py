"""Reading snapshots back: the tree's entries and each stream's bytes.

Blobs are fetched, decrypted, decompressed and verified against their ids
on a thread pool with a bounded read-ahead window, and yielded in order.
Nothing is yielded that did not verify.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from drsync.errors import IntegrityError
from drsync.repo.index import Index, pack_key
from drsync.repo.repository import Repository
from drsync.repo.snapshot import Entry, Snapshot

__all__ = ["SnapshotReader"]


class SnapshotReader:
    def __init__(self, repo: Repository, index: Index | None = None,
                 workers: int | None = None) -> None:
        self.repo = repo
        self.index = repo.load_index() if index is None else index
        self._workers = workers or max(2, min(8, (os.cpu_count() or 2) * 2))
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="restore")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fetch(self, hex_id: str) -> bytes:
        blob_id = bytes.fromhex(hex_id)
        loc = self.index.get(blob_id)
        if loc is None:
            lost = self.index.lost(blob_id)
            if lost is not None:
                raise self.repo.missing(pack_key(lost.pack_id), "the index",
                                        self.index.lost_packs.get(lost.pack_id, "missing"))
            raise IntegrityError(f"{self.repo.url}: blob {hex_id[:16]} is in no index (missing)")
        return self.repo.read_blob(blob_id, loc)

    def blobs(self, ids: Iterable[str]) -> Iterator[bytes]:
        """Each blob's verified plaintext, in order, fetched ahead in parallel."""
        window = self._workers * 2
        inflight: collections.deque[Future[bytes]] = collections.deque()
        try:
            for hex_id in ids:
                inflight.append(self._pool.submit(self._fetch, hex_id))
                if len(inflight) >= window:
                    yield inflight.popleft().result()
            while inflight:
                yield inflight.popleft().result()
        finally:
            for fut in inflight:
                fut.cancel()

    def entries(self, snap: Snapshot) -> Iterator[Entry]:
        """The snapshot's tree, one entry at a time (lines may span chunks)."""
        parts: list[bytes] = []
        for data in self.blobs(snap.tree):
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

    def _entry(self, snap: Snapshot, line: bytes) -> Entry:
        try:
            return Entry.from_doc(json.loads(line))
        except (ValueError, KeyError, TypeError) as err:
            raise IntegrityError(
                f"{self.repo.url}: snapshot {snap.short_id}: malformed tree entry: {err}"
            ) from None
