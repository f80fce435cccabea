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


def _grouped_pack(key: MasterKey) -> tuple[PackBuilder, list[bytes]]:
    """A pack like a base backup's: 40 groups of 8 members, and one single blob."""
    from drsync.repo.group import seal_group

    builder = PackBuilder(key)
    chunks = [os.urandom(64) * 64 for _ in range(321)]
    for g in range(40):
        pairs = [(key.chunk_id(c), c) for c in chunks[8 * g:8 * g + 8]]
        builder.add_group([(cid, len(c)) for cid, c in pairs], seal_group(key, pairs, 3))
    cid = key.chunk_id(chunks[-1])
    builder.add(BLOB_DATA, cid, key.seal_chunk(chunks[-1], cid, 3), len(chunks[-1]))
    return builder, chunks


def test_pack_headers_are_compressed_and_older_raw_headers_still_read() -> None:
    from drsync.repo.objects import TYPE_PACK_HEADER, header

    builder, _chunks = _grouped_pack(KEY)
    entries = list(builder.entries)
    _pack_id, pack = builder.finish()
    assert read_pack_header(KEY, pack) == entries
    length = int.from_bytes(pack[-4:], "little")
    sealed = pack[-4 - length:-4]
    assert sealed[0] == CODEC_ZSTD
    assert length < 36 * len(entries)  # of 45 bytes an entry raw: a group repeats its offset
    # A drsync from before, which unseals a header under DRSY H 01 and ignores its
    # codec, fails to authenticate this one: a damaged pack, not garbage entries.
    with pytest.raises(SealError):
        KEY.unseal(sealed, header(TYPE_PACK_HEADER))
    # A pack of such a drsync: the same entries, raw, under DRSY H 01.
    table = b"".join(bytes([e.blob_type]) + e.blob_id + e.offset.to_bytes(4, "little")
                     + e.length.to_bytes(4, "little") + e.raw_length.to_bytes(4, "little")
                     for e in entries)
    old = KEY.seal(table, CODEC_RAW, header(TYPE_PACK_HEADER))
    old_pack = pack[:-4 - length] + old + len(old).to_bytes(4, "little")
    assert read_pack_header(KEY, old_pack) == entries
    # A header whose bytes changed is refused under either binding.
    flipped = bytearray(pack)
    flipped[-10] ^= 1
    with pytest.raises(FormatError, match="pack header"):
        read_pack_header(KEY, bytes(flipped))


def test_a_repository_with_old_raw_pack_headers_is_adopted_checked_and_read(
        tmp_path: object) -> None:
    """Packs written before headers were compressed: rebuilt into an index from their
    headers alone (an interrupted run's orphans), checked, and their blobs read."""
    from drsync.repo import Repository, Secret
    from drsync.repo.check import check_repository
    from drsync.repo.index import pack_key
    from drsync.repo.objects import TYPE_PACK_HEADER, header, object_id
    from drsync.repo.writer import adopt_orphan_packs
    from drsync.store import MemoryStore
    from drsync.testing import make_repository

    store = MemoryStore()
    make_repository(store, "pw")
    repo = Repository.open(store, Secret(passphrase="pw"))
    builder, chunks = _grouped_pack(repo.key)
    entries = list(builder.entries)
    _pack_id, pack = builder.finish()
    length = int.from_bytes(pack[-4:], "little")
    table = b"".join(bytes([e.blob_type]) + e.blob_id + e.offset.to_bytes(4, "little")
                     + e.length.to_bytes(4, "little") + e.raw_length.to_bytes(4, "little")
                     for e in entries)
    old = repo.key.seal(table, CODEC_RAW, header(TYPE_PACK_HEADER))
    old_pack = pack[:-4 - length] + old + len(old).to_bytes(4, "little")
    store.put(pack_key(object_id(old_pack)), old_pack)
    index = repo.load_index()
    assert adopt_orphan_packs(repo, index) == 1
    index = repo.load_index()
    for data in chunks:
        loc = index.get(repo.key.chunk_id(data))
        assert loc is not None and repo.read_blob(repo.key.chunk_id(data), loc) == data
    assert check_repository(repo, read_data=True).errors == []
