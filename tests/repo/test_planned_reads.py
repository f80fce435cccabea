"""Restore reads planned per pack: a handful of GETs per pack, not one per blob,
every blob still verified, memory bounded by the reader's window."""

from __future__ import annotations

import hashlib
import io
import os
import pwd
import tracemalloc
from concurrent.futures import Future
from pathlib import Path

import pytest

from drsync.errors import IntegrityError
from drsync.pgrestore import restore_pgdata
from drsync.repo import Entry, Repository, Secret, SnapshotReader, SnapshotWriter
from drsync.repo.index import BlobLocation, pack_key
from drsync.repo.pack import BLOB_TREE
from drsync.repo.reader import coalesce
from drsync.restore import restore_snapshot, write_tree
from drsync.sources import FileTreeTarget, unfinished_restore
from drsync.sources.postgres import PGDATA_PREFIX, RecoveryTarget
from drsync.store import MemoryStore
from drsync.testing import CountingStore, make_repo, text_like

KiB, MiB = 1 << 10, 1 << 20
BLOCK = 32 * KiB


def _pg_like(repo: Repository, prefix: str = "") -> dict[str, bytes]:
    """A base-backup-like tree: relation files cut into 32 KiB blocks, some blocks
    shared (empty pages) across files, directories and a small file."""
    files: dict[str, bytes] = {}
    zero = bytes(BLOCK)
    for n, size in enumerate([3 * MiB, 2 * MiB + 5000, 4 * MiB, 700 * KiB, 1 * MiB]):
        block_data = bytearray(text_like(size // 2, seed=n) + os.urandom(size - size // 2))
        block_data[BLOCK:2 * BLOCK] = zero  # the same empty page in every relation
        files[f"base/16384/{16000 + n}"] = bytes(block_data)
    files["PG_VERSION"] = b"15\n"
    writer = SnapshotWriter(repo, repo.load_index())
    root = f"{prefix}/" if prefix else ""
    if prefix:
        writer.add_entry(Entry(prefix, "dir", mode=0o700))
    for d in ("base", "base/16384"):
        writer.add_entry(Entry(root + d, "dir", mode=0o700))
    for path, data in files.items():
        writer.add_stream(Entry(root + path, "file", mode=0o600, size=len(data)),
                          io.BytesIO(data), fixed_size=BLOCK)
    writer.commit(host="t", source_kind="pg_base" if prefix else "files", source_spec={},
                  tags=[], summary={}, version="t")
    return files


def _counting_repo(connections: int = 4) -> tuple[Repository, CountingStore]:
    store = CountingStore(MemoryStore(), connections=connections)
    make_repo(store, chunk_avg=64 * KiB, chunk_min=16 * KiB, chunk_max=256 * KiB,
              pack_size=MiB)
    return Repository.open(store, Secret(passphrase="test passphrase")), store


def _read_back(root: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    return {path: (root / path).read_bytes() for path in files}


def test_a_pg_base_like_restore_makes_a_handful_of_gets_per_pack(tmp_path: Path) -> None:
    repo, store = _counting_repo()
    files = _pg_like(repo)
    blobs = sum(-(-len(d) // BLOCK) for d in files.values())
    store.gets.clear()
    result = restore_snapshot(repo, "latest", target=tmp_path / "out")
    assert _read_back(tmp_path / "out", files) == files
    assert result.bytes_written == sum(len(d) for d in files.values())
    per_pack = store.data_gets()
    packs = len(list(store.list("data/")))
    assert packs >= 4 and len(per_pack) == packs
    assert max(per_pack.values()) <= 3, per_pack  # one GET per blob before: ~100 a pack
    assert sum(per_pack.values()) < blobs / 10


def test_a_pgdata_restore_goes_through_the_same_planned_reads(tmp_path: Path) -> None:
    repo, store = _counting_repo()
    files = _pg_like(repo, prefix=PGDATA_PREFIX)
    pgdata = tmp_path / "pg"
    pgdata.mkdir(mode=0o700)
    if os.geteuid() == 0:  # root cannot own a cluster: give it to postgres, as an operator would
        user = pwd.getpwnam("postgres")
        os.chown(pgdata, user.pw_uid, user.pw_gid)
    store.gets.clear()
    result = restore_pgdata(repo, "latest", pgdata, target=RecoveryTarget(),
                            restore_command="true %f %p")
    assert _read_back(tmp_path / "pg", files) == files
    assert result.bytes_written == sum(len(d) for d in files.values())
    assert max(store.data_gets().values()) <= 3


def test_a_small_window_keeps_memory_bounded_and_the_bytes_right() -> None:
    """A window smaller than a pack splits the pack's reads, in order, still verified,
    and what the reader holds stays near the window, not the stream."""
    repo, store = _counting_repo(connections=2)
    data = text_like(12 * MiB, seed=7)
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("s", "stream"), io.BytesIO(data), fixed_size=BLOCK)
    snap = writer.commit(host="t", source_kind="stdin", source_spec={}, tags=[], summary={},
                         version="t")
    digest = hashlib.sha256()
    with SnapshotReader(repo, window=MiB) as reader:
        (entry,) = list(reader.entries(snap))
        store.gets.clear()
        tracemalloc.start()
        base, _peak = tracemalloc.get_traced_memory()
        for block in reader.blobs(entry.chunks):
            digest.update(block)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert reader.stats.blobs == len(entry.chunks) + len(snap.tree)
    assert digest.digest() == hashlib.sha256(data).digest()
    assert peak - base < 6 * MiB, peak - base
    gets = sum(store.data_gets().values())
    assert len(store.data_gets()) < gets < len(entry.chunks) / 4


def test_a_byte_flipped_in_transit_is_read_again_not_written(tmp_path: Path) -> None:
    repo, store = _counting_repo()
    files = _pg_like(repo)
    store.corrupt_first = {info.key for info in store.list("data/")}
    restore_snapshot(repo, "latest", target=tmp_path / "out")
    assert _read_back(tmp_path / "out", files) == files
    assert not store.corrupt_first  # every pack's first read was damaged, and recovered


def test_a_damaged_pack_fails_the_restore_naming_the_object(tmp_path: Path) -> None:
    repo, store = _counting_repo()
    _pg_like(repo)
    key = sorted(info.key for info in store.list("data/"))[0]
    inner = store.inner
    assert isinstance(inner, MemoryStore)
    packed = bytearray(inner.objects[key])
    packed[100] ^= 1
    inner.objects[key] = bytes(packed)
    with pytest.raises(IntegrityError, match=key):
        restore_snapshot(repo, "latest", target=tmp_path / "out")


def _locs(*spans: tuple[int, int]) -> list[tuple[bytes, BlobLocation, Future[bytes]]]:
    return [(bytes([i]), BlobLocation("p" * 64, 0, off, n, n), Future())
            for i, (off, n) in enumerate(spans)]


def test_ranges_coalesce_when_close_and_split_at_large_gaps() -> None:
    # Mostly needed: one range over the span, gaps and all.
    (one,) = coalesce(_locs((0, 100), (150, 100), (3 * MiB, 4 * MiB)))
    assert (one.start, one.end) == (0, 7 * MiB)
    # Sparse: split where the gap exceeds the limit, never fetching a large hole.
    ranges = coalesce(_locs((5 * MiB, 10), (0, 10), (100, 10), (2 * MiB, 10)), gap=MiB)
    assert [(r.start, r.end) for r in ranges] == [(0, 110), (2 * MiB, 2 * MiB + 10),
                                                  (5 * MiB, 5 * MiB + 10)]
    assert sum(len(r.blobs) for r in ranges) == 4


def test_many_tiny_files_restore_within_a_low_descriptor_limit(tmp_path: Path) -> None:
    """A thousand files fit one window; the workers write them with a bounded number
    open at once (two descriptors each), so a low RLIMIT_NOFILE still restores them."""
    import resource

    repo, _store = _counting_repo()
    files = {f"d{n % 7}/f{n:04d}": text_like(50 + n % 300, seed=n) for n in range(1000)}
    writer = SnapshotWriter(repo, repo.load_index())
    for d in sorted({path.split("/")[0] for path in files}):
        writer.add_entry(Entry(d, "dir", mode=0o755))
    for path, data in files.items():
        writer.add_stream(Entry(path, "file", mode=0o640, size=len(data)), io.BytesIO(data))
    writer.commit(host="t", source_kind="files", source_spec={}, tags=[], summary={},
                  version="t")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 600), hard))
    try:
        result = restore_snapshot(repo, "latest", target=tmp_path / "out")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert _read_back(tmp_path / "out", files) == files
    assert result.files_written == 1000
    assert {(tmp_path / "out" / p).stat().st_mode & 0o777 for p in files} == {0o640}
    assert not list((tmp_path / "out").rglob("*.drsync-tmp"))


def test_a_window_smaller_than_a_pack_writes_every_file_right(tmp_path: Path) -> None:
    """The writing workers refill the plan many times (a MiB window), blocks shared by
    several files are fetched once a window and written to each."""
    repo, _store = _counting_repo(connections=2)
    files = _pg_like(repo)
    snap = repo.find_snapshot("latest")
    progress: list[int] = []
    with SnapshotReader(repo, window=MiB) as reader, FileTreeTarget(
            tmp_path / "out", snapshot=snap.short_id) as tree:
        done = write_tree(reader, snap, tree, progress=progress.append)
    assert _read_back(tmp_path / "out", files) == files
    assert done.bytes_written == sum(progress) == sum(len(d) for d in files.values())
    assert unfinished_restore(tmp_path / "out") is None  # finished: the mark is gone


def test_a_damaged_blob_mid_tree_leaves_the_mark_and_no_temporary(tmp_path: Path) -> None:
    """A blob failing verification stops the workers; no temporary is left, no file
    stands under its name unless every chunk of it verified, and the mark stays for a
    resume."""
    repo, store = _counting_repo()
    files = _pg_like(repo)
    # A pack of file data only: a damaged tree fails the restore before its first byte,
    # with nothing written and no mark (a fresh-clone CI run once drew the tree's pack).
    trees = {pack_key(loc.pack_id) for _id, loc in repo.load_index().items()
             if loc.blob_type == BLOB_TREE}
    key = sorted(info.key for info in store.list("data/") if info.key not in trees)[-1]
    inner = store.inner
    assert isinstance(inner, MemoryStore)
    packed = bytearray(inner.objects[key])
    packed[len(packed) // 2] ^= 1
    inner.objects[key] = bytes(packed)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match=key):
        restore_snapshot(repo, "latest", target=out)
    assert not list(out.rglob("*.drsync-tmp"))
    for path, data in files.items():
        if (out / path).exists():
            assert (out / path).read_bytes() == data
    assert unfinished_restore(out) is not None
    inner.objects[key] = bytes(packed[:len(packed) // 2] + bytes([packed[len(packed) // 2] ^ 1])
                               + packed[len(packed) // 2 + 1:])
    result = restore_snapshot(repo, "latest", target=out)  # resumed as a delta
    assert result.resumed and _read_back(out, files) == files
