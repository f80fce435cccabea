"""Repair: take damaged packs out of a repository, keeping every blob that still verifies.

A pack is damaged when its bytes no longer hash to its name (its id is the
SHA-256 of what was stored): a flipped bit, a torn or truncated write. While
it stays in the store, backups deduplicate against its blobs, so every later
snapshot that shares a chunk with it references bytes that cannot be read,
and the damage outlives every later "ok". Repair, under the exclusive writer
lock, for each damaged pack:

1. *Salvage*: every stored range the index files (or, for a pack no index
   names, its header) place in the pack is authenticated; each one that
   verifies is copied, still sealed, into a new pack (``prune.copy_range``),
   unless an intact pack holds its blobs already. The new packs get a new
   index file. Nothing has been removed yet.
2. *Quarantine*: the damaged pack's bytes are written to a local directory
   (fsynced), the evidence for the investigation and a way back.
3. *Delete* it from the store. The old index files still name it: a missing
   pack, whose blobs readers treat as lost, except those a new pack holds.

A blob that did not verify is lost from the repository: the next backup of a
source that still has it stores it again (healing every older snapshot that
shares it); the report names each snapshot that cannot be fully restored
until then. ``prune`` later drops the old index files' records of the pack.

Killed anywhere, nothing is lost: before 3 only objects were added (a
salvaged blob is then in two packs, both readable where it verified), and a
run again finds the pack damaged and does the same; after 3 the pack is gone
and its salvaged blobs are in the new packs. An intact pack is never touched,
even when named.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drsync import atomic
from drsync.errors import (
    DrsyncError,
    IntegrityError,
    ObjectLocked,
    ObjectNotFound,
    RestoreTargetError,
    UsageError,
)
from drsync.repo.crypto import SealError
from drsync.repo.index import index_packs, pack_key
from drsync.repo.lock import RepositoryLock, pid_alive
from drsync.repo.objects import TYPE_INDEX, FormatError, object_id
from drsync.repo.pack import BlobEntry, PackBuilder, read_pack_header, staged_pack, stored_ranges
from drsync.repo.prune import IndexWriter, copy_range
from drsync.repo.reader import SnapshotReader
from drsync.repo.repository import Repository
from drsync.repo.resume import abort_interrupted_uploads, verified_pack_entries
from drsync.repo.retention import group_key

__all__ = ["PackRepair", "RepairReport", "repair_packs", "resolve_pack_ids"]

_HEX = re.compile("[0-9a-f]+")
# A quarantine copy being written (drsync.atomic; before 2026-12-08 the temporary was
# named by the pack id's first 12 digits).
_TEMPORARY = re.compile(r"\.[0-9a-f]{12,64}\.([0-9]+)\.tmp")
_MIN_PREFIX = 8


@dataclass
class PackRepair:
    pack_id: str
    # "repaired"; "intact" (named, left alone); "missing" (nothing to salvage); "locked"
    # (salvaged and saved, but the store's object lock refused its delete)
    status: str
    size: int = 0
    blobs_salvaged: int = 0  # copied into a new pack
    blobs_held: int = 0  # an intact pack holds them already
    blobs_lost: int = 0
    saved_to: str | None = None
    problems: list[str] = field(default_factory=list)  # what did not verify, and where

    def to_json(self) -> dict[str, Any]:
        return {"id": self.pack_id, "status": self.status, "size": self.size,
                "blobs_salvaged": self.blobs_salvaged, "blobs_held": self.blobs_held,
                "blobs_lost": self.blobs_lost, "saved_to": self.saved_to,
                "problems": self.problems}


@dataclass
class RepairReport:
    dry_run: bool
    packs: list[PackRepair] = field(default_factory=list)
    packs_read: int = 0
    bytes_read: int = 0
    packs_written: int = 0
    bytes_written: int = 0
    index_files_written: int = 0
    snapshots_affected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def blobs_lost(self) -> int:
        return sum(p.blobs_lost for p in self.packs)

    @property
    def blobs_salvaged(self) -> int:
        return sum(p.blobs_salvaged for p in self.packs)

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "packs": [p.to_json() for p in self.packs],
                "packs_read": self.packs_read, "bytes_read": self.bytes_read,
                "packs_written": self.packs_written,
                "bytes_written": self.bytes_written,
                "index_files_written": self.index_files_written,
                "blobs_salvaged": self.blobs_salvaged, "blobs_lost": self.blobs_lost,
                "snapshots_affected": self.snapshots_affected}


def resolve_pack_ids(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """Full pack ids for what an operator typed: an id, a prefix of at least 8 hex
    digits, or an object name (``data/3f/3fa1…``, as `check` prints it; a trailing
    ``…`` is ignored). UsageError naming the first that matches none, or several."""
    ids = sorted(set(known))
    found: list[str] = []
    for name in names:
        text = name.strip().rstrip("…").rsplit("/", 1)[-1].lower()
        if not _HEX.fullmatch(text) or not _MIN_PREFIX <= len(text) <= 64:
            raise UsageError(f"{name!r} is not a pack: give its id, a prefix of at least "
                             f"{_MIN_PREFIX} hex digits, or its object name data/xx/ID")
        matches = [i for i in ids if i.startswith(text)]
        if not matches:
            raise UsageError(f"no pack {name!r} in the store or its index")
        if len(matches) > 1:
            some = ", ".join(m[:12] for m in matches[:3])
            raise UsageError(f"{name!r} names {len(matches)} packs ({some}…): give more of "
                             "the id")
        if matches[0] not in found:
            found.append(matches[0])
    return found


def repair_packs(repo: Repository, names: Iterable[str] = (), *, save_to: str | Path,
                 dry_run: bool = False, progress: Callable[[int], None] | None = None,
                 on_total: Callable[[int], None] | None = None) -> RepairReport:
    """Repair the packs ``names`` (see ``resolve_pack_ids``), or with none every pack whose
    bytes do not hash to its name (each is then read whole). A dry run reads, verifies
    and reports; it writes and deletes nothing. ``save_to``: the quarantine directory."""
    if dry_run:
        return _Repair(repo, Path(save_to), True).run(list(names), progress, on_total)
    with RepositoryLock(repo.store, "repair"):
        return _Repair(repo, Path(save_to), False).run(list(names), progress, on_total)


class _Repair:
    def __init__(self, repo: Repository, save_to: Path, dry_run: bool) -> None:
        self.repo = repo
        self.save_to = save_to
        self.report = RepairReport(dry_run)

    def _records(self) -> Iterator[tuple[str, int, list[BlobEntry]]]:
        """Every pack record of every readable index file; one that cannot be read is
        passed over (``check`` names it): the pack's header then places its blobs."""
        for name in self.repo.index_names():
            try:
                yield from index_packs(self.repo._read_document(TYPE_INDEX, name))
            except (FormatError, ValueError, TypeError, KeyError):
                continue

    def run(self, names: list[str], progress: Callable[[int], None] | None,
            on_total: Callable[[int], None] | None) -> RepairReport:
        repo, report = self.repo, self.report
        self._prepare_quarantine()  # before anything is stored: a bad --save-to stops here
        if not report.dry_run:
            abort_interrupted_uploads(repo.store)  # a killed repair's salvage: finished
        present = repo.stored_packs()
        records = list(self._records())  # read once: the entries of every pack are needed
        indexed: dict[str, list[BlobEntry]] = {}
        for pack_id, _size, entries in records:
            indexed.setdefault(pack_id, entries)  # every index naming a pack lists it whole
        chosen = (resolve_pack_ids(names, present.keys() | indexed.keys()) if names
                  else sorted(present))
        if on_total is not None:
            on_total(sum(present.get(p, 0) for p in chosen))
        damaged: list[str] = []
        missing: list[str] = []
        for pack_id in chosen:  # one pack in memory at a time
            data = self._read(pack_id, present)
            if data is None:
                missing.append(pack_id)
                continue
            report.packs_read += 1
            report.bytes_read += len(data)
            if progress is not None:
                progress(len(data))
            if object_id(data) != pack_id:
                damaged.append(pack_id)
            elif names:  # asked for by name: say why it is left alone
                report.packs.append(PackRepair(pack_id, "intact", size=len(data)))
        held = self._held_elsewhere([*damaged, *missing], records, indexed, present)
        for pack_id in missing:
            entries = indexed.get(pack_id, [])
            gone = sum(e.blob_id not in held for e in entries)
            report.packs.append(PackRepair(
                pack_id, "missing", blobs_held=len(entries) - gone, blobs_lost=gone,
                problems=[f"not in the store (taken out by an earlier repair, or lost): "
                          f"nothing to salvage; {len(entries) - gone} of its {len(entries)} "
                          f"blobs are in other packs, {gone} are not (the next backup "
                          "stores those again)"]))
        if not damaged:
            return report
        lost: set[bytes] = set()
        writer = IndexWriter(repo)

        def new_pack() -> PackBuilder:  # a dry run's copies go to an unlinked temporary file
            return (PackBuilder(repo.key) if report.dry_run
                    else staged_pack(repo.key, repo.store, repo.config.pack_size))

        builder = new_pack()

        def flush() -> None:
            nonlocal builder
            if builder.entries:
                report.packs_written += 1  # a dry run's: would be written
                if report.dry_run:
                    report.bytes_written += len(builder)
                    builder.close()
                else:
                    new_id, size = builder.seal()
                    builder.commit(pack_key(new_id))
                    writer.add(new_id, size, builder.entries)
                    report.bytes_written += size
            else:
                builder.close()
            builder = new_pack()

        for pack_id in damaged:
            data = self._read(pack_id, present)
            if data is None or object_id(data) == pack_id:
                continue  # gone, or replaced by its good bytes, since it was read
            fix = PackRepair(pack_id, "repaired", size=len(data))
            report.packs.append(fix)
            for members in self._ranges(pack_id, data, indexed.get(pack_id, []), fix):
                ids = [e.blob_id for e in members]
                if all(b in held for b in ids):
                    fix.blobs_held += len(ids)
                    continue
                first = members[0]
                end = first.offset + first.length
                try:
                    if end > len(data):
                        raise SealError(f"ends at {end}, past the pack's {len(data)} bytes")
                    copy_range(repo, builder, members, members, data[first.offset:end])
                except SealError as err:
                    fix.blobs_lost += len(ids)
                    lost.update(ids)
                    what = (f"blob {first.blob_id.hex()[:16]}" if len(ids) == 1
                            else f"group of {len(ids)} blobs with {first.blob_id.hex()[:16]}")
                    fix.problems.append(f"offset {first.offset}: {what}: {err}")
                    continue
                fix.blobs_salvaged += len(ids)
                held.update(ids)  # a blob in two damaged packs is copied once
                if len(builder) >= repo.config.pack_size:
                    flush()
            if not report.dry_run:  # saved before anything is deleted
                fix.saved_to = str(self._quarantine(pack_id, data))
        flush()
        builder.close()
        if not report.dry_run:
            writer.flush()
            report.index_files_written = len(writer.names)
            for fix in report.packs:
                if fix.status == "repaired":
                    try:
                        repo.store.delete(pack_key(fix.pack_id))
                    except ObjectLocked:
                        fix.status = "locked"
                        fix.problems.append("the store's object lock retains it: not deleted, "
                                            "so backups still find its lost blobs there; run "
                                            "repair again once the retention has passed")
        lost -= held
        if lost:
            report.snapshots_affected = self._affected(lost)
        return report

    def _read(self, pack_id: str, present: dict[str, int]) -> bytes | None:
        if pack_id not in present:
            return None
        try:
            # A ranged read: a whole-object read from S3 refuses bytes that no longer match
            # the SHA-256 recorded at upload, and those bytes are what is to be salvaged.
            # They are checked against the pack's name here instead.
            return self.repo.store.get(pack_key(pack_id), 0, present[pack_id])
        except ObjectNotFound:
            return None

    def _ranges(self, pack_id: str, data: bytes, entries: list[BlobEntry],
                fix: PackRepair) -> list[list[BlobEntry]]:
        """The pack's stored ranges: where the index files place its blobs, else (a pack
        no readable index names) where its header does, if that still authenticates. A
        group's members stay in their order: it is part of what the group's seal binds."""
        try:
            header = read_pack_header(self.repo.key, data)
        except (FormatError, DrsyncError) as err:
            header = []
            fix.problems.append(f"pack header: {err}")
        chosen = entries or header
        if not chosen:
            fix.problems.append("no index names its blobs and its header cannot be read: "
                                "nothing can be salvaged")
        try:
            return sorted(stored_ranges(chosen), key=lambda m: m[0].offset)
        except ValueError as err:
            raise IntegrityError(f"{self.repo.url}: object {pack_key(pack_id)}: its index "
                                 f"entries break the rules of stored ranges ({err}); repair "
                                 "refuses it") from None

    def _held_elsewhere(self, packs: list[str],
                        records: list[tuple[str, int, list[BlobEntry]]],
                        indexed: dict[str, list[BlobEntry]],
                        present: dict[str, int]) -> set[bytes]:
        """The blobs of ``packs`` (damaged or missing) that an intact present pack holds
        too: one an index names with its right size, or one no index names whose header
        verifies (a killed repair's salvage, finished since). A pack's bytes are verified
        when it is read."""
        skip = set(packs)
        wanted = {e.blob_id for p in packs for e in indexed.get(p, [])}
        held: set[bytes] = set()
        for pack_id, size, entries in records:
            if pack_id in skip or present.get(pack_id) != size:
                continue
            held.update(e.blob_id for e in entries if e.blob_id in wanted)
        for pack_id in sorted(present.keys() - indexed.keys() - skip):
            found = verified_pack_entries(self.repo.store, self.repo.key, pack_key(pack_id),
                                          pack_id, present[pack_id])
            held.update(e.blob_id for e in found or [] if e.blob_id in wanted)
        return held

    def _prepare_quarantine(self) -> None:
        """The quarantine directory made (0700) and known to take a file, and what a killed
        repair left half-written in it removed: checked before anything is stored."""
        probe = self.save_to / f".probe.{os.getpid()}.tmp"
        try:
            if self.report.dry_run:  # nothing made: the nearest directory there must do
                where = next(p for p in (self.save_to, *self.save_to.parents) if p.exists())
                code = (errno.ENOTDIR if not where.is_dir() else
                        None if os.access(where, os.W_OK | os.X_OK) else errno.EACCES)
                if code is not None:
                    raise OSError(code, os.strerror(code))
                return
            self.save_to.mkdir(parents=True, exist_ok=True, mode=0o700)
            for leftover in self.save_to.glob(".*.tmp"):
                match = _TEMPORARY.fullmatch(leftover.name)
                if match and not pid_alive(int(match.group(1))):
                    leftover.unlink(missing_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise RestoreTargetError(f"cannot save damaged packs to {self.save_to}: "
                                     f"{err.strerror or err}; nothing was stored or deleted "
                                     "(give --save-to a directory this user can write, with "
                                     "room for the damaged packs)") from None

    def _quarantine(self, pack_id: str, data: bytes) -> Path:
        """The damaged pack's bytes, on disk before the store forgets them."""
        target = self.save_to / pack_id
        try:
            atomic.write_atomic(target, data)
        except OSError as err:
            raise RestoreTargetError(f"cannot save damaged pack {pack_id[:12]} to {target}: "
                                     f"{err.strerror or err}; nothing was deleted from the "
                                     "store (the salvaged blobs are stored; run repair again "
                                     "with --save-to on a disk with room)") from None
        return target

    def _affected(self, lost: set[bytes]) -> list[dict[str, Any]]:
        """Each snapshot that references a lost blob: it cannot be fully restored until a
        backup stores the blob again."""
        repo = self.repo
        index = repo.load_index(warn=lambda _message: None)
        found = []
        with SnapshotReader(repo, index) as reader:
            for snapshot_id in sorted(repo.snapshot_ids()):
                try:
                    snap = repo.load_snapshot(snapshot_id)
                except DrsyncError:
                    continue  # `check` names an unreadable snapshot
                count = sum(bytes.fromhex(h) in lost for h in snap.tree)
                if not count:
                    try:
                        for entry in reader.entries(snap):
                            count += sum(bytes.fromhex(h) in lost for h in entry.chunks)
                    except (DrsyncError, ValueError):
                        count = count or 1
                if count:
                    host, source = group_key(snap)
                    found.append({"id": snap.id, "time": snap.time, "tags": list(snap.tags),
                                  "host": host, "source": source, "blobs_lost": count})
        return found

