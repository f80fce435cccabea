"""The backup service: one source into one snapshot, recorded in the catalog and the store.

Every run's outcome (ok, partial, or failed once the repository was opened,
unless the store is what failed) is also sealed into the store as a run record
(drsync.repo.runs), so the secondary side has it even when the catalog is
lost. Failing to write that record is a warning: it never replaces the run's
own result or error.
"""

from __future__ import annotations

import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from drsync import __version__
from drsync.catalog import RunRecorder
from drsync.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    DrsyncError,
    SourceError,
    StoreError,
    UsageError,
)
from drsync.repo import Entry, Repository, SnapshotWriter
from drsync.repo.lock import RepositoryLock
from drsync.repo.resume import abort_interrupted_uploads
from drsync.repo.writer import WriterStats, adopt_orphan_packs
from drsync.sources import ItemMeta, SourceItem, SourceProblem, scan_paths, sqlite_consistent_copy
from drsync.sources.blocks import aligned_chunk

__all__ = ["BackupEstimate", "BackupRequest", "BackupResult", "estimate_backup", "run_backup"]


@dataclass
class BackupRequest:
    paths: list[str] = field(default_factory=list)
    sqlite: str | None = None
    stdin_name: str | None = None
    stdin: BinaryIO | None = None  # defaults to sys.stdin's bytes
    pg_dump: str | None = None  # a PostgreSQL DSN: logical dump (custom format, -Z0)
    pg_dumpall_globals: bool = False  # with pg_dump: also roles and tablespaces
    pg_base: str | None = None  # a PostgreSQL DSN: physical base backup
    tags: list[str] = field(default_factory=list)
    host: str | None = None
    tenant: str | None = None  # the fleet file's name for this tenant (default: host)
    planned_start: datetime | None = None  # the schedule's slot, when a scheduler runs it
    deadline: datetime | None = None
    compression_level: int | None = None
    workers: int | None = None
    pg_bindir: str | None = None  # PostgreSQL's programs (default: PATH, then Debian's)
    # asked between chunks and before the snapshot: a reason ("deadline") stops the run
    # with RunInterrupted, no snapshot (see drsync.repo.writer)
    should_stop: Callable[[], str | None] | None = None

    def kind(self) -> str:
        given = [k for k, v in (("files", self.paths), ("sqlite", self.sqlite),
                                ("stdin", self.stdin_name), ("pg_dump", self.pg_dump),
                                ("pg_base", self.pg_base)) if v]
        if len(given) != 1:
            raise UsageError("give exactly one source: PATH..., --sqlite DB, --stdin-name NAME, "
                             "--pg-dump DSN or --pg-base DSN")
        if self.pg_dumpall_globals and given[0] != "pg_dump":
            raise UsageError("--pg-dumpall-globals goes with --pg-dump")
        return given[0]

    def describe(self) -> str:
        kind = self.kind()
        if kind == "files":
            return " ".join(self.paths)
        if kind in ("pg_dump", "pg_base"):
            from drsync.sources.postgres.tools import redact

            return f"{kind}:{redact(self.pg_dump or self.pg_base or '')}"
        return f"{kind}:{self.sqlite or self.stdin_name}"


@dataclass
class BackupResult:
    snapshot_id: str
    bytes_read: int
    bytes_added: int
    duration_s: float
    items: int
    problems: list[SourceProblem]
    run_id: str = ""

    @property
    def mb_per_s(self) -> float:
        """Input megabytes (10^6 bytes) read per second."""
        return self.bytes_read / 1e6 / self.duration_s if self.duration_s else 0.0

    @property
    def partial(self) -> bool:
        return any(p.partial for p in self.problems)

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.partial else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "snapshot_id": self.snapshot_id,
            "status": "partial" if self.partial else "ok",
            "bytes_read": self.bytes_read,
            "bytes_added": self.bytes_added,
            "duration_s": round(self.duration_s, 6),
            "mb_per_s": round(self.mb_per_s, 3),
            "items": self.items,
            "problems": [{"path": p.path, "reason": p.reason} for p in self.problems],
        }


def _to_entry(meta: ItemMeta) -> Entry:
    return Entry(meta.path, meta.type, meta.mode, meta.mtime_ns, meta.size, meta.target)


def _items(req: BackupRequest, stack: ExitStack, problems: list[SourceProblem],
           spec: dict[str, Any]) -> Iterator[SourceItem]:
    kind = req.kind()
    if kind == "files":
        spec["paths"] = list(req.paths)
        yield from scan_paths(req.paths, problems)
    elif kind == "sqlite":
        assert req.sqlite is not None
        copy = stack.enter_context(sqlite_consistent_copy(req.sqlite))
        spec.update(copy.info)
        spec["fixed_chunk"] = aligned_chunk(copy.info["page_size"])
        path = copy.path
        yield SourceItem(ItemMeta(copy.name, "stream", 0o600, 0, path.stat().st_size,
                                  fixed_chunk=spec["fixed_chunk"]),
                         lambda: open(path, "rb"))  # noqa: SIM115
    elif kind == "pg_dump":
        from drsync.sources.postgres import PgTools, pg_dump_source

        assert req.pg_dump is not None
        yield from stack.enter_context(
            pg_dump_source(req.pg_dump, spec, with_globals=req.pg_dumpall_globals,
                           tools=PgTools(req.pg_bindir)))
    elif kind == "pg_base":
        from drsync.sources.postgres import PgTools, base_backup_source

        assert req.pg_base is not None
        yield from stack.enter_context(base_backup_source(req.pg_base, spec,
                                                          tools=PgTools(req.pg_bindir)))
    else:
        assert req.stdin_name is not None
        if "/" in req.stdin_name or req.stdin_name in (".", ".."):
            raise UsageError(f"--stdin-name {req.stdin_name!r} must be a plain file name")
        stream = req.stdin if req.stdin is not None else sys.stdin.buffer
        spec["name"] = req.stdin_name
        yield SourceItem(ItemMeta(req.stdin_name, "stream", 0o600), lambda: stream)


def run_backup(repo: Repository, req: BackupRequest, *, catalog: RunRecorder | None = None,
               progress: Callable[[int], None] | None = None) -> BackupResult:
    """Back up one source under the writer lock; the snapshot is written last, then the
    run record (also for a failed run)."""
    kind = req.kind()
    host = req.host or socket.gethostname()
    tenant = req.tenant or host
    started_at = datetime.now(UTC)
    run_id = (catalog.start_run(repo.url, "backup", req.describe(), host, tenant=tenant,
                                started=started_at, planned_start=req.planned_start,
                                deadline=req.deadline)
              if catalog else uuid.uuid4().hex)
    record: dict[str, Any] = {
        "run_id": run_id, "tenant": tenant, "host": host, "kind": "backup",
        "source": req.describe(), "started": started_at.isoformat(),
        "planned_start": req.planned_start.isoformat() if req.planned_start else None,
        "deadline": req.deadline.isoformat() if req.deadline else None,
        "drsync_version": __version__,
    }
    started = time.monotonic()
    stats: list[WriterStats] = []  # the writer's counters, for a run that stops mid-way
    try:
        result = _backup_locked(repo, req, kind, host, started, progress, stats)
    except BaseException as err:
        message = str(err) if isinstance(err, DrsyncError) else repr(err)
        message = message.splitlines()[0] if message.strip() else repr(err)
        # A scheduler stopping the run on purpose says how to record it (``run_status``
        # on the exception: "overrun" at the deadline); anything else is a failure.
        status = getattr(err, "run_status", None)
        status = status if status in ("failed", "overrun") else "failed"
        finished = datetime.now(UTC)
        # What it read and stored before it stopped: an overrun's volume is what the
        # planner and the operator size the next night by.
        read, added = (stats[0].bytes_read, stats[0].bytes_added) if stats else (0, 0)
        done = {"bytes_read": read, "bytes_added": added, "bytes_sent": added}
        if catalog is not None:
            catalog.finish_run(run_id, status, error=message, finished=finished,
                               bytes_read=read, bytes_added=added, bytes_sent=added)
        # Not when the store itself failed (its retry deadline is spent already), nor on
        # Ctrl-C or exit: the journal has the run either way.
        if isinstance(err, Exception) and not isinstance(err, StoreError):
            _write_record(repo, {**record, "status": status, "error": message,
                                 "finished": finished.isoformat(), **done})
        raise
    result.run_id = run_id
    status = "partial" if result.partial else "ok"
    error = "; ".join(f"{p.path}: {p.reason}" for p in result.problems if p.partial) or None
    finished = datetime.now(UTC)
    if catalog is not None:
        catalog.finish_run(
            run_id, status, bytes_read=result.bytes_read, bytes_added=result.bytes_added,
            bytes_sent=result.bytes_added, snapshot_id=result.snapshot_id, error=error,
            finished=finished,
        )
    _write_record(repo, {**record, "status": status, "finished": finished.isoformat(),
                         "bytes_read": result.bytes_read, "bytes_added": result.bytes_added,
                         "bytes_sent": result.bytes_added, "snapshot_id": result.snapshot_id,
                         "error": error})
    return result


@dataclass
class BackupEstimate:
    """What a backup would add to the store, found by a dry run (``estimate_backup``)."""

    bytes_read: int
    chunks: int
    chunks_new: int
    new_raw_bytes: int  # the new chunks' plaintext
    bytes_to_add: int  # sealed, with pack and index overhead: what the link would carry
    items: int
    duration_s: float

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": True, "bytes_read": self.bytes_read, "chunks": self.chunks,
                "chunks_new": self.chunks_new, "new_raw_bytes": self.new_raw_bytes,
                "bytes_to_add": self.bytes_to_add, "items": self.items,
                "duration_s": round(self.duration_s, 6)}


def estimate_backup(repo: Repository, req: BackupRequest, *,
                    progress: Callable[[int], None] | None = None) -> BackupEstimate:
    """Read the source and chunk, hash, dedup and seal it as ``run_backup`` would, storing
    nothing: no lock, no pack, no index, no snapshot, no run record. The source is read
    in full (a pg_dump runs), so the estimate costs the CPU of a backup, not its link."""
    from drsync.repo.writer import DeltaEstimator

    kind = req.kind()
    problems: list[SourceProblem] = []
    spec: dict[str, Any] = {}
    started = time.monotonic()
    index = repo.load_index()
    estimator = DeltaEstimator(repo, index, compression_level=req.compression_level,
                               workers=req.workers, progress=progress,
                               should_stop=req.should_stop)
    with ExitStack() as stack:
        try:
            items = _feed(estimator, _items(req, stack, problems, spec), kind, problems)
            total = estimator.finish()
        except BaseException:
            estimator.abort()
            raise
    stats = estimator.stats
    return BackupEstimate(stats.bytes_read, stats.chunks, stats.chunks_new,
                          estimator.new_raw_bytes, total, items, time.monotonic() - started)


def _feed(writer: SnapshotWriter, items: Iterator[SourceItem], kind: str,
          problems: list[SourceProblem]) -> int:
    """Every item into ``writer``; an unreadable file is a problem (the run ends partial),
    an unreadable stream of any other source fails the run. Returns the item count."""
    count = 0
    for item in items:
        count += 1
        entry = _to_entry(item.meta)
        if item.open is None:
            writer.add_entry(entry)
            continue
        try:
            with item.open() as reader:
                writer.add_stream(entry, reader, fixed_size=item.meta.fixed_chunk or None)
        except OSError as err:
            origin = item.origin or item.meta.path
            if kind != "files":
                raise SourceError(f"reading {origin}: {err.strerror}") from None
            problems.append(SourceProblem(origin, err.strerror or str(err)))
    return count


def _write_record(repo: Repository, record: dict[str, Any]) -> None:
    """Seal the run record into the store; a failure is a warning, never the run's result."""
    from drsync.repo.runs import save_run

    try:
        save_run(repo, record)
    except Exception as err:  # the store is down, full, read-only: the run's outcome stands
        repo.warn(f"run record {record['run_id'][:8]} not written to the store: {err}")


def _backup_locked(repo: Repository, req: BackupRequest, kind: str, host: str,
                   started: float, progress: Callable[[int], None] | None,
                   stats: list[WriterStats]) -> BackupResult:
    problems: list[SourceProblem] = []
    spec: dict[str, Any] = {}
    with RepositoryLock(repo.store, f"backup {req.describe()}"), ExitStack() as stack:
        abort_interrupted_uploads(repo.store)  # finished ones become packs to adopt
        # The index trusts only packs listed present now: a chunk whose pack was lost is
        # stored again, never referenced in its absence.
        index = repo.load_index()
        adopt_orphan_packs(repo, index)
        writer = SnapshotWriter(repo, index, compression_level=req.compression_level,
                                workers=req.workers, progress=progress,
                                should_stop=req.should_stop)
        stats.append(writer.stats)
        try:
            items = _feed(writer, _items(req, stack, problems, spec), kind, problems)
            snap = writer.commit(
                host=host, source_kind=kind, source_spec=spec, tags=list(req.tags),
                summary={"items": items, "problems": len(problems)}, version=__version__,
            )
        except BaseException:
            writer.abort()
            raise
    return BackupResult(snap.id, writer.stats.bytes_read, writer.stats.bytes_added,
                        time.monotonic() - started, items, problems)
