"""The index: where every blob lives (pack, offset, length).

Index files are sealed documents ``index/<sha256>`` listing packs and their
blobs. A backup writes one every few packs, after those packs are stored, so
an interrupted run's finished packs are found and reused by the next run.
The in-memory ``Index`` is the union of all index files, less what a reader
must not trust: given the packs the store holds (``present``: one listing of
``data/`` per run), an index entry whose pack is missing or has another size
is set aside as *lost*, so a backup stores those chunks again and a restore
names the missing pack instead of reading it. Index files that cannot be read
are *skipped* (recorded, never fatal); packs no readable index names can be
*adopted* from their authenticated headers (drsync.repo.resume).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from drsync.repo.group import Group
from drsync.repo.pack import BLOB_GROUP, BlobEntry, stored_ranges

__all__ = ["BlobLocation", "Index", "MemberLocation", "index_document", "index_packs", "locations"]


@dataclass(frozen=True)
class BlobLocation:
    """Where a blob's stored range is: ``offset`` and ``length`` in the pack."""
    pack_id: str
    blob_type: int
    offset: int
    length: int
    raw_length: int

    @property
    def group(self) -> Group | None:
        """The group the blob is a member of (drsync.repo.group), or None."""
        return None

    @property
    def member(self) -> int:
        """The blob's place among its group's members (0 for a single blob)."""
        return 0

    @property
    def inner_offset(self) -> int:
        """Where the blob's plaintext starts in its stored range's plaintext."""
        group = self.group
        return 0 if group is None else group.inner_offset(self.member)


@dataclass(frozen=True)
class MemberLocation(BlobLocation):
    """The location of a group member: its group's stored range, the group (shared by
    all its members) and its place in it. A subclass, so that the index of a
    repository without groups (a million locations in memory) pays nothing for them."""
    in_group: Group
    place: int

    @property
    def group(self) -> Group:
        return self.in_group

    @property
    def member(self) -> int:
        return self.place


def locations(pack_id: str, entries: list[BlobEntry]) -> Iterator[tuple[bytes, BlobLocation]]:
    """Each blob of a pack and its location, groups resolved; ValueError when the entries
    break the rules of stored ranges (drsync.repo.pack.stored_ranges)."""
    if all(e.blob_type < BLOB_GROUP for e in entries):  # no group: the index load's hot path
        for e in entries:
            yield e.blob_id, BlobLocation(pack_id, e.blob_type, e.offset, e.length, e.raw_length)
        return
    for members in stored_ranges(entries):
        first = members[0]
        if len(members) == 1 and first.blob_type != BLOB_GROUP:
            yield first.blob_id, BlobLocation(pack_id, first.blob_type, first.offset,
                                              first.length, first.raw_length)
            continue
        group = Group([e.blob_id for e in members], [e.raw_length for e in members])
        for n, e in enumerate(members):
            yield e.blob_id, MemberLocation(pack_id, e.blob_type, e.offset, e.length,
                                            e.raw_length, group, n)


def pack_key(pack_id: str) -> str:
    return f"data/{pack_id[:2]}/{pack_id}"


def index_document(packs: Iterable[tuple[str, int, list[BlobEntry]]]) -> dict[str, Any]:
    """The index file for ``(pack id, pack size, blobs)`` triples."""
    return {
        "packs": [
            {
                "id": pack_id,
                "size": size,
                "blobs": [
                    [e.blob_id.hex(), e.blob_type, e.offset, e.length, e.raw_length]
                    for e in entries
                ],
            }
            for pack_id, size, entries in packs
        ]
    }


class Index:
    def __init__(self) -> None:
        self._blobs: dict[bytes, BlobLocation] = {}
        self.packs: dict[str, int] = {}  # pack id -> size in bytes
        self.present: dict[str, int] | None = None  # the data/ listing merged against
        self.lost_packs: dict[str, str] = {}  # pack id named by an index -> why it is unusable
        self._lost: dict[bytes, BlobLocation] = {}  # blobs named only in lost packs
        self._lost_in: dict[bytes, list[str]] = {}  # every lost pack an index names one in
        self.skipped: dict[str, str] = {}  # index object name -> why it was not read
        self.names: list[str] = []  # the index files listed when it was loaded
        self.adopted: list[tuple[str, int, list[BlobEntry]]] = []  # indexed from headers

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)

    def holds_none(self, blob_ids: Iterable[bytes]) -> bool:
        """No blob of ``blob_ids`` is indexed (one set operation, for a run of ids)."""
        return self._blobs.keys().isdisjoint(blob_ids)

    def get(self, blob_id: bytes) -> BlobLocation | None:
        return self._blobs.get(blob_id)

    def items(self) -> Iterator[tuple[bytes, BlobLocation]]:
        return iter(self._blobs.items())

    def lost(self, blob_id: bytes) -> BlobLocation | None:
        """Where a blob the index names, but no present pack holds, was."""
        return None if blob_id in self._blobs else self._lost.get(blob_id)

    def lost_in(self, blob_id: bytes) -> list[str]:
        """Every lost pack an index file names the blob in (an old index file may still
        name a pack a repair took out; another names the one it was lost from)."""
        return [] if blob_id in self._blobs else self._lost_in.get(blob_id, [])

    def add_pack(self, pack_id: str, size: int, entries: Iterable[BlobEntry]) -> None:
        """Add a pack's blobs; ValueError (and nothing added) when its entries break the
        rules of stored ranges."""
        located = list(locations(pack_id, list(entries)))
        self.packs[pack_id] = size
        for blob_id, loc in located:
            self._blobs.setdefault(blob_id, loc)

    def merge_document(self, doc: Any, present: Mapping[str, int] | None = None) -> None:
        """Add an index file's content; ValueError (and nothing added) when it is malformed.
        With ``present`` (pack id -> stored size), a pack that is not there with the size
        the index gives is set aside as lost."""
        records = [(pack_id, size, list(locations(pack_id, list(entries))))
                   for pack_id, size, entries in _parse(doc)]
        for pack_id, size, located in records:
            why = None if present is None else _unusable(pack_id, size, present)
            if why is not None:
                self.lost_packs.setdefault(pack_id, why)
                for blob_id, loc in located:
                    self._lost.setdefault(blob_id, loc)
                    packs = self._lost_in.setdefault(blob_id, [])
                    if pack_id not in packs:
                        packs.append(pack_id)
                continue
            self.lost_packs.pop(pack_id, None)
            self.packs[pack_id] = size
            for blob_id, loc in located:
                self._blobs.setdefault(blob_id, loc)


def index_packs(doc: Any) -> list[tuple[str, int, list[BlobEntry]]]:
    """An index file's (pack id, size, blobs); ValueError when it is malformed."""
    packs = [(pack_id, size, list(entries)) for pack_id, size, entries in _parse(doc)]
    for _pack_id, _size, entries in packs:
        if not all(e.blob_type < BLOB_GROUP for e in entries):
            for _range in stored_ranges(entries):
                pass
    return packs


def _unusable(pack_id: str, size: int, present: Mapping[str, int]) -> str | None:
    stored = present.get(pack_id)
    if stored is None:
        return "missing"
    if stored != size:
        return f"truncated or extended: {stored} bytes, the index says {size}"
    return None


_HEX64 = re.compile("[0-9a-f]{64}")
_U32 = (1 << 32) - 1  # offsets and lengths inside a pack, as its header stores them


def _parse(doc: Any) -> Iterator[tuple[str, int, Iterator[BlobEntry]]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("packs"), list):
        raise ValueError("an index is an object with a list 'packs'")
    for i, pack in enumerate(doc["packs"]):
        if not isinstance(pack, dict):
            raise ValueError(f"packs[{i}] is not an object")
        pack_id, size, blobs = pack.get("id"), pack.get("size"), pack.get("blobs")
        if not isinstance(pack_id, str) or not _HEX64.fullmatch(pack_id):
            raise ValueError(f"packs[{i}].id {pack_id!r} is not a pack id")
        if type(size) is not int or size < 0:
            raise ValueError(f"pack {pack_id}: size {size!r} is not a byte count")
        if not isinstance(blobs, list):
            raise ValueError(f"pack {pack_id}: blobs is not a list")
        yield pack_id, size, (_blob(pack_id, blob) for blob in blobs)


def _blob(pack_id: str, blob: Any) -> BlobEntry:
    # The hot loop of every index load (a million blobs at a time in prune): checked with
    # plain comparisons; ``fromhex(...).hex() == text`` holds only for 64 lower-case digits.
    if type(blob) is list and len(blob) == 5:
        hex_id, kind, offset, length, raw = blob
        if (type(hex_id) is str and len(hex_id) == 64 and type(kind) is int
                and type(offset) is int and type(length) is int and type(raw) is int
                and 0 <= kind <= _U32 and 0 <= offset <= _U32 and 0 <= length <= _U32
                and 0 <= raw <= _U32):
            try:
                blob_id = bytes.fromhex(hex_id)
            except ValueError:
                blob_id = b""
            if blob_id.hex() == hex_id:
                return BlobEntry(kind, blob_id, offset, length, raw)
    raise ValueError(f"pack {pack_id}: blob {str(blob)[:80]} is not "
                     "[id, type, offset, length, raw length]")
