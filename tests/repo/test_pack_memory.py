"""A pack being built lives in a temporary file: only the finished pack is in memory."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

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
