"""Round trips of the format's pieces: sealing, packs, indexes, documents."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drsync.repo.crypto import CODEC_RAW, CODEC_ZSTD, MasterKey, SealError, compress
from drsync.repo.index import Index, index_document
from drsync.repo.objects import TYPE_INDEX, TYPE_SNAPSHOT, FormatError, open_document, seal_document
from drsync.repo.pack import BLOB_DATA, BLOB_TREE, PackBuilder, read_pack_header

KEY = MasterKey(bytes(range(64)))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=20000), st.integers(0, 9))
def test_chunk_seal_roundtrip(data: bytes, level: int) -> None:
    cid = KEY.chunk_id(data)
    sealed = KEY.seal_chunk(data, cid, level)
    assert KEY.unseal_chunk(sealed, cid, len(data)) == data


def test_incompressible_chunks_are_stored_raw() -> None:
    noise = os.urandom(4096)
    assert compress(noise, 3)[0] == CODEC_RAW
    assert compress(b"a" * 4096, 3)[0] == CODEC_ZSTD
    sealed = KEY.seal_chunk(noise, KEY.chunk_id(noise), 3)
    assert sealed[0] == CODEC_RAW


def test_chunk_id_is_keyed() -> None:
    other = MasterKey(bytes(range(1, 65)))
    assert KEY.chunk_id(b"x") != other.chunk_id(b"x")
    assert KEY.chunk_id(b"x") == KEY.chunk_id(b"x")


def test_sealed_blob_is_bound_to_its_id_and_codec() -> None:
    data = b"resident registry " * 100
    cid = KEY.chunk_id(data)
    sealed = KEY.seal_chunk(data, cid, 3)
    with pytest.raises(SealError, match="authentication"):
        KEY.unseal_chunk(sealed, KEY.chunk_id(b"other"), len(data))
    flipped_codec = bytes([sealed[0] ^ 1]) + sealed[1:]
    with pytest.raises(SealError, match="authentication"):
        KEY.unseal_chunk(flipped_codec, cid, len(data))
    for position in (1, 20, len(sealed) - 1):
        corrupt = bytearray(sealed)
        corrupt[position] ^= 0x40
        with pytest.raises(SealError):
            KEY.unseal_chunk(bytes(corrupt), cid, len(data))


def test_nonces_are_unique() -> None:
    data = b"same plaintext"
    cid = KEY.chunk_id(data)
    nonces = {KEY.seal_chunk(data, cid, 3)[1:13] for _ in range(200)}
    assert len(nonces) == 200


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=0, max_size=3000), st.sampled_from([0, 1])),
                max_size=20))
def test_pack_and_index_roundtrip(blobs: list[tuple[bytes, int]]) -> None:
    builder = PackBuilder(KEY)
    for data, blob_type in blobs:
        cid = KEY.chunk_id(data)
        builder.add(blob_type, cid, KEY.seal_chunk(data, cid, 3), len(data))
    pack_id, pack = builder.finish()
    entries = read_pack_header(KEY, pack)
    assert entries == builder.entries
    sealed = seal_document(KEY, TYPE_INDEX, index_document([(pack_id, len(pack), entries)]))
    doc = open_document(KEY, TYPE_INDEX, sealed)
    index = Index()
    index.merge_document(doc)
    for data, _blob_type in blobs:
        cid = KEY.chunk_id(data)
        loc = index.get(cid)
        assert loc is not None and loc.pack_id == pack_id
        assert loc.blob_type in (BLOB_DATA, BLOB_TREE)
        assert KEY.unseal_chunk(pack[loc.offset : loc.offset + loc.length], cid, len(data)) == data


def test_documents_are_self_describing_and_typed() -> None:
    sealed = seal_document(KEY, TYPE_SNAPSHOT, {"a": 1})
    assert sealed[:6] == b"DRSY" + TYPE_SNAPSHOT + b"\x01"
    assert open_document(KEY, TYPE_SNAPSHOT, sealed) == {"a": 1}
    with pytest.raises(FormatError, match="expected"):
        open_document(KEY, TYPE_INDEX, sealed)
    future = sealed[:5] + b"\x02" + sealed[6:]
    with pytest.raises(FormatError, match="version 2"):
        open_document(KEY, TYPE_SNAPSHOT, future)
    # The header is authenticated: a forged type byte fails even if the reader expects it.
    forged = sealed[:4] + TYPE_INDEX + sealed[5:]
    with pytest.raises(FormatError, match="authentication"):
        open_document(KEY, TYPE_INDEX, forged)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.binary(min_size=1, max_size=2000), min_size=1, max_size=5,
                         unique=True), max_size=8, unique_by=lambda g: tuple(g)))
def test_packs_with_groups_roundtrip_through_header_and_index(ranges: list[list[bytes]]) -> None:
    """Single blobs and groups in any mix: each member found at its group's range, at the
    inner offset its predecessors' lengths give, and opened verified."""
    from drsync.repo.group import open_group, seal_group

    chunks = [c for r in ranges for c in r]
    if len({KEY.chunk_id(c) for c in chunks}) != len(chunks):
        return  # the same chunk twice: a writer stores it once
    builder = PackBuilder(KEY)
    for members in ranges:
        if len(members) == 1:
            cid = KEY.chunk_id(members[0])
            builder.add(BLOB_DATA, cid, KEY.seal_chunk(members[0], cid, 3), len(members[0]))
        else:
            pairs = [(KEY.chunk_id(c), c) for c in members]
            builder.add_group([(cid, len(c)) for cid, c in pairs], seal_group(KEY, pairs, 3))
    pack_id, pack = builder.finish()
    entries = read_pack_header(KEY, pack)
    index = Index()
    index.merge_document(open_document(KEY, TYPE_INDEX, seal_document(
        KEY, TYPE_INDEX, index_document([(pack_id, len(pack), entries)]))))
    for members in ranges:
        for n, data in enumerate(members):
            loc = index.get(KEY.chunk_id(data))
            assert loc is not None
            sealed = pack[loc.offset:loc.offset + loc.length]
            if loc.group is None:
                assert KEY.unseal_chunk(sealed, KEY.chunk_id(data), len(data)) == data
                continue
            assert loc.member == n and loc.inner_offset == sum(len(c) for c in members[:n])
            assert open_group(KEY, loc.group, sealed)[n] == (KEY.chunk_id(data), data)
