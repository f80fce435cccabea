"""Checking a repository: structure always, every byte with ``read_data``.

Errors name the object (and the offset, for a blob) and what is wrong, and
every snapshot that a missing or damaged blob keeps from being restored; a
damaged blob group (drsync.repo.group) is opened once and names every member.
Packs no index names are the harmless leftovers of an interrupted run and
are reported as notes, not errors. Archived WAL is checked too: gaps in the
chain after each base backup, and in the binlogs after each MariaDB dump's
position, always; every object's authentication with ``read_data``. Given
the snapshots a local catalog recorded, a rollback of the store (its newest
snapshots deleted) is an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drsync.errors import DrsyncError, IntegrityError, ObjectNotFound, StoreError
from drsync.paths import tree_problems
from drsync.repo.crypto import SealError
from drsync.repo.index import BlobLocation, Index, pack_key
from drsync.repo.keys import parse_wrapping
from drsync.repo.lock import STALE_AFTER, LockInfo, read_lock
from drsync.repo.objects import FormatError, object_id
from drsync.repo.pack import read_pack_header
from drsync.repo.reader import SnapshotReader
from drsync.repo.repository import Repository
from drsync.repo.snapshot import Snapshot
from drsync.repo.wal import WAL_PREFIX, is_wal_name, open_wal
from drsync.store.capabilities import CapabilityUnavailable, PendingUploads, capability
from drsync.wal.coverage import next_segment

__all__ = ["CheckReport", "check_repository", "describe_snapshot", "recorded_snapshots_missing"]


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    snapshots: int = 0
    packs: int = 0
    blobs: int = 0
    bytes_verified: int = 0
    wal_files: int = 0
    uploads: list[dict[str, Any]] = field(default_factory=list)
    # With read_data: packs whose bytes do not match their name (what `repair packs` takes)
    damaged_packs: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": self.errors, "notes": self.notes,
                "snapshots": self.snapshots, "packs": self.packs, "blobs": self.blobs,
                "bytes_verified": self.bytes_verified, "wal_files": self.wal_files,
                "uploads": self.uploads, "damaged_packs": sorted(self.damaged_packs)}


def _store_down(err: DrsyncError) -> bool:
    """A store that could not be asked (the link down past the retry deadline, a 5xx,
    access denied) says nothing about the data: the check ends with that error (exit 14)
    instead of reporting what it could not read as damaged. A missing object is damage."""
    return isinstance(err, StoreError) and not isinstance(err, ObjectNotFound)


def check_repository(repo: Repository, *, read_data: bool = False,
                     progress: Callable[[int], None] | None = None,
                     on_total: Callable[[int], None] | None = None,
                     cleanup_uploads: bool = False,
                     known_snapshots: Mapping[str, str] | None = None) -> CheckReport:
    """Check structure (and with ``read_data`` every byte); ``on_total`` is told how many
    bytes will be read, ``progress`` each time some are. ``known_snapshots`` (snapshot id
    -> ISO time, from the local catalog) lets a rollback of the store be detected."""
    report = CheckReport()
    _check_keys(repo, report)
    index = _load_index(repo, report)
    stored = index.present or {}
    wal_objects = {info.key: info.size for info in repo.store.list(WAL_PREFIX)}
    report.packs = len(stored)
    if read_data and on_total is not None:
        on_total(sum(stored.values()) + sum(wal_objects.values()))
    report.blobs = len(index)
    damaged = _read_packs(repo, index, stored, report, progress) if read_data else {}
    needed: set[str] = set()  # lost packs some snapshot needs a blob of
    snaps, present_ids = _check_snapshots(repo, index, report, damaged, needed)
    for pack_id, why in sorted(index.lost_packs.items()):
        line = f"object {pack_key(pack_id)}: {why} (named by the index)"
        if pack_id in needed or len(snaps) < len(present_ids):
            report.errors.append(line)
        else:  # every blob of it a snapshot needs was stored again by a later backup
            report.notes.append(f"{line}; no snapshot needs it any more")
    _check_wal(repo, report, snaps, wal_objects, read_data, progress)
    from drsync.repo.drills import load_drills
    from drsync.repo.runs import load_runs

    load_runs(repo, lambda message: report.errors.append(message.removesuffix(": skipped")))
    load_drills(repo, lambda message: report.errors.append(message.removesuffix(": skipped")))
    if known_snapshots is not None:
        errors, notes = recorded_snapshots_missing(known_snapshots, present_ids, snaps)
        report.errors += errors
        report.notes += notes
    lock = read_lock(repo.store)
    if lock is not None:
        reason = lock.stale_reason()
        state = f"stale ({reason})" if reason else "held"
        report.notes.append(f"object lock: {state} by {lock.describe()}")
    _check_uploads(repo, report, lock, cleanup_uploads)
    return report


def _check_uploads(repo: Repository, report: CheckReport, lock: LockInfo | None,
                   cleanup: bool) -> None:
    """Unfinished uploads: stale when no live writer holds the lock, or when older than
    a lock's staleness limit (the live writer cannot still be sending them)."""
    uploads = capability(repo.store, PendingUploads)
    if uploads is None:
        return
    try:
        pending = uploads.pending_uploads()
    except CapabilityUnavailable:
        report.notes.append("unfinished uploads cannot be listed on this store (it does not "
                            "implement ListMultipartUploads)")
        return
    writer_alive = lock is not None and not lock.is_stale()
    now = time.time()
    for upload in sorted(pending, key=lambda u: u.started):
        stale = not writer_alive or now - upload.started > STALE_AFTER
        entry = {"key": upload.key, "started": upload.started,
                 "bytes_stored": upload.bytes_stored, "stale": stale, "aborted": False}
        if stale and cleanup:
            uploads.abort_upload(upload)
            entry["aborted"] = True
            report.notes.append(f"{upload.describe()}: aborted")
        else:
            hint = ("stale; `drsync check --cleanup-uploads` aborts it" if stale
                    else "in progress (a backup holds the lock)")
            report.notes.append(f"{upload.describe()}: {hint}")
        report.uploads.append(entry)


def _check_keys(repo: Repository, report: CheckReport) -> None:
    newest = repo.generations()[-1]
    for info in repo.store.list("keys/"):
        try:
            doc = parse_wrapping(repo.store.get(info.key))
        except (FormatError, DrsyncError) as err:
            if isinstance(err, DrsyncError) and _store_down(err):
                raise
            report.errors.append(f"object {info.key}: {err}")
            continue
        if doc["generation"] < newest:
            report.notes.append(f"object {info.key}: wraps master-key generation "
                                f"{doc['generation']} of {newest}: it cannot read what newer "
                                "generations sealed (remove it, or give it with "
                                "--key-file-also to a rotate from a key of the newest "
                                "generation)")


def _load_index(repo: Repository, report: CheckReport) -> Index:
    """The index a restore would use, and what it had to leave out, as errors."""
    index = repo.load_index(warn=lambda _message: None)
    for name, why in sorted(index.skipped.items()):
        report.errors.append(f"object {name}: {why}")
    for pack_id, _size, _entries in index.adopted:
        report.notes.append(f"object {pack_key(pack_id)}: named by no readable index; its "
                            "blobs are read from its authenticated header")
    stored = index.present or {}
    for pack_id in sorted(stored.keys() - index.packs.keys() - index.lost_packs.keys()):
        report.notes.append(f"object {pack_key(pack_id)}: unreferenced pack (harmless leftover "
                            "of an interrupted run)")
    return index


def describe_snapshot(snap: Snapshot) -> str:
    """``snapshot 3fa1c2d0 (2026-11-28 03:00:12 nightly)``: id, time and tags."""
    tags = f" {','.join(snap.tags)}" if snap.tags else ""
    return f"snapshot {snap.short_id} ({snap.time[:19].replace('T', ' ')}{tags})"


def _unreadable(index: Index, damaged: Mapping[bytes, str], hex_id: str,
                needed: set[str]) -> str | None:
    """Why the blob cannot be restored (``missing pack 80abf9…``), or None if it can.
    A lost pack it should be in joins ``needed``."""
    try:
        blob_id = bytes.fromhex(hex_id)
    except ValueError:
        return "a malformed id"
    if blob_id in index:
        pack_id = damaged.get(blob_id)
        return None if pack_id is None else f"damaged pack {pack_id[:12]}…"
    packs = index.lost_in(blob_id)
    if not packs:
        return "no index"
    needed.update(packs)
    kinds = {"missing" if index.lost_packs.get(p, "missing") == "missing" else "truncated"
             for p in packs}
    kind = kinds.pop() if len(kinds) == 1 else "missing or truncated"
    return (f"{kind} pack{'s' if len(packs) > 1 else ''} "
            f"{', '.join(p[:12] + '…' for p in sorted(packs))}")


def _check_snapshots(repo: Repository, index: Index, report: CheckReport,
                     damaged: Mapping[bytes, str],
                     needed: set[str]) -> tuple[list[Snapshot], set[str]]:
    """Every snapshot that references a blob that cannot be restored, named once with
    how many blobs and where. Returns the readable snapshots and every id listed."""
    snaps = []
    ids = set(repo.snapshot_ids())
    with SnapshotReader(repo, index) as reader:
        for snapshot_id in sorted(ids):
            name = f"snapshots/{snapshot_id}"
            try:
                snap = repo.load_snapshot(snapshot_id)
            except DrsyncError as err:
                if _store_down(err):
                    raise
                report.errors.append(f"object {name}: {err}" if name not in str(err) else str(err))
                continue
            snaps.append(snap)
            report.snapshots += 1
            shape: list[tuple[str, str]] = []
            problem = _cannot_restore(reader, index, damaged, snap, needed, shape)
            if problem is not None:
                report.errors.append(f"{describe_snapshot(snap)} cannot be fully restored: "
                                     f"{problem}")
            report.errors += [f"object {name}: snapshot {snap.short_id}: unsafe entry "
                              f"{path!r}: {reason} (a restore refuses it)"
                              for path, reason in tree_problems(shape)]
    return snaps, ids


def _cannot_restore(reader: SnapshotReader, index: Index, damaged: Mapping[bytes, str],
                    snap: Snapshot, needed: set[str],
                    shape: list[tuple[str, str]]) -> str | None:
    """Why ``snap`` cannot be restored whole (``2 blobs in missing pack 80abf9…``);
    ``shape`` is filled with each entry's (path, type) for the path-safety check."""
    problems: dict[str, set[str]] = {}

    def note(hex_ids: list[str]) -> None:
        for hex_id in hex_ids:
            where = _unreadable(index, damaged, hex_id, needed)
            if where is not None:
                problems.setdefault(where, set()).add(hex_id)

    note(snap.tree)
    walk_error = "its file list cannot be read" if problems else None
    if not problems:
        try:
            for entry in reader.entries(snap):
                shape.append((entry.path, entry.type))
                note(entry.chunks)
        except (DrsyncError, ValueError) as err:
            if isinstance(err, DrsyncError) and _store_down(err):
                raise
            walk_error = str(err)
    parts = [f"{len(blobs)} blob{'s' if len(blobs) > 1 else ''} in {where}"
             for where, blobs in sorted(problems.items())]
    parts += [walk_error] if walk_error else []
    return "; ".join(parts) or None


def recorded_snapshots_missing(known: Mapping[str, str], present_ids: Iterable[str],
                               snaps: Iterable[Snapshot]) -> tuple[list[str], list[str]]:
    """Snapshots the local catalog recorded that the store no longer holds: (errors,
    notes). One newer than every snapshot the store holds means the store was rolled
    back (or its newest snapshot deleted), an error; an older one is a note."""
    present = set(present_ids)
    newest = max((_when(s.time) for s in snaps), default=None)
    errors, notes = [], []
    for snapshot_id, time_text in sorted(known.items(), key=lambda kv: (kv[1], kv[0])):
        if snapshot_id in present:
            continue
        line = (f"snapshot {snapshot_id[:8]} ({time_text[:19].replace('T', ' ')}) recorded in "
                "the catalog is missing from the store")
        if newest is None or _when(time_text) > newest:
            errors.append(line + " (rolled back or deleted)")
        else:
            notes.append(line + " (deleted?)")
    return errors, notes


def _when(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _check_wal(repo: Repository, report: CheckReport, snaps: list[Snapshot],
               objects: Mapping[str, int], read_data: bool,
               progress: Callable[[int], None] | None) -> None:
    """Archived WAL: every object authenticated under its own name (``read_data``), and
    after each base backup, the chain without gaps."""
    from drsync.wal.archive import WalArchive, base_backups

    archived = []
    for key in sorted(objects):
        name = key.removeprefix(WAL_PREFIX)
        if not is_wal_name(name):
            report.errors.append(f"object {key}: not a WAL file name")
            continue
        if read_data:
            try:
                data = repo.store.get(key)
                if progress is not None:
                    progress(len(data))
                report.bytes_verified += len(data)
                open_wal(repo.key, data, name)
            except (FormatError, DrsyncError) as err:
                if isinstance(err, DrsyncError) and _store_down(err):
                    raise
                report.errors.append(f"object {key}: {err}" if key not in str(err) else str(err))
                continue  # damaged: a gap in the chain, too
        archived.append(name)
    report.wal_files = len(objects)
    _check_binlogs(report, snaps, set(archived))
    try:
        bases = base_backups(snaps)
    except (KeyError, ValueError, TypeError) as err:
        report.errors.append(f"a pg_base snapshot lacks its WAL positions: {err}")
        return
    if not bases:
        return
    archive = WalArchive(repo, bases, archived)
    try:
        coverage = archive.coverage()
    except DrsyncError as err:
        if _store_down(err):
            raise
        report.errors.append(str(err))
        return
    segments = [n for n in archived if len(n) == 24]
    for base, cov in zip(bases, coverage, strict=True):
        gap = cov.missing if not cov.complete else (
            next_segment(cov.last_wal, base.segment_size) if cov.last_wal else None)
        if gap is None:
            continue
        later = [n for n in segments if n[:8] == gap[:8] and n > gap]
        label = f"base backup {base.snapshot_id[:8]} ({base.consistent_at[:19].replace('T', ' ')})"
        if not later:
            if not cov.complete:
                report.notes.append(f"{label}: WAL from {gap} is not in the store yet "
                                    "(not shipped?); it cannot be restored without it")
            continue
        restart = next((b for b in bases if b.wal_restarts and b.timeline == base.timeline
                        and gap < b.start_wal and all(n >= b.start_wal for n in later)), None)
        if cov.complete and restart is not None:
            report.notes.append(f"{label}: restorable up to {cov.last_wal}; the WAL after it "
                                f"was left out by policy until base backup "
                                f"{restart.snapshot_id[:8]} (pitr = false)")
            continue
        if cov.complete:
            report.errors.append(f"{label}: gap in the WAL chain: {gap} is missing, "
                                 f"{len(later)} later segment(s) archived; recovery stops at "
                                 f"{cov.last_wal}")
        else:
            report.errors.append(f"{label} cannot be restored: WAL {gap} needed to reach "
                                 f"consistency is missing ({len(later)} later segment(s) "
                                 "archived)")


def _check_binlogs(report: CheckReport, snaps: list[Snapshot], archived: set[str]) -> None:
    """MariaDB dumps: the archived binlogs after each dump's position without a hole (the
    chain a point-in-time restore replays; pitr-range walks the same one)."""
    from drsync.wal.coverage import binlog_chain, binlog_gap

    for snap in snaps:
        if snap.source_kind != "mariadb_dump":
            continue
        first = str(snap.source_spec.get("binlog_file"))
        chain = binlog_chain(first, archived)
        gap = binlog_gap(first, chain, archived)
        if gap is None:
            continue
        later = sum(1 for n in archived if n.rpartition(".")[0] == gap.rpartition(".")[0]
                    and n > gap)
        at = str(snap.source_spec.get("consistent_at") or snap.time)[:19].replace("T", " ")
        stops = f"replay stops at {chain[-1]}" if chain else "no binlog after it can be replayed"
        report.errors.append(f"MariaDB dump {snap.short_id} ({at}): gap in the binlog chain: "
                             f"{gap} is missing, {later} later binlog(s) archived; {stops}")


def _read_packs(repo: Repository, index: Index, stored: dict[str, int], report: CheckReport,
                progress: Callable[[int], None] | None) -> dict[bytes, str]:
    """Read every pack whole; return the blobs that fail authentication (id -> pack)."""
    by_pack: dict[str, list[tuple[bytes, BlobLocation]]] = {}
    for blob_id, loc in index.items():
        by_pack.setdefault(loc.pack_id, []).append((blob_id, loc))
    damaged: dict[bytes, str] = {}
    for pack_id in sorted(stored):
        name = pack_key(pack_id)
        try:
            try:
                data = repo.store.get(name)
            except IntegrityError:
                # S3: the bytes are unlike those uploaded (their recorded SHA-256). Read
                # ranged, which takes them as they are, to name what in them is damaged.
                data = repo.store.get(name, 0, stored[pack_id])
        except DrsyncError as err:
            if _store_down(err):
                raise
            report.errors.append(f"object {name}: {err}" if name not in str(err) else str(err))
            damaged.update((blob_id, pack_id) for blob_id, _loc in by_pack.get(pack_id, []))
            continue
        if progress is not None:
            progress(len(data))
        report.bytes_verified += len(data)
        if object_id(data) != pack_id:
            report.errors.append(f"object {name}: content does not match its name (SHA-256)")
            report.damaged_packs.add(pack_id)
        try:
            read_pack_header(repo.key, data)
        except FormatError as err:
            report.errors.append(f"object {name}: pack header: {err}")
        ranges: dict[int, list[tuple[bytes, BlobLocation]]] = {}
        for blob_id, loc in by_pack.get(pack_id, []):
            ranges.setdefault(loc.offset, []).append((blob_id, loc))
        for offset, blobs in sorted(ranges.items()):
            blob_id, loc = blobs[0]
            sealed = data[offset : offset + loc.length]
            try:
                repo.unseal_range(loc, sealed, blob_id)  # a group: opened once, all verified
            except SealError as err:
                ids = sorted(b for b, _loc in blobs)
                damaged.update((b, pack_id) for b in ids)
                what = (f"blob {blob_id.hex()[:16]}" if loc.group is None else
                        f"group of {len(loc.group)} blobs "
                        f"({', '.join(b.hex()[:16] for b in loc.group.ids)})")
                report.errors.append(f"object {name} offset {offset}: {what}: {err}")
    return damaged
