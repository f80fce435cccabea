"""MariaDB/MySQL restores: a dump into a server, then its archived binlogs up to a moment.

The dump (``database.sql`` of a ``mariadb_dump`` snapshot) is streamed from
the repository, every blob verified, into ``mariadb``. With a target, the
archived binlogs are then replayed from the position the dump recorded
(``binlog_file``:``binlog_position``), one file at a time: each is fetched
from the spool or the store and verified (:func:`drsync.wal.ship.fetch_file`:
authenticated, content id checked) into a private temporary directory,
every one of them before the dump is loaded (a damaged binlog stops the
restore with nothing written, at the cost of their size on disk), then
decoded in order by ``mariadb-binlog --start-position ... --stop-datetime
...`` piped into ``mariadb``, and deleted.

Targets: ``time`` (``YYYY-MM-DD HH:MM:SS``, the restore host's local time
unless it carries an offset such as ``+09:00`` or ``Z``; every change
committed before it), ``position`` (``FILE:POS``: every event before that
binlog position) or ``latest`` (every archived binlog that follows without a
gap). The binlogs needed must follow each other without a gap from the
dump's file; a time after the last archived change, or a position beyond
the archive, is refused before anything is loaded.

One-database dumps (by the number of databases dumped: a ``databases``
snapshot of one, written before a list of one was dumped as one database,
is one too, its ``CREATE DATABASE``/``USE`` lines dropped) load under any
name (the DSN's database, created if missing) and replay only that
database's events (``--database``, renamed with ``--rewrite-db``);
``all``-database dumps replay everything. A dump of a list of several
databases replays no binlogs (mariadb-binlog filters one database): back
those up one by one, or all together.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drsync.errors import IntegrityError, UsageError
from drsync.repo import Repository, Snapshot, SnapshotReader
from drsync.repo.wal import WAL_PREFIX, is_binlog_name
from drsync.restore import Counted
from drsync.sources.mariadb.binlog import BinlogSummary, summarize_binlog
from drsync.sources.mariadb.conninfo import MariadbConnection, parse_dsn
from drsync.sources.mariadb.dump import DUMP_NAME, single_database
from drsync.sources.mariadb.restore import (
    ReplayRange,
    load_script,
    prepare_databases,
    replay_binlog,
    without_database_switch,
)
from drsync.sources.mariadb.tools import MariadbTools
from drsync.wal.coverage import binlog_chain, binlog_gap
from drsync.wal.ship import fetch_file
from drsync.wal.spool import Spool

__all__ = ["BinlogTarget", "MariadbRestoreResult", "binlog_chain", "mariadb_pitr_range",
           "parse_target_time", "restore_mariadb"]


@dataclass(frozen=True)
class BinlogTarget:
    time: str | None = None
    position: str | None = None  # FILE:POS
    latest: bool = False

    @property
    def given(self) -> bool:
        return bool(self.time or self.position or self.latest)


@dataclass
class MariadbRestoreResult:
    snapshot_id: str
    bytes_written: int
    duration_s: float
    kind: str = "mariadb_dump"
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "kind": self.kind,
                "bytes_written": self.bytes_written, "duration_s": round(self.duration_s, 6),
                **self.details}


def parse_target_time(text: str) -> datetime:
    """An aware datetime from ``YYYY-MM-DD HH:MM:SS[.ffffff][offset]``; no offset: local."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--target-time {text!r} is not 'YYYY-MM-DD HH:MM:SS' "
                         "(optionally with an offset like +09:00)") from None
    return when if when.tzinfo else when.astimezone()


def _parse_position(text: str) -> tuple[str, int]:
    name, sep, pos = text.rpartition(":")
    if not sep or not is_binlog_name(name) or not pos.isdigit():
        raise UsageError(f"--target-position {text!r} is not FILE:POS "
                         "(like mariadb-bin.000042:1234)")
    return name, int(pos)


def _archived(repo: Repository, spool: Spool | None) -> set[str]:
    names = {i.key.removeprefix(WAL_PREFIX) for i in repo.store.list(WAL_PREFIX)}
    if spool is not None:
        names |= set(spool.names())
    return {n for n in names if is_binlog_name(n)}


class _Fetcher:
    """Each binlog fetched once, verified, into a private directory; removed after use."""

    def __init__(self, repo: Repository, spool: Spool | None, work_dir: str | None) -> None:
        self._repo = repo
        self._spool = spool
        self.dir = Path(tempfile.mkdtemp(prefix="drsync-binlogs-", dir=work_dir))

    def get(self, name: str) -> Path:
        path = self.dir / name
        if not path.exists():
            fetch_file(name, path, self._repo.key, spool=self._spool, store=self._repo.store)
        return path

    def summary(self, name: str) -> BinlogSummary:
        return summarize_binlog(self.get(name).read_bytes())

    def done(self, name: str) -> None:
        (self.dir / name).unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plan(snap: Snapshot, target: BinlogTarget, chain: list[str], fetcher: _Fetcher,
          gap: str | None = None) -> tuple[list[str], str | None, tuple[str, int] | None]:
    """Which files to replay, the UTC stop time, the stop position; refused (UsageError)
    before anything is loaded when the archive cannot reach the target. ``gap``: the
    binlog missing after ``chain`` while later ones are archived (``binlog_gap``)."""
    spec = snap.source_spec
    first = str(spec["binlog_file"])
    lost = (f"binlog {gap} is missing from the archive while later ones are stored, so no "
            "replay from this dump goes past it (its changes are lost unless the server "
            "still has it); restore a dump taken after the gap, or stop before it with "
            "--target-time or --target-position") if gap else ""
    if target.position:
        name, pos = _parse_position(target.position)
        if name not in chain:
            raise UsageError(f"--target-position {target.position}: {name} is not among the "
                             f"archived binlogs that follow the dump ({_span(chain, first)})")
        if name == first and pos < int(spec["binlog_position"]):
            raise UsageError(f"--target-position {target.position} is before the dump's own "
                             f"position {first}:{spec['binlog_position']}")
        return chain[:chain.index(name) + 1], None, (name, pos)
    if target.time:
        when = parse_target_time(target.time).astimezone(UTC)
        dumped = datetime.fromisoformat(str(spec["consistent_at"]).replace("Z", "+00:00"))
        if when < dumped.replace(microsecond=0):
            raise UsageError(f"--target-time {target.time} is before the dump "
                             f"(consistent at {spec['consistent_at']}): pick an older snapshot")
        through = fetcher.summary(chain[-1]).end_time if chain else 0
        if when.timestamp() > through and gap:
            raise IntegrityError(f"--target-time {target.time} is after "
                                 f"{_utc(through) if through else 'the dump'}, where {lost}")
        if when.timestamp() > through:
            raise UsageError(
                f"--target-time {target.time} is after the archived binlogs end ("
                f"{_utc(through) if through else 'no binlog archived after the dump'}): "
                "changes after that are not archived yet; use --target latest or an "
                "earlier time")
        return chain, when.strftime("%Y-%m-%d %H:%M:%S"), None
    if gap:  # latest: "every archived change" would silently stop at the gap
        raise IntegrityError(f"--target latest cannot be reached: {lost}")
    return chain, None, None


def _span(chain: list[str], first: str) -> str:
    return f"{chain[0]}..{chain[-1]}" if chain else f"none archived from {first}"


def restore_mariadb(repo: Repository, ref: str, dsn: str, *, defaults_file: str | None = None,
                    clean: bool = False, target: BinlogTarget | None = None,
                    spool: Spool | None = None, work_dir: str | None = None,
                    tools: MariadbTools | None = None,
                    progress: Callable[[int], None] | None = None,
                    on_total: Callable[[int], None] | None = None) -> MariadbRestoreResult:
    """Load a mariadb_dump snapshot into the server ``dsn`` names, then roll it forward to
    ``target`` with the archived binlogs (see the module docstring). ``progress`` is told
    the dump's bytes as they are loaded, ``on_total`` their total first."""
    started = time.monotonic()
    tools = tools or MariadbTools()
    target = target or BinlogTarget()
    snap = repo.find_snapshot(ref)
    if snap.source_kind != "mariadb_dump":
        raise UsageError(f"snapshot {snap.short_id} is a {snap.source_kind} backup; "
                         "--mariadb-restore needs a mariadb_dump snapshot")
    spec = snap.source_spec
    scope, databases = str(spec.get("scope")), [str(d) for d in spec.get("databases") or []]
    parsed = parse_dsn(dsn, defaults_file)
    one = single_database(spec)
    if one is not None:
        into = parsed.database or one
    elif parsed.database:
        held = ("every database" if scope == "all" else
                f"{len(databases)} databases ({', '.join(databases)})")
        raise UsageError(f"snapshot {snap.short_id} holds {held}: give the server without a "
                         "database (mariadb://user@host:port) to restore them under their "
                         "own names")
    else:
        into = ""
    if target.given and one is None and scope == "databases":
        raise UsageError(f"snapshot {snap.short_id} is a dump of {len(databases)} listed "
                         "databases: binlogs cannot be replayed for a list (back each "
                         "database up on its own, or all of them)")
    if sum(bool(x) for x in (target.time, target.position, target.latest)) > 1:
        raise UsageError("give one of --target-time, --target-position, --target latest")
    details: dict[str, Any] = {"databases": databases, "scope": scope,
                               "consistent_at": spec.get("consistent_at"),
                               "binlog_start": f"{spec.get('binlog_file')}:"
                                               f"{spec.get('binlog_position')}"}
    fetcher = _Fetcher(repo, spool, work_dir)
    written = 0
    try:
        replay: list[str] = []
        stop_time: str | None = None
        stop_pos: tuple[str, int] | None = None
        if target.given:
            archived = _archived(repo, spool)
            chain = binlog_chain(str(spec["binlog_file"]), archived)
            replay, stop_time, stop_pos = _plan(snap, target, chain, fetcher, binlog_gap(
                str(spec["binlog_file"]), chain, archived))
            replay = _prefetch(fetcher, replay, stop_time)
        with MariadbConnection(parsed.with_database("")) as conn:
            created = prepare_databases(tools, conn, [into] if into else databases,
                                        create=bool(into), clean=clean)
            details["target_database"] = into or None
            details["created"] = created
            with SnapshotReader(repo) as reader:
                entries = {e.path: e for e in reader.entries(snap)}
                dump = entries.get(DUMP_NAME)
                if dump is None:
                    raise UsageError(f"snapshot {snap.short_id} holds no {DUMP_NAME}")
                if on_total is not None:
                    on_total(dump.size)

                stream = Counted(reader.blobs(dump.chunks), progress)
                script = iter(stream)
                if one is not None and scope != "database":
                    script = without_database_switch(script, one)  # a --databases dump
                load_script(tools, conn, script, database=into)
                written = stream.bytes
            details["replayed"] = _replay(tools, conn, fetcher, replay, spec, stop_time,
                                          stop_pos, one or "", into)
    finally:
        fetcher.close()
    details["target"] = (target.time or target.position or ("latest" if target.latest else None))
    return MariadbRestoreResult(snap.id, written, time.monotonic() - started, details=details)


def _prefetch(fetcher: _Fetcher, files: list[str], stop_time: str | None) -> list[str]:
    """Fetch and verify every binlog the replay needs before anything is loaded (a damaged
    one stops the restore with nothing written); a time target needs the files up to the
    first whose last change is at or after it, the later ones hold only later changes."""
    stop = (datetime.strptime(stop_time, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
            if stop_time else None)
    needed = []
    for name in files:
        needed.append(name)
        if stop is not None and fetcher.summary(name).last_time >= stop:
            break
        fetcher.get(name)
    return needed


def _replay(tools: MariadbTools, conn: MariadbConnection, fetcher: _Fetcher, files: list[str],
            spec: dict[str, Any], stop_time: str | None, stop_pos: tuple[str, int] | None,
            only: str, into: str) -> list[str]:
    done = []
    for i, name in enumerate(files):
        span = ReplayRange(
            start_position=int(spec["binlog_position"]) if i == 0 else None,
            stop_position=stop_pos[1] if stop_pos and stop_pos[0] == name else None,
            stop_datetime=stop_time, database=only, rewrite_to=into)
        replay_binlog(tools, conn, fetcher.get(name), span)
        done.append(name)
        fetcher.done(name)
    return done


_LOOK_BACK = 100  # binlogs read back from the newest to find the last change


def mariadb_pitr_range(repo: Repository, spool: Spool | None = None,
                       snapshots: list[Snapshot] | None = None) -> dict[str, Any] | None:
    """The restorable range of the tenant's MariaDB: None without mariadb_dump snapshots.

    Earliest: the oldest dump's moment. Latest: the last change in the archived binlogs
    that follow the newest dump without a gap (read from the binlog itself), else that
    dump's own moment.
    """
    snaps = [s for s in (snapshots if snapshots is not None else repo.snapshots())
             if s.source_kind == "mariadb_dump"]
    if not snaps:
        return None
    archived = _archived(repo, spool)
    dumps = []
    for snap in snaps:
        first = str(snap.source_spec.get("binlog_file"))
        chain = binlog_chain(first, archived)
        dumps.append({"snapshot_id": snap.id, "consistent_at": snap.source_spec.get(
            "consistent_at"), "binlogs": len(chain), "last_binlog": chain[-1] if chain else None,
            "first_missing_binlog": binlog_gap(first, chain, archived)})
    newest = dumps[-1]
    latest, basis = newest["consistent_at"], "the newest dump (no binlog archived after it)"
    last_change = None
    chain = binlog_chain(str(snaps[-1].source_spec.get("binlog_file")), archived)
    if chain:
        fetcher = _Fetcher(repo, spool, None)
        try:
            latest = _utc(fetcher.summary(chain[-1]).end_time)
            basis = f"end of {chain[-1]}"
            # The newest change: files rotated on a quiet server (--rotate-every) hold none.
            for name in reversed(chain[-_LOOK_BACK:]):
                changed = fetcher.summary(name).last_time
                fetcher.done(name)
                if changed:
                    last_change = _utc(changed)
                    break
        finally:
            fetcher.close()
    return {"earliest": dumps[0]["consistent_at"], "latest": latest, "latest_basis": basis,
            "last_change": last_change, "binlogs_archived": len(archived), "dumps": dumps}
