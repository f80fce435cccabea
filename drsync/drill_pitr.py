"""The PITR drill: a base backup plus its archived WAL, recovered on a throwaway cluster.

What ``drsync drill`` does with a ``pg_base`` snapshot (drsync.drill calls
``drill_pitr``), all inside the drill's scratch directory:

1. every WAL file of the base backup's unbroken run (drsync.wal.coverage.run_files:
   from its start segment, across timeline switches, to the last archived
   file, as pitr-range reports it), plus the timeline history files, is fetched from the store and
   verified (AEAD) into ``scratch/wal``: a damaged WAL object fails the ``wal``
   check naming it, before any server runs. Fetching beforehand, instead of a
   ``restore_command`` that runs ``drsync wal-fetch``, means the drill needs no
   key file on disk (a fleet drill may hold only the escrow key) and the
   cluster's user need not be able to run drsync;
2. the base backup is restored into ``scratch/data`` (drsync.pgrestore's
   ``restore_pgdata``, the public restore) with ``restore_command`` copying from
   ``scratch/wal``, recovery to the end of the WAL (``latest``), and the server
   confined to the scratch: a free port, no TCP (``listen_addresses = ''``), its
   socket and its own ``hba_file`` (local trust) in the scratch directory,
   archiving off. As root the scratch belongs to the ``postgres`` user, who runs
   the server (PostgreSQL refuses root), as drsync.testing_postgres does;
3. the server is started and waited for until recovery ended (promoted, no
   longer in recovery): it reached a consistent state and accepts queries;
4. validation: ``pg_amcheck --all`` (heap and B-tree indexes of every
   database, the amcheck extension installed where missing: the cluster is
   thrown away) where pg_amcheck is installed; every table of every database
   read to count its rows (a base backup records no counts to compare with:
   the physical copy is not one transaction);
5. the restored point is read from the server: ``pg_last_xact_replay_timestamp()``
   (it stays at the last commit replayed once recovery ended). RPO is the
   drill's start minus that commit; when no transaction was replayed, the base
   backup's consistent time;
6. the server is stopped (immediate: nothing of it is kept) whatever happened;
   drsync.drill removes the scratch.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drsync.drill import Check, Measures, one_line
from drsync.errors import DrsyncError, SourceError
from drsync.repo import Repository, Snapshot
from drsync.sources.postgres import PgTools

__all__ = ["drill_pitr"]

CLUSTER_USER = "postgres"  # who runs the scratch cluster when drsync runs as root
SUPERUSER = "postgres"  # the role the drill connects as (trust, on the scratch socket)


def _cluster_owner() -> tuple[int, int] | None:
    """(uid, gid) to give the scratch to: the postgres user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(CLUSTER_USER)
    except KeyError:
        raise SourceError(f"running as root and there is no {CLUSTER_USER!r} user to run the "
                          "scratch PostgreSQL cluster (PostgreSQL refuses root)") from None
    return pw.pw_uid, pw.pw_gid


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wal_needed(repo: Repository, snap: Snapshot) -> list[str]:
    """The timeline history files and the WAL files of the base backup's unbroken run
    (drsync.wal.coverage.run_files, what pitr-range reports); WalNotFound when a file
    needed for consistency is not archived."""
    from drsync.errors import WalNotFound
    from drsync.wal.archive import base_backups, wal_archive
    from drsync.wal.coverage import run_files

    archive = wal_archive(repo, snapshots=[snap])
    (base,) = base_backups([snap])
    names, missing, _tli = run_files(base, archive.archived, archive.timeline_switches())
    if missing is not None or not names:
        raise WalNotFound(f"{repo.url}: WAL file {missing} (needed to make base backup "
                          f"{snap.short_id} consistent) is not archived")
    return sorted(n for n in archive.archived if n.endswith(".history")) + names


def _fetch_wal(repo: Repository, names: list[str], into: Path) -> int:
    from drsync.wal.ship import fetch_file

    into.mkdir(mode=0o700)
    total = 0
    for name in names:
        fetch_file(name, into / name, repo.key, spool=None, store=repo.store)
        total += (into / name).stat().st_size
    return total


def _unreachable(scratch: Path, uid: int) -> Path | None:
    """The first parent of ``scratch`` the user ``uid`` cannot traverse, if any."""
    for parent in reversed(scratch.parents):
        st = parent.stat()
        if not (st.st_mode & 0o001 or (st.st_uid == uid and st.st_mode & 0o100)):
            return parent
    return None


def _chown(root: Path, owner: tuple[int, int] | None) -> None:
    if owner is None:
        return
    for dirpath, dirs, files in os.walk(root):
        os.chown(dirpath, *owner)
        for name in dirs + files:
            os.lchown(os.path.join(dirpath, name), *owner)


def drill_pitr(repo: Repository, snap: Snapshot, scratch: Path, checks: list[Check], *,
               pg_bindir: str | None, measures: Measures, **_: Any) -> int:
    """Restore, recover, validate and stop; append checks; return the bytes restored (the
    data directory and the WAL fetched)."""
    from drsync.pgrestore import restore_pgdata
    from drsync.sources.postgres import RecoveryTarget

    tools = PgTools(pg_bindir)
    owner = _cluster_owner()
    if owner is not None:
        blocked = _unreachable(scratch, owner[0])
        if blocked is not None:
            checks.append(Check("restore", False, f"the {CLUSTER_USER} user cannot reach the "
                                                  f"scratch {scratch}: {blocked} is closed to "
                                                  "it (give --scratch-dir under a directory "
                                                  "it can traverse, e.g. /var/tmp)"))
            return 0
    wal_dir, pgdata = scratch / "wal", scratch / "data"
    try:
        names = _wal_needed(repo, snap)
        wal_bytes = _fetch_wal(repo, names, wal_dir)
    except DrsyncError as err:
        checks.append(Check("wal", False, one_line(err)))
        return 0
    segments = [n for n in names if not n.endswith(".history")]
    checks.append(Check("wal", True, f"{len(segments)} WAL files ({segments[0]} to "
                                     f"{segments[-1]}), {wal_bytes} bytes, every one verified"))
    port = _free_port()
    hba = scratch / "drill_hba.conf"
    hba.write_text("local all all trust\n")
    pgdata.mkdir(mode=0o700)
    os.chmod(scratch, 0o700)
    _chown(scratch, owner)
    options = {"port": str(port), "listen_addresses": "", "unix_socket_directories":
               str(scratch), "hba_file": str(hba)}
    command = f"cp {shlex.quote(str(wal_dir))}/%f %p"
    started = False
    try:
        try:
            result = restore_pgdata(repo, snap.id, pgdata, target=RecoveryTarget(),
                                    restore_command=command, options=options, start=True,
                                    pg_bindir=pg_bindir)
            started = True
        except DrsyncError as err:
            started = (pgdata / "postmaster.pid").exists()
            # start_cluster's failures are PostgreSQL's (SourceError); the rest the restore's.
            name = "recovery" if isinstance(err, SourceError) else "restore"
            checks.append(Check(name, False, one_line(err)))
            return 0
        checks.append(Check("restore", True, f"base backup {snap.short_id}: "
                                             f"{result.bytes_written} bytes, every blob "
                                             "verified"))
        _validate(tools, str(scratch), port, snap, checks, measures)
        return result.bytes_written + wal_bytes
    finally:
        if started or (pgdata / "postmaster.pid").exists():
            _stop(tools, pgdata, owner, checks)


def _runuser(owner: tuple[int, int] | None) -> list[str]:
    return [] if owner is None else ["runuser", "-u", CLUSTER_USER, "--"]


def _stop(tools: PgTools, pgdata: Path, owner: tuple[int, int] | None,
          checks: list[Check]) -> None:
    done = subprocess.run([*_runuser(owner), tools.path("pg_ctl"), "-D", str(pgdata), "-m",
                           "immediate", "-w", "-t", "60", "stop"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and (pgdata / "postmaster.pid").exists():
        checks.append(Check("teardown", False, f"scratch cluster in {pgdata} not stopped: "
                                               f"{done.stderr.strip()[-300:]}"))


def _parse_time(text: str) -> datetime:
    at = datetime.fromisoformat(text.replace(" ", "T").replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _validate(tools: PgTools, host: str, port: int, snap: Snapshot, checks: list[Check],
              measures: Measures) -> None:
    from drsync.sources.postgres.dump import count_tables
    from drsync.sources.postgres.tools import dsn_with_dbname

    dsn = f"host={host} port={port} user={SUPERUSER} dbname=postgres"
    try:
        row = tools.query(dsn, "SELECT pg_is_in_recovery(), "
                               "coalesce(to_char(pg_last_xact_replay_timestamp() AT TIME ZONE "
                               "'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), ''), "
                               "timeline_id FROM pg_control_checkpoint()")[0]
        databases = [r[0] for r in tools.query(
            dsn, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")]
    except DrsyncError as err:
        checks.append(Check("recovery", False, f"the recovered server answers no query: "
                                               f"{one_line(err)}"))
        return
    in_recovery, last_commit, timeline = row
    if last_commit:
        measures.point = _parse_time(last_commit)
        point = f"last replayed commit {last_commit}"
    else:
        consistent = str(snap.source_spec.get("consistent_at") or snap.time)
        measures.point = _parse_time(consistent)
        point = f"no commit replayed after the base backup (consistent at {consistent})"
    checks.append(Check("recovery", in_recovery == "f",
                        f"consistent and promoted on timeline {timeline}, accepting queries; "
                        f"{point}" if in_recovery == "f" else "still in recovery"))
    _amcheck(tools, host, port, checks)
    try:
        tables = {db: count_tables(dsn_with_dbname(dsn, db), tools)
                  for db in databases if db not in ("template0",)}
    except DrsyncError as err:
        checks.append(Check("table counts", False, one_line(err)))
        return
    n_tables = sum(len(t) for t in tables.values())
    rows = sum(c["rows"] for t in tables.values() for c in t.values())
    checks.append(Check("table counts", True, f"{len(tables)} databases, {n_tables} tables, "
                                              f"{rows} rows read (a base backup records no "
                                              "counts to compare with)"))
    measures.validated = time.monotonic()


def _amcheck(tools: PgTools, host: str, port: int, checks: list[Check]) -> None:

    try:
        exe = tools.path("pg_amcheck")
    except SourceError:
        checks.append(Check("pg_amcheck", True, "pg_amcheck is not installed: not run"))
        return
    if not os.access(exe, os.X_OK):
        checks.append(Check("pg_amcheck", True, "pg_amcheck is not installed: not run"))
        return
    done = subprocess.run([exe, "--all", "--install-missing", "-h", host, "-p", str(port),
                           "-U", SUPERUSER], capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "PGCONNECT_TIMEOUT": "30"})
    if done.returncode == 0:
        checks.append(Check("pg_amcheck", True, "heap and B-tree indexes of every database: "
                                                "no corruption"))
    else:
        lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
        checks.append(Check("pg_amcheck", False, f"exit {done.returncode}: "
                                                 + "; ".join(lines[:3])))
