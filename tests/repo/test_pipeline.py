"""The backup pipeline and reader: round trips, dedup, bounded memory, reuse after a crash."""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Iterator

from drsync.repo import Entry, SnapshotReader, SnapshotWriter
from drsync.repo.writer import adopt_orphan_packs
from drsync.testing import backup_bytes, make_repo, text_like

MiB = 1 << 20


def _restore(repo, snap) -> bytes:  # type: ignore[no-untyped-def]
    with SnapshotReader(repo) as reader:
        (entry,) = list(reader.entries(snap))
        return b"".join(reader.blobs(entry.chunks))


def test_roundtrip_is_byte_identical() -> None:
    repo = make_repo(chunk_avg=64 * 1024, chunk_min=16 * 1024, chunk_max=256 * 1024,
                     pack_size=MiB)
    data = text_like(3 * MiB, seed=1) + os.urandom(MiB) + b""
    snap = backup_bytes(repo, data)
    assert _restore(repo, snap) == data
    assert snap.summary["bytes_read"] == len(data)
    assert snap.summary["packs"] >= 2


def test_empty_stream() -> None:
    repo = make_repo()
    snap = backup_bytes(repo, b"")
    assert _restore(repo, snap) == b""


def test_second_day_adds_only_changed_chunks() -> None:
    repo = make_repo(chunk_avg=64 * 1024, chunk_min=16 * 1024, chunk_max=256 * 1024,
                     pack_size=MiB)
    day1 = text_like(8 * MiB, seed=2)
    backup_bytes(repo, day1)
    packs_before = sum(i.size for i in repo.store.list("data/"))
    # Change a few hundred bytes in two hot regions and append a little.
    day2 = bytearray(day1)
    day2[MiB : MiB + 200] = b"X" * 200
    day2[5 * MiB : 5 * MiB + 100] = b"Y" * 100
    day2 += text_like(64 * 1024, seed=3)
    snap = backup_bytes(repo, bytes(day2))
    added = sum(i.size for i in repo.store.list("data/")) - packs_before
    assert added < 0.05 * len(day2) * 0.5  # well under 5% of the (compressed) input
    assert _restore(repo, snap) == bytes(day2)


def test_identical_chunks_within_one_stream_are_stored_once() -> None:
    repo = make_repo(chunk_avg=16 * 1024, chunk_min=4 * 1024, chunk_max=64 * 1024)
    block = os.urandom(256 * 1024)
    snap = backup_bytes(repo, block * 8)
    stored = sum(i.size for i in repo.store.list("data/"))
    assert stored < 2 * len(block)
    assert _restore(repo, snap) == block * 8


class _Generated(io.RawIOBase):
    """A large stream that exists nowhere in full: memory must stay bounded."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = text_like(MiB, seed=9)
        self.counter = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buf), self.left, MiB)
        if n <= 0:
            return 0
        self.counter += 1
        chunk = (self.counter.to_bytes(8, "little") + self.block)[:n]
        buf[:n] = chunk
        self.left -= n
        return n


def test_memory_stays_bounded_for_a_large_stream() -> None:
    repo = make_repo(pack_size=4 * MiB)
    tracemalloc.start()
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("big", "stream"), _Generated(192 * MiB))  # type: ignore[arg-type]
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    writer.commit(host="t", source_kind="stdin", source_spec={}, tags=[], summary={},
                  version="t")
    # The in-memory store holds the packs (counted by tracemalloc): subtract them.
    stored = sum(len(v) for v in repo.store.objects.values())  # type: ignore[attr-defined]
    assert peak - stored < 96 * MiB, (peak, stored)


def test_finished_packs_of_an_aborted_run_are_reused() -> None:
    repo = make_repo(chunk_avg=64 * 1024, chunk_min=16 * 1024, chunk_max=256 * 1024,
                     pack_size=MiB)
    data = os.urandom(12 * MiB)
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("s", "stream"), io.BytesIO(data))
    writer.abort()  # as if killed before the snapshot: packs and their indexes exist
    assert repo.snapshot_ids() == []
    before = sum(i.size for i in repo.store.list("data/"))
    assert before > 10 * MiB
    snap = backup_bytes(repo, data)
    added = sum(i.size for i in repo.store.list("data/")) - before
    # The pack that was still filling is lost with the process; the rest is reused.
    assert added < 1.1 * MiB
    assert _restore(repo, snap) == data


def test_orphan_packs_stored_but_never_indexed_are_adopted() -> None:
    repo = make_repo(chunk_avg=64 * 1024, chunk_min=16 * 1024, chunk_max=256 * 1024,
                     pack_size=MiB)
    data = os.urandom(6 * MiB)
    backup_bytes(repo, data)
    # Simulate a kill between storing packs and writing their index.
    for info in list(repo.store.list("index/")):
        repo.store.delete(info.key)
    for info in list(repo.store.list("snapshots/")):
        repo.store.delete(info.key)
    index = repo.load_index()
    assert len(index) == 0
    assert adopt_orphan_packs(repo, index) == len(list(repo.store.list("data/")))
    before = sum(i.size for i in repo.store.list("data/"))
    writer = SnapshotWriter(repo, index)
    writer.add_stream(Entry("s", "stream"), io.BytesIO(data))
    writer.commit(host="t", source_kind="stdin", source_spec={}, tags=[], summary={},
                  version="t")
    assert sum(i.size for i in repo.store.list("data/")) - before < 64 * 1024


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_tree_lines_spanning_many_chunks() -> None:
    repo = make_repo(chunk_avg=1024, chunk_min=256, chunk_max=4096)
    writer = SnapshotWriter(repo, repo.load_index())
    files = {f"dir/file-{i:04d}": os.urandom(i * 37) for i in range(300)}
    writer.add_entry(Entry("dir", "dir", 0o755, 1))
    for name, content in files.items():
        writer.add_stream(Entry(name, "file", 0o640, 123), io.BytesIO(content))
    snap = writer.commit(host="t", source_kind="files", source_spec={}, tags=[], summary={},
                         version="t")
    assert len(snap.tree) > 3
    with SnapshotReader(repo) as reader:
        entries = list(reader.entries(snap))
        assert [e.path for e in entries] == ["dir", *files]
        for entry in entries[1:]:
            assert b"".join(reader.blobs(entry.chunks)) == files[entry.path]
            assert entry.mode == 0o640 and entry.size == len(files[entry.path])
