"""PostgreSQL restores: a logical snapshot into a database, a base backup into a data
directory configured for point-in-time recovery; and the restorable range.

The repository side (find the snapshot, verify every blob) is the same as
any restore; the PostgreSQL side is ``drsync.sources.postgres``.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drsync.catalog.records import RunRecorder
from drsync.errors import IntegrityError, UsageError
from drsync.repo import Repository, Snapshot, SnapshotReader
from drsync.repo.objects import FormatError
from drsync.repo.wal import HEADER_MAX, WAL_PREFIX, WalHeader, parse_wal_header, wal_key
from drsync.restore import Counted, RestoreRun, write_tree
from drsync.sources import FileTreeTarget, refuse_unsafe_target, unfinished_restore
from drsync.sources.postgres import (
    LOGICAL_DUMP_NAME,
    PGDATA_PREFIX,
    PgTools,
    RecoveryTarget,
    check_restore_command,
    configure_recovery,
    pg_restore_stream,
    recovery_outcome,
    start_cluster,
)
from drsync.sources.postgres.dump import GLOBALS_NAME, apply_globals, prepare_database
from drsync.sources.postgres.tools import lsn_to_int, redact
from drsync.wal.archive import wal_archive
from drsync.wal.coverage import Coverage
from drsync.wal.spool import Spool

__all__ = ["PgRestoreResult", "pitr_range", "restore_command_for", "restore_logical",
           "restore_pgdata"]


@dataclass
class PgRestoreResult:
    snapshot_id: str
    kind: str
    bytes_written: int
    duration_s: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "kind": self.kind,
                "bytes_written": self.bytes_written, "duration_s": round(self.duration_s, 6),
                **self.details}


def _expect(snap: Snapshot, kind: str, flag: str) -> None:
    if snap.source_kind != kind:
        raise UsageError(f"snapshot {snap.short_id} is a {snap.source_kind} backup; {flag} "
                         f"needs a {kind} snapshot")


def restore_logical(repo: Repository, ref: str, dsn: str, *, jobs: int = 1,
                    no_owner: bool = False, with_globals: bool = False,
                    clean: bool = False, pg_bindir: str | None = None,
                    progress: Callable[[int], None] | None = None,
                    on_snapshot: Callable[[int], None] | None = None,
                    catalog: RunRecorder | None = None,
                    tenant: str | None = None) -> PgRestoreResult:
    """Load a pg_dump snapshot into the database ``dsn`` names, creating it if it does not
    exist; an existing one must be empty unless ``clean``. ``catalog`` records the run."""
    started = time.monotonic()
    with RestoreRun(catalog, repo, f"pg_restore -> {redact(dsn)}", tenant) as run:
        snap = repo.find_snapshot(ref)
        run.snapshot_id = snap.id  # a failed restore names it too
        _expect(snap, "pg_dump", "--pg-restore")
        if on_snapshot is not None:
            on_snapshot(int(snap.summary.get("bytes_read", 0)))
        written = 0
        details: dict[str, Any] = {"database": snap.source_spec.get("database"),
                                   "consistent_at": snap.source_spec.get("consistent_at")}
        tools = PgTools(pg_bindir)
        target = prepare_database(dsn, clean=clean, tools=tools)
        details["target_database"] = target["database"]
        details["created"] = target["created"]
        with SnapshotReader(repo) as reader:
            entries = {e.path: e for e in reader.entries(snap)}
            if with_globals and GLOBALS_NAME in entries:
                details["globals_errors"] = apply_globals(
                    dsn, reader.blobs(entries[GLOBALS_NAME].chunks), tools=tools)
            dump = entries.get(LOGICAL_DUMP_NAME)
            if dump is None:
                raise UsageError(f"snapshot {snap.short_id} holds no {LOGICAL_DUMP_NAME}")

            stream = Counted(reader.blobs(dump.chunks), progress)
            pg_restore_stream(dsn, iter(stream), jobs=jobs, no_owner=no_owner, clean=clean,
                              tools=tools)
            written = stream.bytes
        details["jobs"] = jobs
        details["bytes_fetched"] = reader.stats.bytes_fetched
        run.note(snap.id, fetched=reader.stats.bytes_fetched, written=written)
    details["run_id"] = run.run_id
    return PgRestoreResult(snap.id, "pg_dump", written, time.monotonic() - started, details)


def restore_command_for(repo_url: str, *, key_file: str | None, password_file: str | None,
                        spool: str | None = None, drsync_command: str | None = None,
                        config: str | None = None) -> str:
    """The restore_command that runs wal-fetch with this restore's repository and key.

    ``config`` (the config file this restore used) goes along as ``--config``, so
    wal-fetch opens the store with the same store options and credentials; the
    repository and key are also given explicitly, so they win over the file.
    """
    if not key_file and not password_file:
        raise UsageError("a --pgdata restore needs --key-file or --password-file: "
                         "restore_command must open the repository without a prompt")
    exe = drsync_command or _own_command()
    args = [exe]
    if config:
        args += ["--config", os.path.abspath(config)]
    args += ["--repo", repo_url]
    args += ["--key-file", os.path.abspath(key_file)] if key_file else [
        "--password-file", os.path.abspath(str(password_file))]
    args.append("wal-fetch")
    if spool:
        args += ["--spool", os.path.abspath(spool)]
    return " ".join(shlex.quote(a) for a in args) + " %f %p"


def _own_command() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if os.path.basename(argv0).startswith("drsync") and os.path.exists(argv0):
        return os.path.abspath(argv0)
    return shutil.which("drsync") or "drsync"


def _owner_prefix(pgdata: Path) -> list[str]:
    """Root cannot run PostgreSQL: the cluster belongs to whoever owns the target directory."""
    if os.geteuid() != 0:
        return []
    owner = pgdata.stat().st_uid
    if owner == 0:
        raise UsageError(f"{pgdata} is owned by root; PostgreSQL cannot run as root: "
                         f"chown it to the database user (e.g. postgres) first")
    return ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"]


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give the restored tree to ``uid``; through descriptors, never following a symlink
    (a link in the restored tree must not hand a file outside it to the cluster user)."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for _dirpath, _dirs, files, dir_fd in os.fwalk(".", dir_fd=root_fd,
                                                       follow_symlinks=False):
            os.chown(dir_fd, uid, gid)
            for name in files:
                os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(root_fd)


def target_utc(target: RecoveryTarget) -> datetime | None:
    """The target time as an aware datetime when it reads as ISO 8601 with an offset or Z;
    None otherwise (no zone: the server's own; other forms the server reads itself)."""
    if not target.time:
        return None
    try:
        when = datetime.fromisoformat(target.time.strip())
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def checked_target(target: RecoveryTarget) -> RecoveryTarget:
    """``target`` as the server will take it, or UsageError before anything is written: an
    LSN must read as one, and an ISO 8601 time with 'T' or 'Z' (as pitr-range prints
    them), which recovery_target_time refuses, is given as 'YYYY-MM-DD HH:MM:SS+00:00'."""
    if target.lsn:
        lsn_to_int(target.lsn)  # UsageError: not an LSN
    when = target_utc(target)
    if when is not None:
        return replace(target, time=when.isoformat(sep=" "))
    return target


def _consistent(snap: Snapshot) -> datetime | None:
    text = snap.source_spec.get("consistent_at")
    if not text:
        return None
    when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _base_for(repo: Repository, ref: str, target: RecoveryTarget) -> Snapshot:
    """The base backup to restore: ``ref``; with a target time, ``latest`` is the newest
    base backup consistent by then. A base backup consistent after the target cannot be
    rolled back to it (its files hold what committed before it was taken, and the
    server stops at the first later commit it replays, with exit 0): refused."""
    when = target_utc(target)
    if ref == "latest" and when is not None:
        seen: list[Snapshot] = []
        repo.latest(seen=seen)  # an unreadable snapshot may be the one wanted: refused
        bases = [s for s in seen if s.source_kind == "pg_base"]
        fit = [s for s in bases if (c := _consistent(s)) is not None and c <= when]
        if fit:
            return fit[-1]
        if bases:
            first = min(bases, key=lambda s: _consistent(s) or datetime.max.replace(tzinfo=UTC))
            raise UsageError(f"--target-time {target.time} is before the oldest base backup "
                             f"({first.short_id}, consistent at "
                             f"{first.source_spec.get('consistent_at')}): nothing restores to "
                             "it")
    snap = repo.find_snapshot(ref)
    consistent = _consistent(snap) if snap.source_kind == "pg_base" else None
    if when is not None and consistent is not None and when < consistent:
        raise UsageError(f"--target-time {target.time} is before base backup {snap.short_id} "
                         f"was consistent ({snap.source_spec.get('consistent_at')}): recovery "
                         "cannot go back before it; restore an older base backup (`drsync "
                         "pitr-range` lists them), or `latest`, which picks one")
    return snap


def restore_pgdata(repo: Repository, ref: str, pgdata: str | Path, *,
                   target: RecoveryTarget, restore_command: str,
                   options: dict[str, str] | None = None, keep_archiving: bool = False,
                   start: bool = False, pg_bindir: str | None = None, delta: bool = False,
                   progress: Callable[[int], None] | None = None,
                   on_snapshot: Callable[[int], None] | None = None,
                   catalog: RunRecorder | None = None,
                   tenant: str | None = None) -> PgRestoreResult:
    """Write a base backup into ``pgdata`` (empty, or with ``delta`` any stopped data
    directory, made equal to the backup; an unfinished restore of this backup there
    is resumed so without asking), configure recovery, check that
    restore_command fetches the first WAL file needed, and (``start``) start the
    server and report where recovery stopped, as the server says."""
    started = time.monotonic()
    pgdata = refuse_unsafe_target(pgdata, delta=True, store=repo.store, flag="--pgdata")
    target = checked_target(target)  # before anything is written
    source = f"pgdata -> {pgdata}" + (" (delta)" if delta else "")
    with RestoreRun(catalog, repo, source, tenant) as run:
        snap = _base_for(repo, ref, target)
        run.snapshot_id = snap.id  # a failed restore names it too
        _expect(snap, "pg_base", "--pgdata")
        if on_snapshot is not None:
            on_snapshot(int(snap.summary.get("bytes_read", 0)))
        resumed = not delta and unfinished_restore(pgdata) == snap.id
        delta = delta or resumed
        if delta and (pgdata / "postmaster.pid").exists():
            raise UsageError(f"{pgdata}/postmaster.pid exists: PostgreSQL may be running in "
                             "it; stop it first (or remove a stale postmaster.pid)")
        if not delta and pgdata.exists() and any(pgdata.iterdir()):
            raise UsageError(f"{pgdata} is not empty; restore a data directory into an empty "
                             "one, or add --delta to make this one equal to the backup")
        pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        prefix = _owner_prefix(pgdata) if start or os.geteuid() == 0 else []
        with SnapshotReader(repo) as reader, FileTreeTarget(
                pgdata, snapshot=snap.short_id, delta=delta) as target_tree:
            done = write_tree(reader, snap, target_tree, prefix=PGDATA_PREFIX,
                              progress=progress)
        conf = configure_recovery(pgdata, restore_command, target, options=options,
                                  keep_archiving=keep_archiving)
        if os.geteuid() == 0:
            st = pgdata.stat()
            _chown_tree(pgdata, st.st_uid, st.st_gid)
        spec = snap.source_spec
        details: dict[str, Any] = {
            "pgdata": str(pgdata), "target": target.describe(), "config": str(conf),
            "restore_command": restore_command, "timeline": spec.get("timeline"),
            "start_lsn": spec.get("start_lsn"), "stop_lsn": spec.get("stop_lsn"),
            "wal_needed": [spec.get("start_wal"), spec.get("stop_wal")], "started": False,
            "delta": delta, "resumed": resumed, "bytes_fetched": reader.stats.bytes_fetched,
            "files_written": done.files_written, "files_kept": done.files_kept,
            "bytes_kept": done.bytes_kept, "bytes_reused": done.bytes_reused,
            "removed": done.removed, "recovery": None,
        }
        if spec.get("start_wal"):
            details["restore_command_checked"] = check_restore_command(
                pgdata, restore_command, str(spec["start_wal"]),
                run_as=_owner_prefix(pgdata) if os.geteuid() == 0 else [], prefetch=start)
        run.note(snap.id, fetched=reader.stats.bytes_fetched, written=done.bytes_written)
        if start:
            tools = PgTools(pg_bindir)
            server = start_cluster(pgdata, run_as=prefix, tools=tools)
            details.update(server)
            details["started"] = True
            details["recovery"] = recovery_outcome(pgdata, server, run_as=prefix, tools=tools)
        else:
            # With no server to start the check fetched outside pg_wal, where no
            # prefetcher starts; one left by an earlier run of it would be stopped here.
            from drsync.wal.prefetch import stop_prefetcher
            from drsync.wal.queue import QUEUE_DIR
            stop_prefetcher(pgdata / "pg_wal" / QUEUE_DIR)
            details["recovery_hint"] = (
                f"start it as its owner with: pg_ctl -D {pgdata} -l {pgdata}/drsync-restore.log"
                " start; where recovery stopped: SELECT pg_last_xact_replay_timestamp(), "
                "pg_last_wal_replay_lsn(), pg_walfile_name(pg_current_wal_lsn()) once it is "
                "promoted, and the log's \"recovery stopping\" line (or restore with --start, "
                "which reports them)")
    details["run_id"] = run.run_id
    return PgRestoreResult(snap.id, "pg_base", done.bytes_written,
                           time.monotonic() - started, details)


def _now() -> datetime:
    return datetime.now(UTC)


def _newest(names: list[str], read_head: Any, where: str) -> dict[str, Any] | None:
    segments = [n for n in names if len(n) == 24 or n.endswith(".partial")]
    if not segments:
        return None
    name = max(segments)
    head = _wal_header(read_head(name), f"{where}{name}")
    at = datetime.fromtimestamp(head.pushed, UTC)
    return {"wal": name, "pushed_at": at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "age_s": round((_now() - at).total_seconds(), 3)}


def _wal_header(data: bytes, where: str) -> WalHeader:
    try:
        return parse_wal_header(data)
    except FormatError as err:
        raise IntegrityError(f"{where}: {err}") from None


LATEST_COMMIT = "last commit in the archived WAL"
LATEST_PUSHED = "push time of the last archived WAL file (approximate: no commit found)"


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _last_commit(repo: Repository, read: Any, tail: list[str]) -> tuple[datetime, str] | None:
    """The newest commit timestamp in the run's last few segments, and its LSN."""
    from drsync.repo.objects import FormatError
    from drsync.repo.wal import open_wal
    from drsync.wal.records import last_commit

    for name in reversed(tail):
        try:
            _head, plain = open_wal(repo.key, read(name), name)
            end = last_commit(plain)
        except (FormatError, ValueError):
            return None  # not readable as WAL: fall back to the push time
        if end.commit_time is not None and end.commit_lsn is not None:
            lsn = end.commit_lsn
            return end.commit_time, f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
    return None


def pitr_range(repo: Repository, spool: Spool | None = None) -> dict[str, Any]:
    """Earliest and latest restorable moments, per base backup, and the RPO now."""
    archive = wal_archive(repo, spool)
    store_names, spool_names, read = archive.store_names, archive.spool_names, archive.read
    covered: list[Coverage] = archive.coverage()

    def pushed(name: str) -> str:
        head = _wal_header(read(name, HEADER_MAX), f"WAL file {name}")
        return _iso(datetime.fromtimestamp(head.pushed, UTC))

    rows = []
    for cov in covered:
        row = cov.to_json()
        row["latest"] = row["latest_lsn"] = row["latest_basis"] = None
        if cov.complete and cov.last_wal:
            found = _last_commit(repo, read, cov.tail)
            if found is not None:
                row["latest"], row["latest_lsn"] = _iso(found[0]), found[1]
                row["latest_basis"] = LATEST_COMMIT
            else:
                row["latest"], row["latest_basis"] = pushed(cov.last_wal), LATEST_PUSHED
        rows.append(row)
    complete = [r for r in rows if r["complete"]]
    store_newest = _newest(store_names, lambda n: repo.store.get(wal_key(n), 0, HEADER_MAX),
                           f"{repo.url}: object {WAL_PREFIX}")
    spool_newest = _newest(spool_names, lambda n: spool.read(n, HEADER_MAX),
                           f"spool {spool.dir}: ") if spool else None
    ages = [x["age_s"] for x in (store_newest, spool_newest) if x]
    newest = max((r for r in complete if r["latest"]), key=lambda r: r["latest"], default=None)
    return {
        "repository": repo.url,
        "earliest": min((r["consistent_at"] for r in complete), default=None),
        "latest": newest["latest"] if newest else None,
        "latest_basis": newest["latest_basis"] if newest else None,
        "base_backups": rows,
        "wal_in_store": len(store_names), "wal_in_spool": len(spool_names),
        "newest_wal_in_store": store_newest, "newest_wal_in_spool": spool_newest,
        "rpo_s": min(ages) if ages else None,
    }
