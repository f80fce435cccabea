"""Restore drills: prove a tenant restorable without touching production, and measure it.

A drill restores the latest snapshot to a scratch target, validates what
came back against what the backup recorded, tears the scratch down, and
records the result:

* files: every file restored (each blob verified by the restore) with the
  size the snapshot lists;
* SQLite: the database opened read-only, ``PRAGMA integrity_check``, and
  each table's row count, rowid sum and row checksum equal to the ones
  recorded at backup time (``tables`` in the snapshot's spec, see
  drsync.sources.sqlite; a snapshot older than that has only the integrity
  check, or no checksum);
* pg_dump: restored into a scratch database ``drsync_drill_<hex>`` on the
  dumped server (the recorded DSN without its masked password: ~/.pgpass or
  PGPASSWORD supply it) or the DSN given, each table's row count and row
  checksum compared with those taken in the dump's own transaction
  (drsync.sources.postgres.dump.TABLE_COUNTS_SQL), ``pg_amcheck`` where
  installed, then the database dropped;
* mariadb_dump: reloaded on a throwaway mariadbd in the scratch (or, for one
  database, into a scratch database on the server ``--mariadb-dsn`` names),
  each table's row count and row checksum compared with those taken in the
  dump's consistent snapshot (drsync.drill_mariadb);
* pg_base: the base backup and its archived WAL recovered on a throwaway
  cluster and validated there (drsync.drill_pitr).

RTO is the seconds from the drill's start to validated; RPO is the drill's
start minus the restored point (PITR: the last commit replayed; otherwise
the snapshot's time). The record goes into the store (drsync.repo.drills,
so a rebuilt catalog has it) and into the catalog (a run of kind ``drill``
and its checks). A failure of the restore itself (a damaged pack) is a
failed check naming the object, never a traceback.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drsync import __version__
from drsync.errors import DrsyncError, RestoreTargetError
from drsync.repo import Repository, Snapshot, SnapshotReader

__all__ = ["Check", "DrillResult", "Measures", "one_line", "run_drill", "run_fleet_drill"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class Measures:
    """What a drill of one kind measures beyond its checks (left None: not measured)."""

    validated: float | None = None  # time.monotonic() when validation ended
    point: datetime | None = None  # the restored point (PITR: the last commit replayed)


@dataclass
class DrillResult:
    drill_id: str
    tenant: str
    host: str
    started: datetime
    finished: datetime
    snapshot: Snapshot | None
    rto_s: float
    rpo_s: float | None
    bytes_restored: int = 0
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "failed"

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "status": self.status, "rto_s": round(self.rto_s, 3),
                "rpo_s": None if self.rpo_s is None else round(self.rpo_s, 3),
                "snapshot_id": self.snapshot.id if self.snapshot else None,
                "drill_id": self.drill_id, "bytes_restored": self.bytes_restored,
                "checks": [c.to_json() for c in self.checks]}

    def record(self) -> dict[str, Any]:
        """The drill record of the store (drsync.repo.drills) and the catalog."""
        return {"drill_id": self.drill_id, "tenant": self.tenant, "host": self.host,
                "status": self.status, "started": self.started.isoformat(),
                "finished": self.finished.isoformat(),
                "snapshot_id": self.snapshot.id if self.snapshot else None,
                "snapshot_time": self.snapshot.time if self.snapshot else None,
                "source_kind": self.snapshot.source_kind if self.snapshot else None,
                "rto_s": round(self.rto_s, 6),
                "rpo_s": None if self.rpo_s is None else round(self.rpo_s, 6),
                "bytes_restored": self.bytes_restored,
                "checks": [c.to_json() for c in self.checks], "drsync_version": __version__}


def one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else repr(err)


def _snapshot_time(snap: Snapshot) -> datetime:
    when = datetime.fromisoformat(snap.time.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _scratch(scratch_dir: str | None) -> Path:
    """A new directory of the drill's own in ``scratch_dir`` (made when missing; default
    TMPDIR); RestoreTargetError, one line, when it cannot be made."""
    try:
        if scratch_dir is not None:
            os.makedirs(scratch_dir, mode=0o700, exist_ok=True)
        # Absolute: the SQLite check opens it by a file: URI, which a relative path is not.
        return Path(tempfile.mkdtemp(prefix="drsync-drill-", dir=scratch_dir)).absolute()
    except OSError as err:
        where = scratch_dir or tempfile.gettempdir()
        raise RestoreTargetError(f"cannot make the drill's scratch directory in {where}: "
                                 f"{err.strerror or err}") from None


def run_drill(repo: Repository, *, tenant: str | None = None, host: str | None = None,
              ref: str = "latest", pg_dsn: str | None = None, pg_bindir: str | None = None,
              mariadb_dsn: str | None = None,
              scratch_dir: str | None = None, catalog: Any = None,
              record: bool = True,
              progress: Callable[[int], None] | None = None) -> DrillResult:
    """Drill ``ref`` (default the latest snapshot) of ``repo``; record it in the store and,
    when given, ``catalog`` (a drsync.catalog.db.Catalog). The scratch is always removed.
    ``progress`` is told the bytes restored as they are written (files and SQLite)."""
    host = host or socket.gethostname()
    tenant = tenant or host
    started_at = datetime.now(UTC)
    started = time.monotonic()
    checks: list[Check] = []
    snap: Snapshot | None = None
    written = 0
    measures = Measures()
    try:
        snap = repo.find_snapshot(ref)
    except DrsyncError as err:
        checks.append(Check("snapshot", False, one_line(err)))
    if snap is not None:
        checks.append(Check("snapshot", True, f"{snap.short_id} ({snap.source_kind}) of "
                                              f"{snap.time}"))
        scratch = _scratch(scratch_dir)
        try:
            drill: Callable[..., int] = _DRILLS.get(snap.source_kind) or _drill_files
            written = drill(repo, snap, scratch, checks, pg_dsn=pg_dsn, pg_bindir=pg_bindir,
                            mariadb_dsn=mariadb_dsn, measures=measures, progress=progress)
            if measures.validated is None:
                measures.validated = time.monotonic()
        except DrsyncError as err:
            checks.append(Check("restore", False, one_line(err)))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if scratch.exists():
                checks.append(Check("teardown", False, f"scratch {scratch} not removed"))
    rto = (measures.validated or time.monotonic()) - started
    finished = datetime.now(UTC)
    point = measures.point or (_snapshot_time(snap) if snap is not None else None)
    rpo = (started_at - point).total_seconds() if point is not None else None
    result = DrillResult(uuid.uuid4().hex, tenant, host, started_at, finished, snap, rto, rpo,
                         written, checks)
    if record:
        _record(repo, result, catalog)
    return result


def _record(repo: Repository, result: DrillResult, catalog: Any) -> None:
    from drsync.repo.drills import save_drill

    record = result.record()
    try:
        save_drill(repo, record)
    except Exception as err:  # the store is down or read-only: the drill's result stands
        repo.warn(f"drill record {result.drill_id[:8]} not written to the store: {err}")
    if catalog is not None:
        catalog.import_drills(repo.url, [record])


# -- per source kind: restore into ``scratch``, append checks, return bytes restored -----

def _restore_tree(repo: Repository, snap: Snapshot, scratch: Path, checks: list[Check],
                  progress: Callable[[int], None] | None = None) -> tuple[Path, int]:
    from drsync.restore import restore_snapshot

    target = scratch / "restore"
    result = restore_snapshot(repo, snap.id, target=target, progress=progress)
    checks.append(Check("restore", True, f"{result.items} items, {result.bytes_written} bytes, "
                                         "every blob verified"))
    return target, result.bytes_written


def _drill_files(repo: Repository, snap: Snapshot, scratch: Path, checks: list[Check], *,
                 progress: Callable[[int], None] | None = None, **_: Any) -> int:
    target, written = _restore_tree(repo, snap, scratch, checks, progress)
    wrong: list[str] = []
    files = 0
    with SnapshotReader(repo) as reader:
        for entry in reader.entries(snap):
            path = target / entry.path
            if entry.type in ("file", "stream"):
                files += 1
                size = path.stat().st_size if path.is_file() else None
                if size != entry.size:
                    wrong.append(f"{entry.path} ({'missing' if size is None else size} bytes, "
                                 f"snapshot says {entry.size})")
            elif entry.type == "dir" and not path.is_dir():
                wrong.append(f"{entry.path} (directory missing)")
            elif entry.type == "symlink" and not path.is_symlink():
                wrong.append(f"{entry.path} (symlink missing)")
    checks.append(Check("files", not wrong, f"{files} files with the snapshot's sizes"
                        if not wrong else f"{len(wrong)} wrong: {', '.join(wrong[:5])}"))
    return written


def _compare_counts(checks: list[Check], recorded: Any, found: dict[str, dict[str, int]],
                    what: str) -> None:
    if not isinstance(recorded, dict):
        checks.append(Check("table counts", True, "not recorded by this snapshot's backup "
                                                  "(older drsync): not compared"))
        return
    wrong = []
    for table, expected in sorted(recorded.items()):
        got = found.get(table)
        for key, value in sorted(expected.items()) if isinstance(expected, dict) else ():
            if got is None or got.get(key) != value:
                wrong.append(f"{table}: {key} {'missing' if got is None else got.get(key)}, "
                             f"recorded {value}")
    extra = sorted(set(found) - set(recorded))
    wrong += [f"{table}: not in the backup's counts" for table in extra]
    rows = sum(int(t.get("rows", 0)) for t in recorded.values() if isinstance(t, dict))
    # A snapshot older than checksums: its rows were counted, not compared value by value.
    unsummed = any(isinstance(t, dict) and "checksum" not in t for t in recorded.values())
    note = (" (counts only: this snapshot's backup recorded no checksums, older drsync)"
            if unsummed else "")
    checks.append(Check("table counts", not wrong,
                        f"{len(recorded)} {what}, {rows} rows as recorded{note}" if not wrong
                        else "; ".join(wrong[:5]) + (f" (+{len(wrong) - 5} more)"
                                                     if len(wrong) > 5 else "")))


def _drill_sqlite(repo: Repository, snap: Snapshot, scratch: Path, checks: list[Check], *,
                  progress: Callable[[int], None] | None = None, **_: Any) -> int:
    from drsync.sources.sqlite import table_counts

    target, written = _restore_tree(repo, snap, scratch, checks, progress)
    databases = [p for p in target.iterdir() if p.is_file()]
    if len(databases) != 1:
        checks.append(Check("sqlite open", False, f"{len(databases)} files restored, "
                                                  "expected one database"))
        return written
    try:
        db = sqlite3.connect(f"{databases[0].as_uri()}?mode=ro", uri=True)
        try:
            verdict = [r[0] for r in db.execute("PRAGMA integrity_check")]
            found = table_counts(db)
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        checks.append(Check("sqlite integrity_check", False, f"{databases[0].name}: {err}"))
        return written
    checks.append(Check("sqlite integrity_check", verdict == ["ok"], "; ".join(verdict[:5])))
    _compare_counts(checks, snap.source_spec.get("tables"), found, "tables")
    return written


def _drill_pg_dump(repo: Repository, snap: Snapshot, scratch: Path, checks: list[Check],
                   *, pg_dsn: str | None, pg_bindir: str | None, **_: Any) -> int:
    from drsync.pgrestore import restore_logical
    from drsync.sources.postgres.conninfo import split_password
    from drsync.sources.postgres.dump import count_tables
    from drsync.sources.postgres.tools import PgTools, dsn_with_dbname, quote_ident

    # The recorded DSN had its password masked: without it libpq uses ~/.pgpass, PGPASSWORD.
    dsn = pg_dsn or split_password(str(snap.source_spec.get("dsn") or ""))[0]
    if not dsn:
        checks.append(Check("restore", False, "no DSN to restore the dump to (give --pg-dsn)"))
        return 0
    tools = PgTools(pg_bindir)
    name = f"drsync_drill_{secrets.token_hex(6)}"
    scratch_dsn = dsn_with_dbname(dsn, name)
    try:
        result = restore_logical(repo, snap.id, scratch_dsn, no_owner=True, pg_bindir=pg_bindir)
        checks.append(Check("restore", True, f"into scratch database {name}: "
                                             f"{result.bytes_written} bytes, every blob verified"))
        found = count_tables(scratch_dsn, tools)
        _compare_counts(checks, snap.source_spec.get("tables"), found, "tables")
        _amcheck_database(tools, scratch_dsn, checks)
        return result.bytes_written
    finally:
        _drop_database(tools, dsn, name, quote_ident(name), checks)


def _amcheck_database(tools: Any, dsn: str, checks: list[Check]) -> None:
    """pg_amcheck of the scratch database (heap and B-tree indexes), where installed; the
    amcheck extension is created in the scratch database when missing (it is dropped)."""
    from drsync.errors import SourceError
    from drsync.sources.postgres.tools import PgConnection

    try:
        exe = tools.path("pg_amcheck")
    except SourceError:
        exe = ""
    if not exe or not os.access(exe, os.X_OK):
        checks.append(Check("pg_amcheck", True, "pg_amcheck is not installed: not run"))
        return
    conn = PgConnection.of(dsn)
    # The positional database may be a connection string (-d is a name pattern).
    done = subprocess.run([exe, "--install-missing", conn.dsn], capture_output=True,
                          text=True, timeout=3600, env=conn.env())
    if done.returncode == 0:
        checks.append(Check("pg_amcheck", True, "heap and B-tree indexes: no corruption"))
    else:
        lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
        checks.append(Check("pg_amcheck", False, f"exit {done.returncode}: "
                                                 + "; ".join(lines[:3])))


def _drop_database(tools: Any, dsn: str, name: str, quoted: str, checks: list[Check]) -> None:
    from drsync.sources.postgres.dump import MAINTENANCE_DATABASES
    from drsync.sources.postgres.tools import dsn_with_dbname, quote_literal

    error = ""
    for maintenance in MAINTENANCE_DATABASES:
        other = dsn_with_dbname(dsn, maintenance)
        try:
            exists = tools.query(other, "SELECT count(*) FROM pg_database WHERE datname = "
                                 + quote_literal(name))[0][0] != "0"
            if exists:
                tools.query(other, f"DROP DATABASE {quoted} WITH (FORCE)")
            return
        except DrsyncError as err:
            error = one_line(err)
    checks.append(Check("teardown", False, f"scratch database {name} not dropped: {error}"))


def _drill_mariadb_dump(repo: Repository, snap: Snapshot, scratch: Path, checks: list[Check],
                        **kw: Any) -> int:
    from drsync.drill_mariadb import drill_mariadb_dump

    return drill_mariadb_dump(repo, snap, scratch, checks, **kw)


def _drill_pg_base(repo: Repository, snap: Snapshot, scratch: Path, checks: list[Check],
                   **kw: Any) -> int:
    from drsync.drill_pitr import drill_pitr

    return drill_pitr(repo, snap, scratch, checks, **kw)


_DRILLS: dict[str, Callable[..., int]] = {
    "pg_base": _drill_pg_base,
    "files": _drill_files,
    "stdin": _drill_files,
    "sqlite": _drill_sqlite,
    "pg_dump": _drill_pg_dump,
    "mariadb_dump": _drill_mariadb_dump,
}


def run_fleet_drill(fleet_path: str, name: str, settings: Any, *, ref: str = "latest",
                    pg_dsn: str | None = None, mariadb_dsn: str | None = None,
                    scratch_dir: str | None = None,
                    catalog: Any = None,
                    progress: Callable[[int], None] | None = None) -> DrillResult:
    """Drill tenant ``name`` of the fleet file on the secondary side: its repository opened
    as ``dr`` opens it (drsync.dr.probe.open_tenant: the tenant's key_file, else the
    fleet's escrow key; the config's store options). UsageError for an unknown tenant."""
    from drsync.dr.probe import open_tenant
    from drsync.errors import UsageError
    from drsync.plan.fleetfile import load_fleet

    fleet = load_fleet(fleet_path, planning=False)
    try:
        tenant = fleet.tenant(name)
    except KeyError:
        known = ", ".join(t.name for t in fleet.tenants) or "none"
        raise UsageError(f"{fleet_path}: no tenant {name!r} (tenants: {known})") from None
    repo = open_tenant(fleet, tenant, replace(settings, cache=False))  # the store, not a cache
    return run_drill(repo, tenant=tenant.name, host=socket.gethostname(), ref=ref,
                     pg_dsn=pg_dsn, pg_bindir=settings.pg_bindir, mariadb_dsn=mariadb_dsn,
                     scratch_dir=scratch_dir, catalog=catalog, progress=progress)
