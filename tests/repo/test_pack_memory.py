"""A pack being built lives in a file, not in memory: a temporary one, or on a local
store the object itself, written once and linked into place."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from drsync.repo.crypto import MasterKey
from drsync.repo.pack import BLOB_DATA, PackBuilder, read_pack_header

KEY = MasterKey(bytes(range(64)))
MiB = 1 << 20


def test_blobs_added_to_a_pack_are_not_held_in_memory() -> None:
    builder = PackBuilder(KEY)
    expected = []
    tracemalloc.start()
    try:
        for _ in range(64):  # 16 MiB of incompressible blobs
            data = os.urandom(256 << 10)
            cid = KEY.chunk_id(data)
            builder.add(BLOB_DATA, cid, KEY.seal_chunk(data, cid, 3), len(data))
            expected.append((cid, data))
            del data
        held, _peak = tracemalloc.get_traced_memory()
        inputs = sum(len(d) for _cid, d in expected)
        assert held - inputs < MiB  # the builder itself holds entries, not the pack
        pack_id, pack = builder.finish()
    finally:
        tracemalloc.stop()
    assert len(pack) > 16 * MiB
    entries = read_pack_header(KEY, pack)
    for entry, (cid, data) in zip(entries, expected, strict=True):
        assert entry.blob_id == cid
        sealed = pack[entry.offset:entry.offset + entry.length]
        assert KEY.unseal_chunk(sealed, cid, len(data)) == data
    assert pack_id == hashlib.sha256(pack).hexdigest()


def test_a_dropped_builder_closes_its_file() -> None:
    builder = PackBuilder(KEY)
    data = b"x" * 1000
    cid = KEY.chunk_id(data)
    builder.add(BLOB_DATA, cid, KEY.seal_chunk(data, cid, 3), len(data))
    before = len(os.listdir("/proc/self/fd"))
    builder.close()
    assert len(os.listdir("/proc/self/fd")) == before - 1


def test_a_backup_into_a_local_directory_writes_each_pack_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No pack goes through ``put`` (a copy of the whole pack) and the bytes written
    to the disk are the packs' and little more: before, each pack was written to a
    temporary file, read back and written again."""
    from drsync.repo import Entry, Repository, SnapshotWriter
    from drsync.repo.check import check_repository
    from drsync.restore import restore_snapshot
    from drsync.store import LocalStore
    from drsync.testing import make_repository

    store = LocalStore(tmp_path / "repo")
    repo: Repository = make_repository(store, "pw")
    puts: list[str] = []
    real_put = store.put

    def put(key: str, data: bytes, **kw: Any) -> None:
        puts.append(key)
        real_put(key, data, **kw)

    monkeypatch.setattr(store, "put", put)
    body = os.urandom(40 * MiB)  # incompressible: three packs
    written = int(Path("/proc/self/io").read_text().split("wchar: ")[1].split()[0])
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("blob.bin", "file", size=len(body)), io.BytesIO(body))
    writer.commit(host="t", source_kind="files", source_spec={}, tags=[], summary={},
                  version="t")
    written = int(Path("/proc/self/io").read_text().split("wchar: ")[1].split()[0]) - written
    packs = sorted((tmp_path / "repo" / "data").rglob("*"))
    packs = [p for p in packs if p.is_file()]
    assert len(packs) >= 3 and not [p for p in puts if p.startswith("data/")]
    stored = sum(p.stat().st_size for p in packs)
    assert stored <= written < stored + 2 * MiB  # once, plus indexes and the snapshot
    for pack in packs:  # each named by the hash of its bytes
        assert hashlib.sha256(pack.read_bytes()).hexdigest() == pack.name
    assert not [p for p in (tmp_path / "repo").rglob(".tmp-*")]
    assert not check_repository(repo, read_data=True).errors
    restore_snapshot(repo, "latest", target=tmp_path / "out")
    assert (tmp_path / "out" / "blob.bin").read_bytes() == body
