"""Checking a repository: structure always, every byte with ``read_data``.

Errors name the object (and the offset, for a blob) and what is wrong.
Packs no index names are the harmless leftovers of an interrupted run and
are reported as notes, not errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drsync.errors import DrsyncError, IntegrityError
from drsync.repo.crypto import SealError
from drsync.repo.index import Index, pack_key
from drsync.repo.keys import parse_wrapping
from drsync.repo.lock import STALE_AFTER, LockInfo, read_lock
from drsync.repo.objects import TYPE_INDEX, FormatError, object_id
from drsync.repo.pack import read_pack_header
from drsync.repo.reader import SnapshotReader
from drsync.repo.repository import Repository
from drsync.store.capabilities import CapabilityUnavailable, PendingUploads, capability

__all__ = ["CheckReport", "check_repository"]


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    snapshots: int = 0
    packs: int = 0
    blobs: int = 0
    bytes_verified: int = 0
    uploads: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": self.errors, "notes": self.notes,
                "snapshots": self.snapshots, "packs": self.packs, "blobs": self.blobs,
                "bytes_verified": self.bytes_verified, "uploads": self.uploads}


def check_repository(repo: Repository, *, read_data: bool = False,
                     progress: Callable[[int], None] | None = None,
                     on_total: Callable[[int], None] | None = None,
                     cleanup_uploads: bool = False) -> CheckReport:
    """Check structure (and with ``read_data`` every byte); ``on_total`` is told how many
    bytes will be read, ``progress`` each time some are."""
    report = CheckReport()
    _check_keys(repo, report)
    index = _load_index(repo, report)
    stored = {info.key.rsplit("/", 1)[-1]: info.size for info in repo.store.list("data/")}
    report.packs = len(stored)
    if read_data and on_total is not None:
        on_total(sum(stored.values()))
    report.blobs = len(index)
    for pack_id, size in sorted(index.packs.items()):
        if pack_id not in stored:
            report.errors.append(f"object {pack_key(pack_id)}: missing (named by the index)")
        elif stored[pack_id] != size:
            report.errors.append(f"object {pack_key(pack_id)}: truncated or extended: "
                                 f"{stored[pack_id]} bytes, the index says {size}")
    for pack_id in sorted(stored.keys() - index.packs.keys()):
        report.notes.append(f"object {pack_key(pack_id)}: unreferenced pack (harmless leftover "
                            "of an interrupted run)")
    _check_snapshots(repo, index, report)
    if read_data:
        _read_packs(repo, index, stored, report, progress)
    lock = read_lock(repo.store)
    if lock is not None:
        state = "stale" if lock.is_stale() else "held"
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
    for info in repo.store.list("keys/"):
        try:
            parse_wrapping(repo.store.get(info.key))
        except (FormatError, DrsyncError) as err:
            report.errors.append(f"object {info.key}: {err}")


def _load_index(repo: Repository, report: CheckReport) -> Index:
    index = Index()
    for name in repo.index_names():
        try:
            index.merge_document(repo.load_document(TYPE_INDEX, name))
        except IntegrityError as err:
            report.errors.append(str(err))
        except (KeyError, ValueError, TypeError) as err:
            report.errors.append(f"object {name}: malformed index: {err}")
    return index


def _check_snapshots(repo: Repository, index: Index, report: CheckReport) -> None:
    with SnapshotReader(repo, index) as reader:
        for snapshot_id in sorted(repo.snapshot_ids()):
            name = f"snapshots/{snapshot_id}"
            try:
                snap = repo.load_snapshot(snapshot_id)
                missing = [c for c in snap.tree if bytes.fromhex(c) not in index]
                if missing:
                    report.errors.append(f"object {name}: tree blob {missing[0][:16]} missing "
                                         f"from the index ({len(missing)} in all)")
                    continue
                for entry in reader.entries(snap):
                    lost = [c for c in entry.chunks if bytes.fromhex(c) not in index]
                    if lost:
                        report.errors.append(
                            f"object {name}: {entry.path}: {len(lost)} chunk(s) missing from "
                            f"the index, first {lost[0][:16]}")
                report.snapshots += 1
            except (DrsyncError, ValueError) as err:
                report.errors.append(f"object {name}: {err}" if name not in str(err) else str(err))


def _read_packs(repo: Repository, index: Index, stored: dict[str, int], report: CheckReport,
                progress: Callable[[int], None] | None) -> None:
    by_pack: dict[str, list[tuple[bytes, Any]]] = {}
    for blob_id, loc in index.items():
        by_pack.setdefault(loc.pack_id, []).append((blob_id, loc))
    for pack_id in sorted(stored):
        name = pack_key(pack_id)
        try:
            data = repo.store.get(name)
        except DrsyncError as err:
            report.errors.append(f"object {name}: {err}")
            continue
        if progress is not None:
            progress(len(data))
        report.bytes_verified += len(data)
        if object_id(data) != pack_id:
            report.errors.append(f"object {name}: content does not match its name (SHA-256)")
        try:
            read_pack_header(repo.key, data)
        except FormatError as err:
            report.errors.append(f"object {name}: pack header: {err}")
        for blob_id, loc in sorted(by_pack.get(pack_id, []), key=lambda b: b[1].offset):
            sealed = data[loc.offset : loc.offset + loc.length]
            try:
                repo.unseal_located(blob_id, loc, sealed)
            except SealError as err:
                report.errors.append(
                    f"object {name} offset {loc.offset}: blob {blob_id.hex()[:16]}: {err}")
