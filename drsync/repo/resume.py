"""What an interrupted backup left behind, made useful or cleared away.

- Packs stored but never indexed, or named only by an index file that
  cannot be read, are *adopted* (``adopt_unindexed``) once verified: by a
  reader in memory, by the next backup in a new index file
  (writer.adopt_orphan_packs). Where the store recorded each object's SHA-256 at upload
  and verified the transfer against it (S3), a pack is verified by that
  digest plus a ranged read of its authenticated header: tens of bytes
  instead of the whole pack cross the link. Elsewhere the pack is read and
  hashed whole. Nothing unverified is adopted.
- Multipart uploads cut off in a process that died belong, under the writer
  lock, to no live writer. Those whose bytes the store kept locally (the S3
  spool) are finished, sending only the missing parts, and become orphan
  packs to adopt; the rest are aborted. On a store that cannot list them
  (a minimal S3 server), there is nothing to do: the store has warned once.
"""

from __future__ import annotations

from drsync.errors import DrsyncError
from drsync.repo.crypto import MasterKey
from drsync.repo.index import Index, pack_key
from drsync.repo.objects import HEADER_SIZE, TYPE_PACK, FormatError, check_header, object_id
from drsync.repo.pack import BlobEntry, header_length, parse_pack_header, read_pack_header
from drsync.store.base import Store
from drsync.store.capabilities import (
    CapabilityUnavailable,
    ContentDigests,
    PendingUpload,
    PendingUploads,
    ResumableUploads,
    capability,
)

__all__ = ["abort_interrupted_uploads", "adopt_unindexed", "verified_pack_entries"]

_TRAILER = 4


def verified_pack_entries(store: Store, key: MasterKey, name: str, pack_id: str,
                          size: int) -> list[BlobEntry] | None:
    """The pack's blob entries if it is the complete pack its name says, else None."""
    digests = capability(store, ContentDigests)
    try:
        recorded = digests.content_sha256(name) if digests is not None else None
        if recorded is None:
            data = store.get(name)
            if object_id(data) != pack_id:
                return None
            return read_pack_header(key, data)
        if recorded != pack_id or size < HEADER_SIZE + _TRAILER:
            return None
        check_header(store.get(name, 0, HEADER_SIZE), TYPE_PACK)
        length = header_length(store.get(name, size - _TRAILER, _TRAILER))
        if length + _TRAILER + HEADER_SIZE > size:
            return None
        tail = store.get(name, size - _TRAILER - length, length + _TRAILER)
        return parse_pack_header(key, tail, size)
    except (FormatError, DrsyncError):
        return None  # damaged or vanished: left for `check` to report


def adopt_unindexed(store: Store, key: MasterKey, index: Index,
                    present: dict[str, int]) -> list[tuple[str, int, list[BlobEntry]]]:
    """Add to ``index`` every verified pack of ``present`` that no index names.

    Packs an index names with another size, and packs that do not verify, are
    left out (``check`` reports them). The packs adopted are also recorded in
    ``index.adopted``, for a writer to index them; they are returned.
    """
    adopted = []
    for pack_id, size in sorted(present.items()):
        if pack_id in index.packs or pack_id in index.lost_packs:
            continue
        entries = verified_pack_entries(store, key, pack_key(pack_id), pack_id, size)
        if entries is None:
            continue
        index.add_pack(pack_id, size, entries)
        adopted.append((pack_id, size, entries))
    index.adopted += adopted
    return adopted


def abort_interrupted_uploads(store: Store) -> list[PendingUpload]:
    """Finish or abort every unfinished upload; call only while holding the writer lock.
    Returns the uploads aborted."""
    uploads = capability(store, PendingUploads)
    if uploads is None:
        return []
    resumable = capability(store, ResumableUploads)
    try:
        pending = uploads.pending_uploads()
    except CapabilityUnavailable:
        pending = []
    aborted = []
    for upload in pending:
        data = resumable.resume_data(upload) if resumable is not None else None
        if data is not None:
            try:
                store.put(upload.key, data)  # through the wrappers: retried and throttled
                continue
            except DrsyncError:
                pass
        uploads.abort_upload(upload)
        aborted.append(upload)
    if resumable is not None:
        resumable.tidy_spool()
    return aborted
