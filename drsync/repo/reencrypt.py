"""Re-encryption under the newest master-key generation (``drsync key rotate --reencrypt``),
for a key that must be treated as compromised: every pack and WAL object an older
generation sealed is rewritten, so the old key no longer decrypts file or database content.

Order, under the writer lock (no backup runs meanwhile), for each batch of up to eight
packs sealed by an older generation:

1. read the pack, verify every blob (authentication, length, keyed hash) and reseal its
   compressed payload under the newest generation into a new pack (same blob ids: dedup
   and snapshots are untouched), and store it; a group (drsync.repo.group) is verified
   member by member and resealed whole, bound to the same member ids;
2. write an index naming the new packs;
3. delete the old packs.

Killed at any point, the repository stays consistent: before 2 a new pack is an
unreferenced leftover, between 2 and 3 a blob is in two packs, after 3 an old index
names a missing pack whose blobs every snapshot finds elsewhere. The next run rewrites
what is still old and finishes. Then the index files that name only deleted packs are
removed, and each WAL object of an older generation is replaced by one with the same
clear header (name, content id, size, push time) resealed.

Not rewritten: snapshot manifests and the config (their names are the SHA-256 of their
bytes, and a snapshot id must not change), the ``generations`` documents, and objects
the store retains (Object Lock), which are reported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from drsync.errors import IntegrityError, ObjectExists, ObjectLocked, ObjectNotFound
from drsync.repo.crypto import MasterKey, SealError, decompress
from drsync.repo.group import Group, group_binding, split_group, unseal_group
from drsync.repo.index import Index, index_document, pack_key
from drsync.repo.lock import RepositoryLock
from drsync.repo.objects import HEADER_SIZE, TYPE_INDEX, FormatError, object_id
from drsync.repo.pack import BlobEntry, PackBuilder, read_pack_header, stored_ranges
from drsync.repo.repository import Repository
from drsync.repo.wal import WAL_PREFIX, parse_wal_header

__all__ = ["ReencryptResult", "old_packs", "reencrypt"]

_BATCH = 8  # packs per index file, as the writer does
_GEN_PROBE = 5  # codec byte and generation: enough of a sealed payload to name its generation


@dataclass
class ReencryptResult:
    generation: int
    packs_rewritten: int = 0
    bytes_rewritten: int = 0
    wal_rewritten: int = 0
    indexes_removed: int = 0
    retained: list[str] = field(default_factory=list)  # old objects the store would not delete

    def to_json(self) -> dict[str, object]:
        return {"generation": self.generation, "packs_rewritten": self.packs_rewritten,
                "bytes_rewritten": self.bytes_rewritten, "wal_rewritten": self.wal_rewritten,
                "indexes_removed": self.indexes_removed, "retained": self.retained}


def old_packs(repo: Repository, index: Index) -> dict[str, int]:
    """Pack id -> size of every indexed pack sealed by an older generation: one ranged read
    of five bytes each, right after the pack's object header, where its first sealed
    payload (a blob, or the pack header of an empty pack) begins."""
    found = {}
    for pack_id, size in sorted(index.packs.items()):
        try:
            probe = repo.store.get(pack_key(pack_id), HEADER_SIZE, _GEN_PROBE)
        except ObjectNotFound:
            continue
        if MasterKey.sealed_generation(probe) < repo.key.generation:
            found[pack_id] = size
    return found


def reencrypt(repo: Repository, *, progress: Callable[[int], None] | None = None,
              on_total: Callable[[int], None] | None = None) -> ReencryptResult:
    """Rewrite every pack and WAL object of an older generation (see the module docstring);
    ``on_total`` is told the bytes of old packs, ``progress`` each pack's as it is done."""
    result = ReencryptResult(repo.key.generation)
    with RepositoryLock(repo.store, "key rotate --reencrypt"):
        pending = old_packs(repo, repo.load_index())
        if on_total is not None:
            on_total(sum(pending.values()))
        ids = sorted(pending)
        for start in range(0, len(ids), _BATCH):
            batch = ids[start:start + _BATCH]
            written = [_reseal_pack(repo, pack_id) for pack_id in batch]
            repo.save_document(TYPE_INDEX, "index", index_document(written), if_absent=True)
            for pack_id in batch:
                _delete(repo, pack_key(pack_id), result)
                result.packs_rewritten += 1
                result.bytes_rewritten += pending[pack_id]
                if progress is not None:
                    progress(pending[pack_id])
        _drop_dead_indexes(repo, result)
        _reseal_wal(repo, result)
    return result


def _reseal_pack(repo: Repository, pack_id: str) -> tuple[str, int, list[BlobEntry]]:
    name = pack_key(pack_id)
    try:
        data = repo.store.get(name)
    except ObjectNotFound:
        raise repo.missing(name, "the index") from None
    if object_id(data) != pack_id:
        raise IntegrityError(f"{repo.url}: object {name}: content does not match its name")
    try:
        entries = read_pack_header(repo.key, data)
    except FormatError as err:
        raise IntegrityError(f"{repo.url}: object {name}: {err}") from None
    key = repo.key
    builder = PackBuilder(key)
    for members in stored_ranges(entries):
        e = members[0]
        sealed = data[e.offset:e.offset + e.length]
        try:
            if len(members) == 1:
                codec, payload = key.unseal(sealed, e.blob_id)
                plain = decompress(codec, payload, e.raw_length)
                if len(plain) != e.raw_length or key.chunk_id(plain) != e.blob_id:
                    raise SealError("plaintext does not match its id and length")
                builder.add(e.blob_type, e.blob_id, key.seal(payload, codec, e.blob_id),
                            e.raw_length)
                continue
            group = Group([m.blob_id for m in members], [m.raw_length for m in members])
            codec, payload = unseal_group(key, group, sealed)
            split_group(key, group, decompress(codec, payload, group.raw_length))
            builder.add_group([(m.blob_id, m.raw_length) for m in members],
                              key.seal(payload, codec, group_binding(key, group.ids)))
        except SealError as err:
            what = f"blob {e.blob_id.hex()[:16]}" if len(members) == 1 else (
                f"group of {len(members)} blobs with {e.blob_id.hex()[:16]}")
            raise IntegrityError(f"{repo.url}: object {name} offset {e.offset}: "
                                 f"{what}: {err}") from None
    new_id, new_data = builder.finish()
    with contextlib.suppress(ObjectExists):
        repo.store.put(pack_key(new_id), new_data, if_absent=True)
    return new_id, len(new_data), builder.entries


def _delete(repo: Repository, name: str, result: ReencryptResult) -> None:
    try:
        repo.store.delete(name)
    except ObjectLocked:
        result.retained.append(name)
    except ObjectNotFound:
        pass


def _drop_dead_indexes(repo: Repository, result: ReencryptResult) -> None:
    """Remove index files every pack of which is gone while each of their blobs is found in
    a present pack: they add nothing but notes about missing packs."""
    index = repo.load_index()
    present = index.present or {}
    for name in repo.index_names():
        try:
            doc = repo.load_document(TYPE_INDEX, name)
        except IntegrityError:
            continue  # unreadable: load_index warned; check reports it
        packs = doc.get("packs") if isinstance(doc, dict) else None
        if not isinstance(packs, list) or not packs:
            continue
        try:
            pack_ids = [p["id"] for p in packs]
            blob_ids = [bytes.fromhex(b[0]) for p in packs for b in p["blobs"]]
        except (KeyError, TypeError, ValueError, IndexError):
            continue
        if any(pid in present for pid in pack_ids) or not all(b in index for b in blob_ids):
            continue
        _delete(repo, name, result)
        result.indexes_removed += 1


def _reseal_wal(repo: Repository, result: ReencryptResult) -> None:
    key = repo.key
    for info in repo.store.list(WAL_PREFIX):
        data = repo.store.get(info.key)
        try:
            head = parse_wal_header(data)
            if MasterKey.sealed_generation(data[head.length:]) >= key.generation:
                continue
            clear = bytes(data[:head.length])
            codec, payload = key.unseal(bytes(data[head.length:]), clear)
            plain = decompress(codec, payload, head.size)
            if len(plain) != head.size or key.chunk_id(plain) != head.content_id:
                raise SealError("content does not match its id and size")
        except (FormatError, SealError) as err:
            raise IntegrityError(f"{repo.url}: object {info.key}: {err}") from None
        try:
            repo.store.put(info.key, clear + key.seal(payload, codec, clear))
        except ObjectLocked:
            result.retained.append(info.key)
            continue
        result.wal_rewritten += 1
