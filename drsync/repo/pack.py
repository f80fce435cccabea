"""Pack files: many sealed blobs in one object, with a sealed header at the end.

Layout: ``DRSY P 1 | blob... | sealed header | u32 header length``. The
header lists each blob's type, id, offset, stored length and plaintext
length, so an index can be rebuilt from the packs alone. It is zstd-compressed
when that is smaller and sealed under ``DRSY H 02``; a pack of an older drsync
has it raw under ``DRSY H 01``, and reads the same (``_open_header``).

A *stored range* is one sealed payload in a pack: a single blob (type data or
tree), or a *group* (type ``BLOB_GROUP``): several chunks of a block-structured
file concatenated, compressed and sealed once (drsync.repo.group). Each member
of a group has its own header entry; the members of one group are consecutive
entries of type ``BLOB_GROUP`` with the same offset and stored length, and a
member's plaintext lies in the group's after the members before it
(``stored_ranges``). See docs/FORMAT.md §5.

A pack being built is written to a file, not held in memory: packs waiting
for an uploader cost a file descriptor each. Held in a ``bytearray``, a 16 MiB
pack was in memory up to three times (the pack growing, its copy as ``bytes``,
the one still being stored). The file is the store's staged object
(drsync.store.capabilities.stage): on a local directory it is written in the
repository and linked into place once its hash is known, so the bytes go
through the page cache once; elsewhere it is an unlinked temporary file
(``TMPDIR``, else /tmp; on a tmpfs its pages are memory again, outside the
process's RSS), read back once and put whole. The id is hashed from a mapping
of the file, not a copy.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import zstandard

from drsync.repo.crypto import CODEC_RAW, CODEC_ZSTD, MasterKey, SealError, compress, decompress
from drsync.repo.objects import (
    HEADER_SIZE,
    MAGIC,
    TYPE_PACK,
    TYPE_PACK_HEADER,
    FormatError,
    check_header,
    header,
)
from drsync.store.capabilities import Staged, stage

__all__ = ["BLOB_DATA", "BLOB_GROUP", "BLOB_TREE", "BlobEntry", "PackBuilder",
           "parse_pack_header", "staged_pack", "stored_ranges", "stored_shares"]

BLOB_DATA = 0
BLOB_TREE = 1
BLOB_GROUP = 2  # a data chunk stored in a group with its neighbours
BLOB_TYPES = (BLOB_DATA, BLOB_TREE, BLOB_GROUP)
_ENTRY = struct.Struct("<B32sIII")  # type, id, offset, length, raw length
_TRAILER = struct.Struct("<I")
# The binding of a header that may be compressed (its codec byte says how). Headers
# were sealed raw under ``DRSY H 01`` before, by drsyncs that ignore the codec byte:
# under its own binding, a compressed header fails to authenticate there (a damaged
# pack, never entries misread) and still opens here. The entries' ids are random, but
# a group's members repeat its offset and lengths: zstd stores 33 bytes of an entry's 45.
_BINDING_COMPRESSED = MAGIC + TYPE_PACK_HEADER + b"\x02"
_BINDING_RAW = header(TYPE_PACK_HEADER)
_HEADER_LEVEL = 3


@dataclass(frozen=True)
class BlobEntry:
    blob_type: int
    blob_id: bytes
    offset: int
    length: int
    raw_length: int


class PackBuilder:
    """Accumulates sealed blobs until the pack reaches its target size.

    ``stage`` makes the staged object the pack is written to (by default an unlinked
    temporary file put whole): ``seal`` then ``commit`` store it without a copy where
    the store can (drsync.store.capabilities.stage); ``finish`` returns the bytes."""

    def __init__(self, key: MasterKey, stage: Callable[[], Staged] | None = None) -> None:
        self._key = key
        self._stage = stage
        self._staged: Staged | None = None  # made by the first blob
        self._size = HEADER_SIZE
        self.entries: list[BlobEntry] = []

    def __len__(self) -> int:
        return self._size

    def _spool(self) -> Staged:
        if self._staged is None:
            self._staged = self._stage() if self._stage is not None else Staged(None)
            self._staged.write(header(TYPE_PACK))
        return self._staged

    def add(self, blob_type: int, blob_id: bytes, sealed: bytes, raw_length: int) -> None:
        self.entries.append(BlobEntry(blob_type, blob_id, self._size, len(sealed), raw_length))
        self._spool().write(sealed)
        self._size += len(sealed)

    def add_group(self, members: list[tuple[bytes, int]], sealed: bytes) -> None:
        """A group (drsync.repo.group): one sealed range, an entry per (id, raw length)
        member in the group's order."""
        if len(members) < 2:
            raise ValueError("a group has at least two members")
        offset = self._size
        self.entries += [BlobEntry(BLOB_GROUP, blob_id, offset, len(sealed), raw_length)
                         for blob_id, raw_length in members]
        self._spool().write(sealed)
        self._size += len(sealed)

    def seal(self) -> tuple[str, int]:
        """Seal the header at the end of the pack; return (pack id, pack size). Nothing
        may be added after it; ``commit`` (or ``close``) follows."""
        table = b"".join(
            _ENTRY.pack(e.blob_type, e.blob_id, e.offset, e.length, e.raw_length)
            for e in self.entries
        )
        codec, payload = compress(table, _HEADER_LEVEL)
        sealed = self._key.seal(payload, codec, _BINDING_COMPRESSED)
        spool = self._spool()
        spool.write(sealed)
        spool.write(_TRAILER.pack(len(sealed)))
        spool.file.flush()
        size = spool.file.tell()
        with mmap.mmap(spool.file.fileno(), size, access=mmap.ACCESS_READ) as mapped:
            pack_id = hashlib.sha256(mapped).hexdigest()  # the id object_id gives its bytes
        self._size = HEADER_SIZE
        return pack_id, size

    def commit(self, key: str) -> None:
        """Store the sealed pack at ``key`` (its staged object's commit)."""
        staged, self._staged = self._staged, None
        if staged is None:
            raise ValueError("commit of a pack that was not sealed")
        staged.commit(key)

    def finish(self) -> tuple[str, bytes]:
        """Seal the header, return (pack id, pack bytes); the staged file is dropped."""
        pack_id, _size = self.seal()
        assert self._staged is not None
        self._staged.file.seek(0)
        data = self._staged.file.read()
        self.close()
        return pack_id, data

    def close(self) -> None:
        """Drop a pack that will not be finished (its staged file goes)."""
        if self._staged is not None:
            self._staged.abort()
        self._staged = None


def staged_pack(key: MasterKey, store: object, pack_size: int) -> PackBuilder:
    """A pack written where ``store`` takes it without a copy (a local directory: in the
    repository under data/, linked into place), else to a temporary file put whole."""
    return PackBuilder(key, lambda: stage(store, "data/", pack_size))


def header_length(tail: bytes) -> int:
    """The sealed header's length, from the pack's last four bytes."""
    if len(tail) < _TRAILER.size:
        raise FormatError(f"pack truncated to {len(tail)} bytes: no header length")
    (length,) = _TRAILER.unpack(tail[-_TRAILER.size :])
    return int(length)


def parse_pack_header(key: MasterKey, data: bytes, pack_size: int) -> list[BlobEntry]:
    """Decode ``data``: the sealed header followed by the 4-byte trailer."""
    length = header_length(data)
    if length + _TRAILER.size > len(data) or length + _TRAILER.size + HEADER_SIZE > pack_size:
        raise FormatError(f"pack header length {length} is impossible")
    sealed = data[-(_TRAILER.size + length) : -_TRAILER.size]
    table = _open_header(key, bytes(sealed))
    if len(table) % _ENTRY.size:
        raise FormatError("pack header has a partial entry")
    limit = pack_size - _TRAILER.size - length
    entries = []
    for values in _ENTRY.iter_unpack(table):
        entry = BlobEntry(*values)
        if entry.offset < HEADER_SIZE or entry.offset + entry.length > limit:
            raise FormatError(f"blob {entry.blob_id.hex()} lies outside the pack")
        entries.append(entry)
    try:
        for _range in stored_ranges(entries):
            pass
    except ValueError as err:
        raise FormatError(f"pack header: {err}") from None
    return entries


def _open_header(key: MasterKey, sealed: bytes) -> bytes:
    """The header's table of entries: compressed or raw under the binding of today's
    headers, else raw under that of older ones."""
    try:
        codec, payload = key.unseal(sealed, _BINDING_COMPRESSED)
    except SealError:
        try:
            return key.unseal(sealed, _BINDING_RAW)[1]
        except SealError as err:
            raise FormatError(f"pack header: {err}") from None
    if codec == CODEC_RAW:
        return payload
    if codec != CODEC_ZSTD:
        raise FormatError(f"pack header: unknown codec {codec}")
    # Bounded by the size its frame declares (drsync writes it; it was authenticated
    # with the rest): never more than the writer put in.
    try:
        size = zstandard.frame_content_size(payload)
    except zstandard.ZstdError:
        size = -1
    if size < 0 or size % _ENTRY.size:
        raise FormatError("pack header: a compressed header without a whole size")
    try:
        table = decompress(codec, payload, size)
    except SealError as err:
        raise FormatError(f"pack header: {err}") from None
    if len(table) != size:
        raise FormatError(f"pack header: {len(table)} bytes, its frame says {size}")
    return table


def stored_ranges(entries: list[BlobEntry]) -> Iterator[list[BlobEntry]]:
    """The entries of each stored range, in header order: ``[entry]`` for a single blob,
    the members in order for a group. ValueError when the entries do not follow the
    rules (an unknown type; a group member apart from its group, or alone; members of
    one group whose stored lengths differ)."""
    run: list[BlobEntry] = []
    seen: set[int] = set()  # offsets of the groups already closed
    for entry in entries:
        if entry.blob_type not in BLOB_TYPES:
            raise ValueError(f"blob {entry.blob_id.hex()[:16]} has unknown type "
                             f"{entry.blob_type}")
        if run and (entry.blob_type != BLOB_GROUP or entry.offset != run[0].offset):
            yield _closed(run, seen)
            run = []
        if entry.blob_type != BLOB_GROUP:
            yield [entry]
            continue
        if run and entry.length != run[0].length:
            raise ValueError(f"group at offset {entry.offset}: members of different lengths")
        run.append(entry)
    if run:
        yield _closed(run, seen)


def stored_shares(rows: list[tuple[int, int, int, int]]) -> list[int]:
    """Each blob's share of the pack's stored bytes, from its ``(type, offset, stored
    length, plaintext length)``: a single blob's stored length, a group member's part of
    its group's, by plaintext length (so a group's shares add up to about its length)."""
    group_raw: dict[int, int] = {}
    for blob_type, offset, _length, raw in rows:
        if blob_type == BLOB_GROUP:
            group_raw[offset] = group_raw.get(offset, 0) + raw
    return [length if blob_type != BLOB_GROUP else length * raw // max(1, group_raw[offset])
            for blob_type, offset, length, raw in rows]


def _closed(run: list[BlobEntry], seen: set[int]) -> list[BlobEntry]:
    offset = run[0].offset
    if offset in seen:
        raise ValueError(f"group at offset {offset}: members not consecutive")
    if len(run) < 2:
        raise ValueError(f"group at offset {offset} has one member")
    seen.add(offset)
    return run


def read_pack_header(key: MasterKey, pack: bytes) -> list[BlobEntry]:
    check_header(pack, TYPE_PACK)
    return parse_pack_header(key, pack, len(pack))
