"""The index: where every blob lives (pack, offset, length).

Index files are sealed documents ``index/<sha256>`` listing packs and their
blobs. A backup writes one every few packs, after those packs are stored, so
an interrupted run's finished packs are found and reused by the next run.
The in-memory ``Index`` is the union of all index files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from drsync.repo.pack import BlobEntry

__all__ = ["BlobLocation", "Index", "index_document"]


@dataclass(frozen=True)
class BlobLocation:
    pack_id: str
    blob_type: int
    offset: int
    length: int
    raw_length: int


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

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)

    def get(self, blob_id: bytes) -> BlobLocation | None:
        return self._blobs.get(blob_id)

    def items(self) -> Iterator[tuple[bytes, BlobLocation]]:
        return iter(self._blobs.items())

    def add_pack(self, pack_id: str, size: int, entries: Iterable[BlobEntry]) -> None:
        self.packs[pack_id] = size
        for e in entries:
            self._blobs.setdefault(
                e.blob_id, BlobLocation(pack_id, e.blob_type, e.offset, e.length, e.raw_length)
            )

    def merge_document(self, doc: dict[str, Any]) -> None:
        """Add an index file's content; raise ValueError when it is malformed."""
        for pack in doc["packs"]:
            pack_id = str(pack["id"])
            self.packs[pack_id] = int(pack["size"])
            for blob_hex, blob_type, offset, length, raw_length in pack["blobs"]:
                blob_id = bytes.fromhex(blob_hex)
                if len(blob_id) != 32:
                    raise ValueError(f"blob id {blob_hex!r} is not 32 bytes")
                self._blobs.setdefault(
                    blob_id,
                    BlobLocation(pack_id, int(blob_type), int(offset), int(length),
                                 int(raw_length)),
                )
