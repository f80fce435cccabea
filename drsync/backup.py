"""The backup service: one source into one snapshot, recorded in the catalog and the store.

Every run's outcome (ok, partial, or failed once the repository was opened,
unless the store is what failed) is also sealed into the store as a run record
(drsync.repo.runs), so the secondary side has it even when the catalog is
lost. Failing to write that record is a warning: it never replaces the run's
own result or error.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
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
from drsync.repo import Repository, SnapshotWriter
from drsync.repo.lock import RepositoryLock
from drsync.repo.resume import abort_interrupted_uploads
from drsync.repo.runs import save_run_or_warn
from drsync.repo.writer import WriterStats, adopt_orphan_packs
from drsync.sources import FilesSource, Source, SourceItem, SourceProblem, SqliteSource, StdinSource

__all__ = ["SOURCE_KINDS", "BackupEstimate", "BackupRequest", "BackupResult", "SourceKind",
           "estimate_backup", "run_backup"]


@dataclass
class BackupRequest:
    paths: list[str] = field(default_factory=list)
    sqlite: str | None = None
    stdin_name: str | None = None
    stdin: BinaryIO | None = None  # defaults to sys.stdin's bytes
    allow_empty: bool = False  # with stdin_name: an empty stream is a snapshot, not an error
    pg_dump: str | None = None  # a PostgreSQL DSN: logical dump (custom format, -Z0)
    pg_dumpall_globals: bool = False  # with pg_dump: also roles and tablespaces
    pg_base: str | None = None  # a PostgreSQL DSN: physical base backup
    pg_base_method: str = "auto"  # with pg_base: auto, direct (the data directory), stream
    pg_base_reread: bool = False  # with pg_base: read every file, even an unchanged one
    mariadb_dump: str | None = None  # a MariaDB DSN (mariadb://user@host:port/db): mariadb-dump
    mariadb_databases: list[str] = field(default_factory=list)  # with mariadb_dump: these
    mariadb_defaults_file: str | None = None  # with mariadb_dump: an option file to include
    tags: list[str] = field(default_factory=list)
    host: str | None = None
    tenant: str | None = None  # the fleet file's name for this tenant (default: host)
    planned_start: datetime | None = None  # the schedule's slot, when a scheduler runs it
    deadline: datetime | None = None
    compression_level: int | None = None
    workers: int | None = None
    pg_bindir: str | None = None  # PostgreSQL's programs (default: PATH, then Debian's)
    # asked between chunks, before each pack upload (on the uploader threads: it must be
    # thread-safe) and before the snapshot: a reason ("deadline") stops the run with
    # RunInterrupted, no snapshot (see drsync.repo.writer)
    should_stop: Callable[[], str | None] | None = None
    spec_extra: dict[str, Any] = field(default_factory=dict)  # added to the snapshot's spec

    def kind(self) -> str:
        given = [k.kind for k in SOURCE_KINDS if getattr(self, k.field)]
        if len(given) != 1:
            raise UsageError("give exactly one source: "
                             + ", ".join(k.flag for k in SOURCE_KINDS[:-1])
                             + " or " + SOURCE_KINDS[-1].flag)
        if self.pg_dumpall_globals and given[0] != "pg_dump":
            raise UsageError("--pg-dumpall-globals goes with --pg-dump")
        if self.pg_base_method not in ("auto", "direct", "stream"):
            raise UsageError(f"pg_base_method must be auto, direct or stream, "
                             f"not {self.pg_base_method!r}")
        if (self.mariadb_databases or self.mariadb_defaults_file) and given[0] != "mariadb_dump":
            raise UsageError("--mariadb-database and --defaults-file go with --mariadb-dump")
        return given[0]

    def source(self) -> Source:
        """The source this request names, built (no I/O yet)."""
        kind = self.kind()
        return next(k for k in SOURCE_KINDS if k.kind == kind).build(self)

    def describe(self) -> str:
        """What the run record names as its source. File and SQLite paths are absolute,
        made so as each source reads them (files: ``os.path.abspath``; SQLite:
        ``Path.absolute``, the path its snapshot records), symlinks unresolved: a report
        matches them with a fleet file's paths whatever directory the backup ran in."""
        kind = self.kind()
        if kind == "files":
            return FilesSource([os.path.abspath(p) for p in self.paths]).describe()
        if kind == "sqlite":
            return SqliteSource(str(Path(self.sqlite or "").absolute())).describe()
        return self.source().describe()


@dataclass(frozen=True)
class SourceKind:
    """One kind of source a backup request can name: the request field that names it,
    the command-line flag (for messages), and how to build it from the request."""

    kind: str
    field: str
    flag: str
    build: Callable[[BackupRequest], Source]


def _pg_tools(req: BackupRequest) -> Any:
    from drsync.sources.postgres import PgTools

    return PgTools(req.pg_bindir)


def _pg_dump(req: BackupRequest) -> Source:
    from drsync.sources.postgres.source import PgDumpSource

    assert req.pg_dump is not None
    return PgDumpSource(req.pg_dump, with_globals=req.pg_dumpall_globals, tools=_pg_tools(req))


def _pg_base(req: BackupRequest) -> Source:
    from drsync.sources.postgres.source import PgBaseSource

    assert req.pg_base is not None
    return PgBaseSource(req.pg_base, tools=_pg_tools(req), method=req.pg_base_method)


def _previous_base(repo: Repository, index: Any) -> Callable[[dict[str, Any]], Any]:
    """For a direct base backup: the newest direct snapshot of the same data directory,
    and which of its files may keep their chunks unread (drsync.sources.postgres.direct
    says why that is safe). Called with the source's spec once the backup has started;
    records ``reused_from`` there."""

    def previous(spec: dict[str, Any]) -> Callable[[str, int, int], list[str] | None] | None:
        from drsync.repo.reader import SnapshotReader
        from drsync.sources.postgres.direct import REUSE_MARGIN_NS

        same = ("system_identifier", "fixed_chunk", "fixed_chunk_map", "data_directory")
        candidates = [s for s in repo.snapshots() if s.source_kind == "pg_base"
                      and s.source_spec.get("method") == "direct"
                      and "read_started_ns" in s.source_spec
                      and all(s.source_spec.get(k) == spec.get(k) for k in same)]
        if not candidates:
            return None
        snap = max(candidates, key=lambda s: s.time)
        before = int(snap.source_spec["read_started_ns"]) - REUSE_MARGIN_NS
        with SnapshotReader(repo, index, workers=1) as reader:
            kept = {e.path: (e.size, e.mtime_ns, e.chunks) for e in reader.entries(snap)
                    if e.type == "file" and e.mtime_ns < before
                    and all(bytes.fromhex(c) in index for c in e.chunks)}
        spec["reused_from"] = snap.id

        def reuse(path: str, size: int, mtime_ns: int) -> list[str] | None:
            found = kept.get(path)
            if found is None or found[0] != size or found[1] != mtime_ns:
                return None
            return found[2]

        return reuse

    return previous


def _mariadb_dump(req: BackupRequest) -> Source:
    from drsync.sources.mariadb import MariadbDumpSource

    assert req.mariadb_dump is not None
    return MariadbDumpSource(req.mariadb_dump, databases=req.mariadb_databases,
                             defaults_file=req.mariadb_defaults_file)


# The registry: every source a backup can read. The database ones import on use.
SOURCE_KINDS: tuple[SourceKind, ...] = (
    SourceKind("files", "paths", "PATH...", lambda r: FilesSource(r.paths)),
    SourceKind("sqlite", "sqlite", "--sqlite DB", lambda r: SqliteSource(r.sqlite or "")),
    SourceKind("stdin", "stdin_name", "--stdin-name NAME",
               lambda r: StdinSource(r.stdin_name or "", r.stdin,
                                     allow_empty=r.allow_empty)),
    SourceKind("pg_dump", "pg_dump", "--pg-dump DSN", _pg_dump),
    SourceKind("pg_base", "pg_base", "--pg-base DSN", _pg_base),
    SourceKind("mariadb_dump", "mariadb_dump", "--mariadb-dump DSN", _mariadb_dump),
)


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


def run_backup(repo: Repository, req: BackupRequest, *, catalog: RunRecorder | None = None,
               progress: Callable[[int], None] | None = None) -> BackupResult:
    """Back up one source under the writer lock; the snapshot is written last, then the
    run record (also for a failed run)."""
    kind = req.kind()
    if any(not tag.strip() for tag in req.tags):
        raise UsageError("--tag '' is empty (an unset variable?): give the tag, or leave it out")
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
        # Not on Ctrl-C or exit (the journal has the run; the next open of the catalog
        # settles it); when the store itself failed, into the outbox without another try.
        if isinstance(err, Exception):
            save_run_or_warn(repo, {**record, "status": status, "error": message,
                                    "finished": finished.isoformat(), **done},
                             store_failed=isinstance(err, StoreError))
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
    save_run_or_warn(repo, {**record, "status": status, "finished": finished.isoformat(),
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
    in full (a pg_dump runs), so the estimate costs the CPU of a backup, not its link;
    a direct base backup skips, as the backup itself would, the files its previous one
    read that nothing wrote since (drsync.sources.postgres.direct)."""
    from drsync.repo.writer import DeltaEstimator

    source = req.source()
    started = time.monotonic()
    index = repo.load_index()
    if req.kind() == "pg_base" and not req.pg_base_reread:
        source.previous = _previous_base(repo, index)  # type: ignore[attr-defined]
    estimator = DeltaEstimator(repo, index, compression_level=req.compression_level,
                               workers=req.workers, progress=progress,
                               should_stop=req.should_stop)
    with source:
        try:
            items = _feed(estimator, source)
            total = estimator.finish()
        except BaseException:
            estimator.abort()
            raise
    stats = estimator.stats
    return BackupEstimate(stats.bytes_read, stats.chunks, stats.chunks_new,
                          estimator.new_raw_bytes, total, items, time.monotonic() - started)


def _feed(writer: SnapshotWriter, source: Source) -> int:
    """Every item of ``source`` into ``writer``; an unreadable file of a source that skips
    them is a problem (the run ends partial), any other unreadable stream fails the run.
    Returns the item count."""
    count = 0
    for item in source.items():
        count += 1
        _add(writer, item, source)
    return count


def _add(writer: SnapshotWriter, item: SourceItem, source: Source) -> None:
    if item.open is None:
        writer.add_entry(item.meta)
        return
    try:
        with item.open() as reader:
            before = _identity(reader) if source.kind == "files" else None
            read = writer.add_stream(item.meta, reader, fixed_size=item.fixed_chunk or None)
            after = _identity(reader) if before is not None else None
    except OSError as err:
        origin = item.origin or item.meta.path
        if not source.skips_unreadable:
            raise SourceError(f"reading {origin}: {err.strerror}") from None
        source.problems.append(SourceProblem(origin, err.strerror or str(err)))
        return
    if before is not None and (after != before or read != before[0]):
        # Written to (or replaced in place) while it was read: what the snapshot holds
        # may be a mix of before and after that never existed on disk, as tar says.
        origin = item.origin or item.meta.path
        assert after is not None
        source.problems.append(SourceProblem(
            origin, f"changed while it was read ({before[0]} bytes at the start, {after[0]} "
                    f"at the end, {read} read): its copy in the snapshot may be torn; back "
                    "it up again when nothing writes it"))


def _identity(reader: Any) -> tuple[int, int, int] | None:
    """A file's size, mtime and ctime, by its descriptor (None: not a file)."""
    try:
        st = os.fstat(reader.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _backup_locked(repo: Repository, req: BackupRequest, kind: str, host: str,
                   started: float, progress: Callable[[int], None] | None,
                   stats: list[WriterStats]) -> BackupResult:
    source = req.source()
    with RepositoryLock(repo.store, f"backup {req.describe()}") as lock, source:
        abort_interrupted_uploads(repo.store)  # finished ones become packs to adopt
        # The index trusts only packs listed present now: a chunk whose pack was lost is
        # stored again, never referenced in its absence.
        index = repo.load_index()
        adopt_orphan_packs(repo, index)
        writer = SnapshotWriter(repo, index, compression_level=req.compression_level,
                                workers=req.workers, progress=progress,
                                should_stop=req.should_stop)
        stats.append(writer.stats)
        if kind == "pg_base" and not req.pg_base_reread:
            source.previous = _previous_base(repo, index)  # type: ignore[attr-defined]
        problems = source.problems
        try:
            items = _feed(writer, source)
            snap = writer.commit(
                host=host, source_kind=kind, source_spec={**source.spec(), **req.spec_extra},
                tags=list(req.tags), summary={"items": items, "problems": len(problems)},
                version=__version__, before_snapshot=lock.confirm_held,
            )
        except BaseException:
            writer.abort()
            raise
    return BackupResult(snap.id, writer.stats.bytes_read, writer.stats.bytes_added,
                        time.monotonic() - started, items, list(problems))
