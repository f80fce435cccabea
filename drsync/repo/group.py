"""Blob groups: neighbouring chunks of a block-structured file sealed as one payload.

A PostgreSQL or SQLite file is cut every 32 KiB (a PostgreSQL file of 16 MiB or more
every 64 KiB) so that a changed page changes one chunk (drsync.sources.blocks,
drsync.sources.postgres.physical), but zstd on 32 KiB alone stores about a quarter more
than on the whole file, and every chunk costs a compression and a seal. The writer
therefore concatenates the new chunks of one such file, in file order, up to
``GROUP_TARGET`` bytes (from at most ``GROUP_SPAN`` bytes of the file), and
compresses and seals them once. Each member keeps its
own id (the keyed hash of its own plaintext) and its own pack header and index
entry, so dedup, trees and snapshots do not change: the next backup after 1% of the
pages changed still stores only the changed chunks (grouped with each other).

The seal of a group binds ``group_binding``: a keyed hash of its member ids in
order, so a group moved under other entries, or its entries reordered, fails
authentication. Opening a group checks the plaintext's length against the sum of
the members' and every member's id against its slice (``open_group``): nothing
unverified is handed out. See docs/FORMAT.md §5.
"""

from __future__ import annotations

from collections.abc import Sequence

import blake3

from drsync.repo.crypto import MasterKey, SealError, compress, decompress

__all__ = ["GROUP_SPAN", "GROUP_TARGET", "Group", "group_binding", "member_views", "open_group",
           "open_group_views", "seal_group", "seal_group_plain", "split_group", "unseal_group"]

# Plaintext bytes a group is closed at. Measured by bench/group_bench.py (stored bytes
# against whole-file zstd-3): a pgbench scale-20 base backup 1.145x with chunks alone,
# 0.985x in 128 KiB groups, 0.977x in 256 KiB, 0.932x in 512 KiB; the demo's 50 MB
# SQLite database 1.242x, 1.166x, 1.103x, 1.084x. Larger groups gain little more and
# make a lone member's read, and prune's rewrite of a group with dead members, cost more.
# 512 KiB, because beside pgBackRest (make bench-pg, scale 50) 256 KiB still stored 1.07x
# its bytes: a lone member's read then decompresses at most 512 KiB, well under the 4 MiB
# a content-defined chunk may be; 1 MiB gained nothing more on pgbench (0.933x).
GROUP_TARGET = 512 * 1024
# Most bytes of a file a group's members may span. A restore plans reads over a window
# of at least 32 MiB of plaintext, refilled at half (drsync.repo.reader): a group whose
# members lie within 16 MiB of each other is opened at most twice by one restore, where
# one of a sparse change (a page in every 100 MiB) could be opened once per member.
GROUP_SPAN = 16 << 20
_CONTEXT = b"drsync blob group v1\x00"


class Group:
    """The members of one stored group, in order: ids and plaintext lengths. Shared by
    the index locations of all of them."""

    __slots__ = ("ids", "lengths")

    def __init__(self, ids: Sequence[bytes], lengths: Sequence[int]) -> None:
        self.ids = tuple(ids)
        self.lengths = tuple(lengths)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def raw_length(self) -> int:
        return sum(self.lengths)

    def inner_offset(self, member: int) -> int:
        return sum(self.lengths[:member])


def group_binding(key: MasterKey, ids: Sequence[bytes]) -> bytes:
    """The 32 bytes a group's seal binds: keyed BLAKE3 over a context and the ids."""
    hasher = blake3.blake3(_CONTEXT, key=key.raw[32:], max_threads=1)
    for blob_id in ids:
        hasher.update(blob_id)
    return hasher.digest()


def seal_group(key: MasterKey, members: Sequence[tuple[bytes, bytes | memoryview]],
               level: int) -> bytes:
    """Compress and seal the plaintexts of ``members`` ((id, plaintext), in order)."""
    return seal_group_plain(key, [blob_id for blob_id, _ in members],
                            b"".join(data for _id, data in members), level)


def seal_group_plain(key: MasterKey, ids: Sequence[bytes], plain: bytes, level: int) -> bytes:
    """``seal_group`` of members given as their ids and their plaintexts concatenated."""
    codec, payload = compress(plain, level)
    return key.seal(payload, codec, group_binding(key, ids))


def unseal_group(key: MasterKey, group: Group, sealed: bytes | memoryview) -> tuple[int, bytes]:
    """The authenticated (codec, payload) of a group, still compressed."""
    return key.unseal(sealed, group_binding(key, group.ids))


def open_group(key: MasterKey, group: Group,
               sealed: bytes | memoryview) -> list[tuple[bytes, bytes]]:
    """Every member's verified plaintext, ``(id, plaintext)`` in order; SealError when
    the seal, the length or any member's id does not hold."""
    codec, payload = unseal_group(key, group, sealed)
    return split_group(key, group, decompress(codec, payload, group.raw_length))


def open_group_views(key: MasterKey, group: Group,
                     sealed: bytes | memoryview) -> list[tuple[bytes, memoryview]]:
    """``open_group``, each member a view of the group's plaintext (``member_views``)."""
    codec, payload = unseal_group(key, group, sealed)
    return member_views(key, group, decompress(codec, payload, group.raw_length))


def split_group(key: MasterKey, group: Group, plain: bytes) -> list[tuple[bytes, bytes]]:
    return [(blob_id, bytes(data)) for blob_id, data in member_views(key, group, plain)]


def member_views(key: MasterKey, group: Group, plain: bytes) -> list[tuple[bytes, memoryview]]:
    """Each member of a group's plaintext as a view of ``plain``, checked against its id
    first. A restore writes each member and drops it: views spare it a copy of every
    byte (a view keeps the whole group's plaintext alive while it is held)."""
    if len(plain) != group.raw_length:
        raise SealError(f"group length {len(plain)} differs from index ({group.raw_length})")
    view = memoryview(plain).toreadonly()
    out = []
    at = 0
    for blob_id, length in zip(group.ids, group.lengths, strict=True):
        data = view[at:at + length]
        if key.chunk_id(data) != blob_id:
            raise SealError(f"member {blob_id.hex()[:16]} at {at} does not match its id")
        out.append((blob_id, data))
        at += length
    return out
