"""Snapshots and index files are read ``store.connections`` at a time: over a WAN a year of
nightly snapshots was hundreds of round trips, waited for one by one."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

from drsync.errors import StoreUnavailable
from drsync.repo import Entry, Repository, Secret, SnapshotWriter
from drsync.store import MemoryStore
from drsync.testing import CountingStore, make_repo

DOCUMENTS = ("snapshots/", "index/")


class OverlapStore(CountingStore):
    """Records the most document reads in flight at once (1: read one by one); with
    ``gate`` set, holds each until a second one is in flight (or 1 s passes), so that
    reads made in parallel are seen overlapping however fast each is."""

    def __init__(self, inner: MemoryStore, connections: int) -> None:
        super().__init__(inner, connections=connections)
        self.gate = False
        self.in_flight = self.most = 0
        self.fail: str | None = None  # a key whose read fails as a cut link would
        self._cond = threading.Condition()

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if not key.startswith(DOCUMENTS):
            return super().get(key, offset, length)
        with self._cond:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self._cond.notify_all()
            if self.gate:
                self._cond.wait_for(lambda: self.in_flight >= 2, timeout=1)
        try:
            if key == self.fail:
                raise StoreUnavailable(f"reading {key}: connection reset")
            return super().get(key, offset, length)
        finally:
            with self._cond:
                self.in_flight -= 1


def small_nights(repo: Repository, n: int) -> None:
    """``n`` nightly snapshots of a small dump, one pack and index file each."""
    for night in range(n):
        writer = SnapshotWriter(repo, repo.load_index())
        data = f"night {night}\n".encode() * 100
        writer.add_stream(Entry("dump.sql", "file", size=len(data)), io.BytesIO(data))
        writer.commit(host="t", source_kind="files", source_spec={}, tags=[str(night)],
                      summary={}, version="t")


def _open(store: MemoryStore, connections: int) -> tuple[Repository, OverlapStore]:
    overlap = OverlapStore(store, connections)
    return Repository.open(overlap, Secret(passphrase="test passphrase")), overlap


def test_snapshots_and_index_files_are_read_in_parallel_and_in_order() -> None:
    store = MemoryStore()
    small_nights(make_repo(store), 9)
    one_by_one, sequential = _open(store, 1)
    expected = [(s.id, s.tags) for s in one_by_one.snapshots()]
    index = one_by_one.load_index()
    assert sequential.most == 1 and len(expected) == 9

    repo, overlap = _open(store, 4)
    overlap.gate = True
    assert [(s.id, s.tags) for s in repo.snapshots()] == expected
    assert overlap.most >= 2
    overlap.most = 0
    assert sorted(repo.load_index().items()) == sorted(index.items())
    assert overlap.most >= 2
    assert repo.find_snapshot("latest").tags == ["8"]


def test_an_unreadable_snapshot_is_still_skipped_and_named_a_failed_read_still_fails() -> None:
    store = MemoryStore()
    small_nights(make_repo(store), 6)
    repo, overlap = _open(store, 4)
    names = sorted(k for k in store.objects if k.startswith("snapshots/"))
    store.objects[names[2]] = b"not a snapshot"
    warned: list[str] = []
    repo.warn = warned.append  # type: ignore[method-assign]
    assert len(repo.snapshots()) == 5
    assert len(warned) == 1 and names[2] in warned[0] and warned[0].endswith("skipped")
    listings: list[str] = []
    listing = overlap.list

    def counted(prefix: str = "") -> Any:
        listings.append(prefix)
        return listing(prefix)

    overlap.list = counted  # type: ignore[method-assign]
    snaps, listed = repo.listed_snapshots()  # the unreadable one listed, from one listing
    assert len(snaps) == 5 and sorted(listed) == [n.removeprefix("snapshots/") for n in names]
    assert listings == ["snapshots/"]

    overlap.fail = names[4]
    with pytest.raises(StoreUnavailable, match="connection reset"):
        repo.snapshots()
    assert not [t for t in threading.enumerate() if t.name.startswith("repo-read")]
