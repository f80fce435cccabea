"""Prune: delete what no snapshot needs, repack what is mostly dead, compact the index.

Under the exclusive writer lock (no backup runs meanwhile), in this order:

1. *Plan* (reads only). List snapshots, index files, packs. Every snapshot
   and every index file must be readable, else prune refuses (it could not
   know what they reference). Walk every snapshot's tree and mark the blobs it
   references; count, per indexed pack, the bytes of live blobs. A pack with
   no live blob is deleted; packs with dead bytes are repacked, most dead
   first, until the dead bytes left are at most ``max_unused`` of the live
   bytes (restic's ``--max-unused``). Packs no index names (an interrupted
   backup's, or an interrupted prune's) are verified and indexed, never
   deleted in the same run: a later prune may.
2. *Repack*: copy each live blob of the packs to repack, still sealed (a
   blob's seal binds its id, not its pack), after checking its
   authentication tag, into new packs. A group (drsync.repo.group) all of
   whose members are live is copied the same way; one with dead members is
   opened, verified, and its live members sealed again (as a group, or one
   blob). A group member's bytes, for what is live or dead, are its share of
   the group's stored length by plaintext length.
3. *Index*: write new index files covering every blob of every pack kept
   and of the new packs, in a few large files. Nothing has been deleted yet.
4. *Delete* the unused and repacked packs, then the index files that the new
   ones supersede, then the WAL no kept base backup needs
   (``retention.expired_wal``), and the MariaDB binlogs before the earliest kept
   dump's (``retention.expired_binlogs``).

Killed anywhere, the repository stays consistent: before 4, only new
objects were added (a new pack no index names is adopted by the next run);
during 4, every live blob is named by a new index file, and an old index
file that still names a deleted pack only makes that pack *lost* to
readers, for blobs no snapshot needs (``check`` notes it). Packs are deleted
before the old index files so that a kill leaves no pack orphaned that this
run decided to delete: the next prune finishes the job in one run.

Object Lock: a delete the store refuses (ObjectLocked) is skipped and
reported; a later prune retries it.

Memory: the marked blobs are 8-byte id prefixes (a collision only keeps a
dead blob; never drops a live one), a set while the trees are walked, then a
sorted array (8 bytes a blob); per-pack counters; one index file at a time;
the prefixes of the live blobs of the packs being repacked. Trees are
scanned as bytes for chunk ids (any 64-hex string in a tree counts as a
reference, which can only keep more), and a tree blob met again in a later
snapshot is not read again.
"""

from __future__ import annotations

import contextlib
import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from drsync.errors import DrsyncError, IntegrityError, ObjectLocked, UsageError
from drsync.malloc import return_large_buffers_to_the_os
from drsync.repo.crypto import SealError
from drsync.repo.group import Group, open_group, seal_group, unseal_group
from drsync.repo.index import BlobLocation, index_document, index_packs, pack_key
from drsync.repo.lock import RepositoryLock
from drsync.repo.objects import TYPE_INDEX, FormatError
from drsync.repo.pack import (
    BLOB_DATA,
    BLOB_GROUP,
    BlobEntry,
    PackBuilder,
    read_pack_header,
    staged_pack,
    stored_ranges,
    stored_shares,
)
from drsync.repo.repository import Repository
from drsync.repo.resume import abort_interrupted_uploads, verified_pack_entries
from drsync.repo.retention import binlog_starts, expired_binlogs, expired_wal
from drsync.repo.snapshot import Snapshot
from drsync.repo.wal import WAL_PREFIX

__all__ = ["IndexWriter", "PruneReport", "copy_range", "parse_max_unused", "prune"]

INDEX_BLOBS = 50_000  # blobs per compacted index file
_HEX_ID = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_EDGE = 64  # a chunk id is 64 hex digits: one crossing a tree-blob boundary lies within this


def parse_max_unused(text: str) -> float | None:
    """``10%`` -> 0.10, ``0%`` -> 0.0, ``unlimited`` -> None; UsageError otherwise."""
    value = text.strip().lower()
    if value == "unlimited":
        return None
    number = value.removesuffix("%")
    try:
        fraction = float(number) / 100
    except ValueError:
        fraction = -1.0
    if not value.endswith("%") or not 0 <= fraction < 100:
        raise UsageError(f"--max-unused {text!r} is not a percentage like 10% (or unlimited)")
    return fraction


@dataclass
class PruneReport:
    dry_run: bool
    snapshots: int = 0
    blobs_live: int = 0
    packs: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    packs_adopted: int = 0
    bytes_total: int = 0
    bytes_unused: int = 0  # dead blob bytes before
    bytes_deleted: int = 0  # pack bytes removed (deleted and repacked packs)
    bytes_rewritten: int = 0  # bytes of the new packs (a dry run: their blobs' bytes)
    index_files_before: int = 0
    index_files_written: int = 0
    index_files_deleted: int = 0
    wal_expired: list[str] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)  # deletes refused by Object Lock

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _PackUse:
    size: int
    blob_bytes: int = 0
    live_bytes: int = 0
    counted: bool = False


class _Prefixes:
    """A sorted array of 8-byte prefixes: 8 bytes a blob, against about 80 in a set."""

    def __init__(self, values: set[int] | list[int]) -> None:
        self._values = array("Q", sorted(values))

    def __contains__(self, prefix: object) -> bool:
        if not isinstance(prefix, int):
            return False
        i = bisect_left(self._values, prefix)
        return i < len(self._values) and self._values[i] == prefix

    def __len__(self) -> int:
        return len(self._values)


class _Marker:
    """The blobs every snapshot references, as 8-byte id prefixes: a set while marking,
    then (``freeze``) a sorted array."""

    def __init__(self, read_tree: Callable[[bytes], bytes]) -> None:
        self.live: set[int] = set()
        self.frozen = _Prefixes(set())
        self._read_tree = read_tree
        self._edges: dict[bytes, tuple[bytes, bytes | None]] = {}  # tree blob -> head, tail

    def __contains__(self, blob_id: bytes) -> bool:
        return int.from_bytes(blob_id[:8], "big") in self.frozen

    def freeze(self) -> _Prefixes:
        self.frozen = _Prefixes(self.live)
        self.live = set()
        self._edges = {}
        return self.frozen

    def _scan(self, data: bytes) -> None:
        self.live.update(int(m[:16], 16) for m in _HEX_ID.findall(data))

    def mark(self, snap: Snapshot) -> None:
        carry = b""
        for hex_id in snap.tree:
            blob_id = bytes.fromhex(hex_id)
            self.live.add(int(hex_id[:16], 16))
            edges = self._edges.get(blob_id)
            if edges is None:
                data = self._read_tree(blob_id)
                self._scan(carry + data)
                long = len(data) > 2 * _EDGE
                self._edges[blob_id] = (data[:_EDGE], data[-_EDGE:]) if long else (data, None)
                carry = (carry + data)[-_EDGE:]
            else:
                head, tail = edges  # seen in an earlier snapshot: only its edges are new
                self._scan(carry + head)
                carry = tail if tail is not None else (carry + head)[-_EDGE:]


class IndexWriter:
    """New index files of at most INDEX_BLOBS blobs each (``flush`` writes the last)."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._batch: list[dict[str, Any]] = []
        self._blobs = 0
        self.names: set[str] = set()
        self.packs: set[str] = set()

    def add(self, pack_id: str, size: int, entries: list[BlobEntry]) -> None:
        self.add_record(index_document([(pack_id, size, entries)])["packs"][0])

    def add_record(self, record: dict[str, Any]) -> None:
        """A pack as an index document lists it: ``{"id", "size", "blobs"}``."""
        if record["id"] in self.packs:
            return
        self.packs.add(record["id"])
        self._batch.append(record)
        self._blobs += len(record["blobs"])
        if self._blobs >= INDEX_BLOBS:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            oid, _size = self._repo.save_document(TYPE_INDEX, "index", {"packs": self._batch})
            self.names.add(f"index/{oid}")
        self._batch, self._blobs = [], 0


def copy_range(repo: Repository, builder: PackBuilder, members: list[BlobEntry],
               keep: list[BlobEntry], sealed: bytes) -> None:
    """Copy the stored range of ``members`` into ``builder``, keeping the blobs of
    ``keep``: still sealed (authenticated first: a seal binds its id or its group's
    ids, not its pack) when it keeps them all, else the group opened, verified, and
    what it keeps sealed again (a group, or one blob). SealError when it does not
    authenticate (nothing is added then)."""
    key = repo.key
    first = members[0]
    if len(members) == 1:
        key.unseal(sealed, first.blob_id)
        builder.add(first.blob_type, first.blob_id, sealed, first.raw_length)
        return
    group = Group([e.blob_id for e in members], [e.raw_length for e in members])
    if len(keep) == len(members):
        unseal_group(key, group, sealed)
        builder.add_group([(e.blob_id, e.raw_length) for e in members], sealed)
        return
    plain = dict(open_group(key, group, sealed))
    kept = [(e.blob_id, plain[e.blob_id]) for e in keep]
    level = repo.config.compression_level
    if len(kept) == 1:
        blob_id, data = kept[0]
        builder.add(BLOB_DATA, blob_id, key.seal_chunk(data, blob_id, level), len(data))
    else:
        builder.add_group([(blob_id, len(data)) for blob_id, data in kept],
                          seal_group(key, kept, level))


def prune(repo: Repository, *, max_unused: float | None = 0.10, dry_run: bool = False,
          progress: Callable[[int], None] | None = None,
          on_total: Callable[[int], None] | None = None) -> PruneReport:
    """Prune ``repo`` (see the module docstring); a dry run plans and changes nothing.
    ``on_total`` is told how many pack bytes will be read to repack, ``progress`` as
    they are."""
    return_large_buffers_to_the_os()
    if dry_run:
        return _Prune(repo, max_unused, True).run(progress, on_total)
    with RepositoryLock(repo.store, "prune"):
        abort_interrupted_uploads(repo.store)  # finished uploads become packs to adopt
        return _Prune(repo, max_unused, False).run(progress, on_total)


class _Prune:
    def __init__(self, repo: Repository, max_unused: float | None, dry_run: bool) -> None:
        self.repo = repo
        self.max_unused = max_unused
        self.report = PruneReport(dry_run)
        self.uses: dict[str, _PackUse] = {}  # packs named by a readable index, present
        self.blobs = 0  # blobs the index names in those packs

    # -- reading -----------------------------------------------------------------

    def _index_files(self, names: list[str]) -> Iterator[tuple[str, list[tuple[str, int,
                                                                           list[BlobEntry]]]]]:
        for name in names:
            try:
                yield name, index_packs(self.repo._read_document(TYPE_INDEX, name))
            except (FormatError, KeyError, ValueError, TypeError) as err:
                raise IntegrityError(f"{self.repo.url}: object {name}: {err}; prune refuses "
                                     "to run on a repository whose index it cannot read "
                                     "(run `drsync check`)") from None

    def _records(self, names: list[str]) -> Iterator[dict[str, Any]]:
        """Each pack record of the index files, as stored: read again after ``_index_files``
        checked them (same name, so the same bytes), so not checked again."""
        for name in names:
            try:
                yield from self.repo._read_document(TYPE_INDEX, name)["packs"]
            except FormatError as err:
                raise IntegrityError(f"{self.repo.url}: object {name}: {err}") from None

    def _snapshots(self) -> list[Snapshot]:
        snaps = []
        for snapshot_id in sorted(self.repo.snapshot_ids()):
            try:
                snaps.append(self.repo.load_snapshot(snapshot_id))
            except IntegrityError as err:
                raise IntegrityError(f"{err}; prune refuses: it cannot know what that snapshot "
                                     "references (run `drsync check`)") from None
        return snaps

    # -- the run -----------------------------------------------------------------

    def run(self, progress: Callable[[int], None] | None,
            on_total: Callable[[int], None] | None) -> PruneReport:
        repo, report = self.repo, self.report
        snaps = self._snapshots()
        report.snapshots = len(snaps)
        index_names = repo.index_names()
        present = repo.stored_packs()  # listed after the index files, as a reader does
        report.index_files_before = len(index_names)
        needed_trees = {bytes.fromhex(h) for s in snaps for h in s.tree}
        tree_locs: dict[bytes, BlobLocation] = {}
        lost: dict[int, str] = {}  # blob prefix -> the missing pack an index names it in
        for _name, packs in self._index_files(index_names):
            for pack_id, size, entries in packs:
                if present.get(pack_id) != size:
                    for e in entries:
                        lost.setdefault(int.from_bytes(e.blob_id[:8], "big"), pack_id)
                    continue
                use = self.uses.setdefault(pack_id, _PackUse(size))
                for e in entries:
                    if e.blob_id in needed_trees:
                        tree_locs.setdefault(e.blob_id, BlobLocation(
                            pack_id, e.blob_type, e.offset, e.length, e.raw_length))
                if not use.counted:
                    use.blob_bytes += sum(stored_shares(
                        [(e.blob_type, e.offset, e.length, e.raw_length) for e in entries]))
                    self.blobs += len(entries)
                use.counted = True
        adopted = self._adopt(present, lost, needed_trees, tree_locs)

        def read_tree(blob_id: bytes) -> bytes:
            loc = tree_locs.get(blob_id)
            if loc is None:
                raise IntegrityError(f"{repo.url}: tree blob {blob_id.hex()[:16]} is in no "
                                     "index; prune refuses (run `drsync check`)")
            return repo.read_blob(blob_id, loc)

        marker = _Marker(read_tree)
        for snap in snaps:
            marker.mark(snap)
        report.blobs_live = len(marker.freeze())
        self._count_live(index_names, present, marker, lost, adopted)
        delete, repack = self._plan()
        compact = report.index_files_before <= max(1, -(-self.blobs // INDEX_BLOBS))
        if report.dry_run or (compact and not (delete or repack or adopted or lost)):
            # A dry run, or nothing to delete and the index compact already: no new objects.
            if report.dry_run:  # what a prune would delete and upload, over a slow link
                report.bytes_deleted = sum(self.uses[p].size for p in [*delete, *repack])
                report.bytes_rewritten = sum(self.uses[p].live_bytes for p in repack)
                report.packs_written = -(-report.bytes_rewritten // repo.config.pack_size)
            self._expire_wal(snaps, delete=not report.dry_run)
            return report
        writer = IndexWriter(repo)
        if on_total is not None:
            on_total(sum(self.uses[p].size for p in repack))
        gone = set(delete) | set(repack)
        skip = self._to_copy(index_names, repack, gone, marker, adopted) if repack else (
            set(), set())
        self._repack(repack, skip, marker, writer, progress)
        for pack_id, size, entries in adopted:
            writer.add(pack_id, size, entries)
        for record in self._records(index_names):
            kept = self.uses.get(record["id"])
            if kept is not None and record["id"] not in gone and kept.size == record["size"]:
                writer.add_record(record)
        writer.flush()
        report.index_files_written = len(writer.names - set(index_names))
        # Every live blob is named by the new index files: deleting may start.
        for pack_id in sorted(gone):
            if self._delete(pack_key(pack_id)):
                report.bytes_deleted += self.uses[pack_id].size
        for name in index_names:
            if name not in writer.names and self._delete(name):
                report.index_files_deleted += 1
        self._expire_wal(snaps, delete=True)
        return report

    def _adopt(self, present: dict[str, int], lost: dict[int, str], needed_trees: set[bytes],
               tree_locs: dict[bytes, BlobLocation]) -> list[tuple[str, int, list[BlobEntry]]]:
        """Packs no index names, verified, to be indexed (never deleted by this run)."""
        adopted = []
        lost_packs = set(lost.values())
        for pack_id, size in sorted(present.items()):
            if pack_id in self.uses or pack_id in lost_packs:
                continue
            entries = verified_pack_entries(self.repo.store, self.repo.key, pack_key(pack_id),
                                            pack_id, size)
            if entries is None:
                continue  # damaged or half-written: left alone, `check` reports it
            adopted.append((pack_id, size, entries))
            for e in entries:
                if e.blob_id in needed_trees:
                    tree_locs.setdefault(e.blob_id, BlobLocation(
                        pack_id, e.blob_type, e.offset, e.length, e.raw_length))
        self.report.packs_adopted = len(adopted)
        return adopted

    def _count_live(self, index_names: list[str], present: dict[str, int], marker: _Marker,
                    lost: dict[int, str],
                    adopted: list[tuple[str, int, list[BlobEntry]]]) -> None:
        """Live bytes per pack; refuses when a live blob is only in a missing pack."""
        live = marker.frozen
        lost_live = {p: pack for p, pack in lost.items() if p in live}
        for use in self.uses.values():
            use.counted = False

        for record in self._records(index_names):
            found = self.uses.get(record["id"])
            if found is None or found.size != record["size"] or found.counted:
                continue
            found.counted = True
            blobs = record["blobs"]
            # A group member counts for its share of the group's bytes; most packs have
            # no group, and this loop runs over every blob of the repository.
            shares = (stored_shares([(b[1], b[2], b[3], b[4]) for b in blobs])
                      if any(b[1] == BLOB_GROUP for b in blobs) else [b[3] for b in blobs])
            for blob, share in zip(blobs, shares, strict=True):
                prefix = int(blob[0][:16], 16)
                if prefix in live:
                    found.live_bytes += share
                    if lost_live:
                        lost_live.pop(prefix, None)
        for _pack_id, _size, entries in adopted:
            for e in entries:
                lost_live.pop(int.from_bytes(e.blob_id[:8], "big"), None)
        if lost_live:
            pack_id = next(iter(lost_live.values()))
            raise IntegrityError(f"{self.repo.url}: object {pack_key(pack_id)}: missing, and "
                                 f"{len(lost_live)} blob(s) a snapshot needs are only there; "
                                 "prune refuses (run `drsync check`)")

    def _plan(self) -> tuple[list[str], list[str]]:
        report = self.report
        delete, partial = [], []
        for pack_id, use in self.uses.items():
            report.bytes_total += use.size
            report.bytes_unused += use.blob_bytes - use.live_bytes
            if use.live_bytes == 0:
                delete.append(pack_id)
            elif use.live_bytes < use.blob_bytes:
                partial.append(pack_id)
        report.packs = len(self.uses) + report.packs_adopted
        live = sum(u.live_bytes for u in self.uses.values())
        left = sum(self.uses[p].blob_bytes - self.uses[p].live_bytes for p in partial)
        limit = float("inf") if self.max_unused is None else self.max_unused * live
        partial.sort(key=lambda p: (self.uses[p].live_bytes / self.uses[p].blob_bytes, p))
        repack = []
        for pack_id in partial:
            if left <= limit:
                break
            repack.append(pack_id)
            left -= self.uses[pack_id].blob_bytes - self.uses[pack_id].live_bytes
        report.packs_deleted, report.packs_repacked = len(delete), len(repack)
        return sorted(delete), repack

    # -- changing ----------------------------------------------------------------

    def _to_copy(self, index_names: list[str], repack: list[str], gone: set[str],
                 marker: _Marker, adopted: list[tuple[str, int, list[BlobEntry]]]
                 ) -> tuple[set[bytes], set[int]]:
        """What not to copy from the packs to repack, in little memory: the full ids of
        their live blobs that a kept pack holds too (a killed prune's new packs may), and
        the prefixes that more than one of their live blobs share (each such blob is
        then copied once, checked by full id)."""
        chosen = set(repack)
        live = marker.frozen
        found = array("Q")
        for record in self._records(index_names):
            if record["id"] in chosen:
                found.extend(p for p in (int(b[0][:16], 16) for b in record["blobs"])
                             if p in live)
        ordered = sorted(found)
        del found
        repeated = {a for a, b in pairwise(ordered) if a == b}
        wanted = _Prefixes(ordered)  # sorted already: sorting again is linear
        del ordered
        held: set[bytes] = set()  # live blobs of the packs to repack that kept packs hold
        for record in self._records(index_names):
            if record["id"] in self.uses and record["id"] not in gone:
                held.update(bytes.fromhex(b[0]) for b in record["blobs"]
                            if int(b[0][:16], 16) in wanted)
        for _pack_id, _size, entries in adopted:
            held.update(e.blob_id for e in entries
                        if int.from_bytes(e.blob_id[:8], "big") in wanted)
        return held, repeated

    def _repack(self, repack: list[str], skip: tuple[set[bytes], set[int]], marker: _Marker,
                writer: IndexWriter, progress: Callable[[int], None] | None) -> None:
        repo = self.repo
        held, repeated = skip
        copied: set[bytes] = set()  # only blobs whose prefix another one shares
        def new_pack() -> PackBuilder:
            return staged_pack(repo.key, repo.store, repo.config.pack_size)

        builder = new_pack()

        def flush() -> None:
            nonlocal builder
            if builder.entries:
                pack_id, size = builder.seal()
                builder.commit(pack_key(pack_id))
                writer.add(pack_id, size, builder.entries)
                self.report.packs_written += 1
                self.report.bytes_rewritten += size
                builder = new_pack()

        for pack_id in repack:
            name = pack_key(pack_id)
            try:
                data = repo.store.get(name)
                entries = read_pack_header(repo.key, data)
            except (FormatError, DrsyncError) as err:
                raise IntegrityError(f"{repo.url}: object {name}: {err}; prune refuses to "
                                     "repack it (run `drsync check --read-data`)") from None
            def wanted(e: BlobEntry) -> bool:
                if e.blob_id not in marker or e.blob_id in held:
                    return False
                if int.from_bytes(e.blob_id[:8], "big") in repeated:
                    if e.blob_id in copied:
                        return False
                    copied.add(e.blob_id)
                return True

            for members in sorted(stored_ranges(entries), key=lambda m: m[0].offset):
                keep = [e for e in members if wanted(e)]
                if not keep:
                    continue
                first = members[0]
                sealed = data[first.offset:first.offset + first.length]
                try:
                    copy_range(repo, builder, members, keep, sealed)
                except SealError as err:
                    what = (f"blob {first.blob_id.hex()[:16]}" if len(members) == 1 else
                            f"group of {len(members)} blobs with {first.blob_id.hex()[:16]}")
                    raise IntegrityError(f"{repo.url}: object {name} offset {first.offset}: "
                                         f"{what}: {err}; prune refuses to copy it") from None
                if len(builder) >= repo.config.pack_size:
                    flush()
            if progress is not None:
                progress(len(data))
        flush()

    def _delete(self, key: str) -> bool:
        """Delete ``key``; False (and reported) when Object Lock still retains it."""
        try:
            self.repo.store.delete(key)
        except ObjectLocked:
            self.report.locked.append(key)
            return False
        return True

    def _expire_wal(self, snaps: list[Snapshot], *, delete: bool) -> None:
        from drsync.wal.archive import base_backups

        with contextlib.suppress(KeyError, ValueError, TypeError):
            bases = base_backups(snaps)
            names = [i.key.removeprefix(WAL_PREFIX) for i in self.repo.store.list(WAL_PREFIX)]
            for name in [*expired_wal([(b.start_wal, b.segment_size) for b in bases], names),
                         *expired_binlogs(binlog_starts(snaps), names)]:
                if not delete or self._delete(WAL_PREFIX + name):
                    self.report.wal_expired.append(name)
