"""The catalog database: runs, in SQLAlchemy (a SQLite file by default, any URL by config).

A ``postgresql://user@host/db`` URL is a central catalog many agents report
into at once (driver: psycopg 3). Everything written is idempotent by run id
(an insert that finds the run already there does nothing, or updates it with
the final outcome), so a journal ingested twice, or by two processes, or the
store's run records imported over runs already known, never duplicates a
run. The schema is created (and columns added since older versions, for
catalogs made by them) under a PostgreSQL advisory lock, retried elsewhere,
so agents starting together do not trip over each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from drsync import __version__
from drsync.atomic import owner_for
from drsync.catalog.journal import RunJournal
from drsync.catalog.records import owner_gone, this_owner
from drsync.errors import ConfigError, StoreError

__all__ = ["Catalog", "CatalogDamaged", "RunRecord", "engine_url", "set_aside"]

_metadata = sa.MetaData()
runs_table = sa.Table(
    "runs",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # uuid hex
    sa.Column("repo", sa.String(1024), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),  # backup, restore, check
    sa.Column("source", sa.String(1024), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("started", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("ended", sa.DateTime(timezone=True)),
    # running, ok, partial, failed, missed, overrun
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("bytes_read", sa.BigInteger, nullable=False),
    sa.Column("bytes_added", sa.BigInteger, nullable=False),
    sa.Column("snapshot_id", sa.String(64)),
    sa.Column("error", sa.Text),
    # Added with run records (issue 9); added to older catalogs when they are opened.
    sa.Column("tenant", sa.String(255), index=True),
    sa.Column("bytes_sent", sa.BigInteger),
    sa.Column("planned_start", sa.DateTime(timezone=True)),
    sa.Column("deadline", sa.DateTime(timezone=True)),
    sa.Column("drsync_version", sa.String(32)),
    # Who runs a running run (drsync.catalog.records.this_owner): a run whose process
    # ended without finishing it (killed, OOM, power loss) is settled as failed.
    sa.Column("owner", sa.String(512)),
)
# A drill (drsync.drill) is a run of kind "drill" (its id the drill id) plus this row.
drills_table = sa.Table(
    "drills",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("snapshot_time", sa.String(64)),
    sa.Column("rto_s", sa.Float, nullable=False),
    sa.Column("rpo_s", sa.Float),
    sa.Column("checks", sa.Text, nullable=False),  # JSON: [{"name", "ok", "detail"}]
)
# Per base backup of a repository: how far its archived WAL reaches (pitr-range's
# base_backups), written when the catalog is rebuilt from the store; replaced as a whole
# per repository, so a rebuild run twice gives the same rows.
wal_ranges_table = sa.Table(
    "wal_ranges",
    _metadata,
    sa.Column("repo", sa.String(1024), primary_key=True),
    sa.Column("snapshot_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(255), index=True),
    sa.Column("consistent_at", sa.String(64), nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False),
    sa.Column("first_missing_wal", sa.String(64)),
    sa.Column("last_wal", sa.String(64)),
    sa.Column("timeline", sa.Integer, nullable=False),
    sa.Column("latest", sa.String(64)),
    sa.Column("latest_lsn", sa.String(32)),
    sa.Column("latest_basis", sa.String(255)),
)
# Snapshots that `forget` removed on purpose (or, after a rebuild, that the store no
# longer holds): the rollback check (``snapshot_times``) does not look for them again.
forgotten_table = sa.Table(
    "forgotten_snapshots",
    _metadata,
    sa.Column("repo", sa.String(1024), primary_key=True),
    sa.Column("snapshot_id", sa.String(64), primary_key=True),
    sa.Column("forgotten", sa.DateTime(timezone=True), nullable=False),
)
WAL_RANGE_FIELDS = ("snapshot_id", "consistent_at", "complete", "first_missing_wal",
                    "last_wal", "timeline", "latest", "latest_lsn", "latest_basis")
ADDED_COLUMNS = ("tenant", "bytes_sent", "planned_start", "deadline", "drsync_version", "owner")
_SCHEMA_LOCK = 0x64727379  # "drsy": the advisory lock key of schema changes on PostgreSQL


@dataclass(frozen=True)
class RunRecord:
    id: str
    repo: str
    kind: str
    source: str
    host: str
    started: datetime
    ended: datetime | None
    status: str
    bytes_read: int
    bytes_added: int
    snapshot_id: str | None
    error: str | None
    tenant: str | None = None
    bytes_sent: int | None = None
    planned_start: datetime | None = None
    deadline: datetime | None = None
    drsync_version: str | None = None
    owner: str | None = None  # while running: who runs it (not part of the JSON)

    @property
    def tenant_name(self) -> str:
        """The fleet file's name for the run's tenant (runs of old catalogs: the host)."""
        return self.tenant or self.host

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id, "repo": self.repo, "kind": self.kind, "source": self.source,
            "host": self.host, "tenant": self.tenant_name, "started": self.started.isoformat(),
            "ended": iso(self.ended), "status": self.status,
            "bytes_read": self.bytes_read, "bytes_added": self.bytes_added,
            "bytes_sent": self.bytes_sent, "snapshot_id": self.snapshot_id, "error": self.error,
            "planned_start": iso(self.planned_start), "deadline": iso(self.deadline),
            "drsync_version": self.drsync_version,
        }


def engine_url(location: str) -> str:
    """The SQLAlchemy URL of a catalog setting: a path is a SQLite file; ``postgresql://``
    (or ``postgres://``) uses the psycopg 3 driver installed with drsync."""
    if "://" not in location:
        path = os.path.abspath(location)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return f"sqlite:///{path}"
    scheme, rest = location.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return location


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything stored is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _parse_time(text: Any) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text))


def _record_values(repo: str, record: dict[str, Any]) -> dict[str, Any]:
    """Catalog columns of a store run record (drsync.repo.runs); KeyError when incomplete."""
    return {
        "id": record["run_id"], "repo": repo, "kind": record["kind"],
        "source": record.get("source") or "", "host": record["host"],
        "tenant": record.get("tenant") or record["host"],
        "started": _parse_time(record["started"]), "ended": _parse_time(record.get("finished")),
        "status": record["status"], "bytes_read": int(record.get("bytes_read") or 0),
        "bytes_added": int(record.get("bytes_added") or 0),
        "bytes_sent": int(record.get("bytes_sent") or 0),
        "snapshot_id": record.get("snapshot_id"), "error": record.get("error"),
        "planned_start": _parse_time(record.get("planned_start")),
        "deadline": _parse_time(record.get("deadline")),
        "drsync_version": record.get("drsync_version") or None,
    }


def _for_the_store(row: Any, ended: datetime, error: str) -> None:
    """A settled run's record, into the outbox of its repository: the process that ran it
    never wrote one, and a catalog rebuilt from the store would not know of it."""
    from drsync.repo.runs import keep_for_later

    started = _aware(row["started"])
    keep_for_later(row["repo"], {
        "run_id": row["id"], "tenant": row["tenant"] or row["host"], "host": row["host"],
        "kind": row["kind"], "source": row["source"], "status": "failed",
        "started": started.isoformat() if started else ended.isoformat(),
        "finished": ended.isoformat(), "error": error,
        "bytes_read": int(row["bytes_read"] or 0), "bytes_added": int(row["bytes_added"] or 0),
        "drsync_version": row["drsync_version"] or ""})


class CatalogDamaged(ConfigError):
    """A SQLite catalog file that is no database any more (truncated, overwritten)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason} (a damaged catalog: `drsync catalog rebuild` moves it "
                         "aside and rebuilds it from the store)")
        self.reason = reason


def _damaged_sqlite(err: BaseException) -> bool:
    import sqlite3

    orig = getattr(err, "orig", None)
    return (isinstance(orig, sqlite3.DatabaseError)
            and not isinstance(orig, sqlite3.OperationalError))


def set_aside(location: str) -> str:
    """Move a damaged SQLite catalog file aside (``<file>.damaged-<UTC time>``); its
    journal stays, to be ingested into the catalog rebuilt in its place. Returns the new
    name."""
    path = engine_url(location).removeprefix("sqlite:///")
    aside = f"{path}.damaged-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    os.rename(path, aside)
    return aside


def _give_sqlite_to_owner(url: str) -> None:
    """A SQLite catalog root made in another user's directory is given to that user (as
    the journal beside it is: drsync.catalog.journal), or that user's next run could
    only read it."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    owner = owner_for(path.parent)
    if owner is None:
        return
    for made in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                 path.with_name(path.name + "-journal")):
        with contextlib.suppress(FileNotFoundError):
            if made.stat().st_uid == 0:
                os.chown(made, *owner)


class Catalog:
    """A ``RunRecorder`` writing straight to the database; ingests the journal on open."""

    def __init__(self, location: str, state_dir: str | None = None) -> None:
        self.location = location
        try:
            self._engine = sa.create_engine(engine_url(location))
            self._prepare_schema()
            _give_sqlite_to_owner(engine_url(location))
        except ImportError as err:
            raise ConfigError(f"cannot open catalog {location}: driver missing ({err.name}); "
                              "reinstall drsync with its dependencies") from None
        except (SQLAlchemyError, OSError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            if _damaged_sqlite(err):
                raise CatalogDamaged(f"cannot open catalog {location}: {first}") from None
            if isinstance(err, sa.exc.OperationalError) and "://" in location \
                    and not location.startswith("sqlite"):
                # A catalog server that is down or unreachable: the network, not a setting.
                raise StoreError(f"cannot open catalog {location}: {first}") from None
            raise ConfigError(f"cannot open catalog {location}: {first}") from None
        self.ingest(RunJournal(location, state_dir))
        self.settle_abandoned()

    # -- schema -----------------------------------------------------------------

    def _prepare_schema(self) -> None:
        """Create the tables and add missing columns, safely when many processes open one
        catalog at once: serialised by an advisory lock on PostgreSQL, and retried (a
        concurrent creator's table is found on the next look) everywhere."""
        attempts = 5
        for attempt in range(attempts):
            try:
                with self._engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": _SCHEMA_LOCK})
                    _metadata.create_all(conn)
                    have = {c["name"] for c in sa.inspect(conn).get_columns("runs")}
                    for name in ADDED_COLUMNS:
                        if name not in have:
                            column = runs_table.c[name]
                            kind = column.type.compile(dialect=conn.dialect)
                            conn.execute(sa.text(f"ALTER TABLE runs ADD COLUMN {name} {kind}"))
                return
            except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    # -- idempotent writes ----------------------------------------------------------

    @staticmethod
    def _put(conn: sa.Connection, values: dict[str, Any], *, replace: bool) -> None:
        """Insert a run; one already there is left alone, or (``replace``) updated."""
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            from sqlalchemy.dialects import postgresql, sqlite

            module: Any = postgresql if dialect == "postgresql" else sqlite
            stmt = module.insert(runs_table).values(**values)
            if replace:
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=["id"],
                    set_={k: stmt.excluded[k] for k in values if k != "id"}))
            else:
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))
            return
        exists = conn.execute(sa.select(runs_table.c.id).where(
            runs_table.c.id == values["id"])).first()
        if exists is None:
            try:
                with conn.begin_nested():
                    conn.execute(runs_table.insert().values(**values))
                return
            except sa.exc.IntegrityError:
                pass  # inserted meanwhile by another writer
        if replace:
            conn.execute(runs_table.update().where(runs_table.c.id == values["id"])
                         .values(**values))

    def ingest(self, journal: RunJournal) -> int:
        """Apply the journal's events; return how many were applied."""
        count = 0
        with journal.ingesting():
            with self._engine.begin() as conn:
                for event in journal.take():
                    try:
                        self._apply(conn, event)
                    except (KeyError, TypeError, ValueError):
                        continue  # not an event this version writes
                    count += 1
            journal.done()  # only once committed: a crash before re-ingests, never loses
        return count

    def _apply(self, conn: sa.Connection, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            self._put(conn, {
                "id": str(event["run"]), "repo": event["repo"], "kind": event["kind"],
                "source": event["source"], "host": event["host"],
                "tenant": event.get("tenant") or event["host"],
                "started": _parse_time(event["time"]), "status": "running",
                "bytes_read": 0, "bytes_added": 0,
                "planned_start": _parse_time(event.get("planned_start")),
                "deadline": _parse_time(event.get("deadline")),
                "drsync_version": event.get("version"), "owner": event.get("owner")},
                replace=False)
        elif kind == "finish":
            conn.execute(runs_table.update().where(runs_table.c.id == str(event["run"])).values(
                ended=_parse_time(event["time"]), status=event["status"],
                bytes_read=event["bytes_read"], bytes_added=event["bytes_added"],
                bytes_sent=event.get("bytes_sent"),
                snapshot_id=event["snapshot_id"], error=event["error"]))
        elif kind == "record":
            self._put(conn, _record_values(event["repo"], event), replace=True)
        elif kind == "forgotten":
            self._forget(conn, event["repo"], event["snapshots"], _parse_time(event["time"]))
        else:
            raise ValueError(f"unknown event {kind!r}")

    def import_runs(self, repo_url: str, records: Iterable[dict[str, Any]]) -> int:
        """Put the store's run records (drsync.repo.runs) of ``repo_url`` in the catalog,
        by run id: a run already known takes the record's outcome, none is duplicated.
        Returns how many records were applied."""
        count = 0
        with self._engine.begin() as conn:
            for record in records:
                self._put(conn, _record_values(repo_url, record), replace=True)
                count += 1
        return count

    def import_drills(self, repo_url: str, records: Iterable[dict[str, Any]]) -> int:
        """Put drill records (drsync.repo.drills) of ``repo_url`` in the catalog, by drill
        id: each is a run of kind ``drill`` and a ``drills`` row; none is duplicated."""
        count = 0
        with self._engine.begin() as conn:
            for record in records:
                failed = [c for c in record["checks"] if not c["ok"]]
                self._put(conn, {
                    "id": record["drill_id"], "repo": repo_url, "kind": "drill",
                    "source": f"drill {record.get('source_kind') or '-'}",
                    "host": record["host"], "tenant": record["tenant"],
                    "started": _parse_time(record["started"]),
                    "ended": _parse_time(record["finished"]), "status": record["status"],
                    "bytes_read": int(record.get("bytes_restored") or 0), "bytes_added": 0,
                    "bytes_sent": 0, "snapshot_id": record.get("snapshot_id"),
                    "error": (f"{failed[0]['name']}: {failed[0]['detail']}" if failed
                              else None),
                    "planned_start": None, "deadline": None,
                    "drsync_version": record.get("drsync_version") or None}, replace=True)
                values = {"id": record["drill_id"], "snapshot_time": record.get("snapshot_time"),
                          "rto_s": float(record["rto_s"]),
                          "rpo_s": None if record.get("rpo_s") is None
                          else float(record["rpo_s"]),
                          "checks": json.dumps(record["checks"], sort_keys=True)}
                conn.execute(drills_table.delete().where(drills_table.c.id == values["id"]))
                conn.execute(drills_table.insert().values(**values))
                count += 1
        return count

    def import_wal_ranges(self, repo_url: str, tenant: str | None,
                          rows: Iterable[dict[str, Any]]) -> int:
        """Replace the WAL ranges of ``repo_url`` with ``rows`` (pitr-range's
        ``base_backups``); returns how many."""
        values = [{"repo": repo_url, "tenant": tenant, **{k: row.get(k) for k in
                                                         WAL_RANGE_FIELDS}} for row in rows]
        with self._engine.begin() as conn:
            conn.execute(wal_ranges_table.delete().where(wal_ranges_table.c.repo == repo_url))
            if values:
                conn.execute(wal_ranges_table.insert(), values)
        return len(values)

    def wal_ranges(self, repo: str | None = None) -> list[dict[str, Any]]:
        """WAL ranges (the fields of pitr-range's ``base_backups``, with ``repo`` and
        ``tenant``), by repository then consistent time."""
        query = sa.select(wal_ranges_table).order_by(wal_ranges_table.c.repo,
                                                     wal_ranges_table.c.consistent_at,
                                                     wal_ranges_table.c.snapshot_id)
        if repo is not None:
            query = query.where(wal_ranges_table.c.repo == repo)
        with self._engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings().all()]

    def drills(self, repo: str | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
        """Drills, newest first: the run's fields with ``rto_s``, ``rpo_s`` and ``checks``."""
        query = (sa.select(runs_table, drills_table.c.snapshot_time, drills_table.c.rto_s,
                           drills_table.c.rpo_s, drills_table.c.checks)
                 .join(drills_table, drills_table.c.id == runs_table.c.id)
                 .order_by(runs_table.c.started.desc(), runs_table.c.id).limit(limit))
        if repo is not None:
            query = query.where(runs_table.c.repo == repo)
        found = []
        with self._engine.connect() as conn:
            for row in conn.execute(query).mappings().all():
                extra = {k: row[k] for k in ("snapshot_time", "rto_s", "rpo_s")}
                run = {k: v for k, v in row.items() if k not in extra and k != "checks"}
                record = self._records([run])[0].to_json()
                found.append({**record, **extra, "checks": json.loads(row["checks"])})
        return found

    # -- RunRecorder ------------------------------------------------------------------

    def start_run(self, repo: str, kind: str, source: str, host: str, *,
                  tenant: str | None = None, started: datetime | None = None,
                  planned_start: datetime | None = None,
                  deadline: datetime | None = None) -> str:
        run_id = uuid.uuid4().hex
        with self._engine.begin() as conn:
            conn.execute(runs_table.insert().values(
                id=run_id, repo=repo, kind=kind, source=source, host=host,
                tenant=tenant or host, started=started or datetime.now(UTC), status="running",
                bytes_read=0, bytes_added=0, drsync_version=__version__,
                planned_start=planned_start, deadline=deadline, owner=this_owner(),
            ))
        return run_id

    def settle_abandoned(self, now: datetime | None = None) -> list[str]:
        """Runs left ``running`` by a process of this host that has ended (killed, out of
        memory, the host restarted) become failed, saying so: otherwise they would look in
        progress for ever, and a report would count them neither ok nor failed. Runs of
        other hosts are settled when their host next opens the catalog. Returns the ids."""
        now = now or datetime.now(UTC)
        settled = []
        with self._engine.begin() as conn:
            rows = conn.execute(sa.select(runs_table).where(
                runs_table.c.status == "running",
                runs_table.c.owner.is_not(None))).mappings().all()
            for row in rows:
                why = owner_gone(row["owner"])
                if why is None:
                    continue
                error = (f"interrupted: {why} and never finished the run (killed, or the "
                         f"host went down); found at {now:%Y-%m-%d %H:%M:%SZ}")
                conn.execute(runs_table.update().where(
                    runs_table.c.id == row["id"], runs_table.c.status == "running").values(
                    status="failed", ended=now, error=error))
                settled.append(row["id"])
                _for_the_store(row, now, error)
        return settled

    def finish_run(self, run_id: str, status: str, *, bytes_read: int = 0, bytes_added: int = 0,
                   snapshot_id: str | None = None, error: str | None = None,
                   bytes_sent: int = 0, finished: datetime | None = None) -> None:
        with self._engine.begin() as conn:
            conn.execute(runs_table.update().where(runs_table.c.id == run_id).values(
                ended=finished or datetime.now(UTC), status=status, bytes_read=bytes_read,
                bytes_added=bytes_added, bytes_sent=bytes_sent, snapshot_id=snapshot_id,
                error=error,
            ))

    # -- queries ------------------------------------------------------------------------

    @staticmethod
    def _records(rows: Iterable[Any]) -> list[RunRecord]:
        return [
            RunRecord(**{**row, "started": _aware(row["started"]), "ended": _aware(row["ended"]),
                         "planned_start": _aware(row["planned_start"]),
                         "deadline": _aware(row["deadline"])})
            for row in rows
        ]

    def runs(self, repo: str | None = None, limit: int | None = 50) -> list[RunRecord]:
        query = sa.select(runs_table).order_by(runs_table.c.started.desc(),
                                               runs_table.c.id).limit(limit)
        if repo is not None:
            query = query.where(runs_table.c.repo == repo)
        with self._engine.connect() as conn:
            return self._records(conn.execute(query).mappings().all())

    def tenant_runs(self, tenants: Iterable[str]) -> list[RunRecord]:
        """For each tenant (the run's tenant, else its host): its newest backup run and its
        newest ok backup run, each with the other backup runs of its slot (same
        ``planned_start``): what a fleet view needs, however long the history. Other
        kinds (checks, drills, WAL shipping, the agent's night choice) make no recovery
        point and must not hide a failed backup."""
        name = sa.func.coalesce(runs_table.c.tenant, runs_table.c.host)
        found: dict[str, RunRecord] = {}
        with self._engine.connect() as conn:
            for tenant in tenants:
                for only_ok in (False, True):
                    query = sa.select(runs_table).where(name == tenant,
                                                        runs_table.c.kind == "backup")
                    if only_ok:
                        query = query.where(runs_table.c.status == "ok")
                    query = query.order_by(runs_table.c.started.desc(),
                                           runs_table.c.id).limit(1)
                    for record in self._records(conn.execute(query).mappings().all()):
                        found[record.id] = record
                        if record.planned_start is not None:
                            # the other jobs of its slot: a fleet view judges the night
                            night = sa.select(runs_table).where(
                                name == tenant, runs_table.c.kind == "backup",
                                runs_table.c.planned_start == record.planned_start)
                            for job in self._records(conn.execute(night).mappings().all()):
                                found[job.id] = job
        return list(found.values())

    @staticmethod
    def _forget(conn: sa.Connection, repo: str, snapshot_ids: Iterable[str],
                at: datetime | None) -> None:
        """Snapshots of ``repo`` removed on purpose (the journal's ``forgotten`` events):
        ``snapshot_times`` leaves them out."""
        known = {row[0] for row in conn.execute(sa.select(forgotten_table.c.snapshot_id).where(
            forgotten_table.c.repo == repo))}
        rows = [{"repo": repo, "snapshot_id": sid, "forgotten": at or datetime.now(UTC)}
                for sid in dict.fromkeys(snapshot_ids) if sid not in known]
        if rows:
            conn.execute(forgotten_table.insert(), rows)

    def snapshot_times(self, repo: str) -> dict[str, str]:
        """Snapshot id -> when its backup finished (ISO 8601 UTC), for every snapshot the
        runs of ``repo`` made and no ``forget`` removed: what the store should still hold
        (a rollback shows)."""
        forgotten = sa.select(forgotten_table.c.snapshot_id).where(
            forgotten_table.c.repo == repo)
        query = sa.select(runs_table.c.snapshot_id, runs_table.c.ended).where(
            runs_table.c.repo == repo, runs_table.c.kind == "backup",
            runs_table.c.snapshot_id.is_not(None), runs_table.c.ended.is_not(None),
            runs_table.c.status.in_(("ok", "partial")),
            runs_table.c.snapshot_id.not_in(forgotten))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return {str(snapshot_id): _aware(ended).isoformat()  # type: ignore[union-attr]
                for snapshot_id, ended in rows}

    def close(self) -> None:
        self._engine.dispose()


def tenant_history(catalog: Catalog, tenant: str, since: datetime,
                   until: datetime, repos: Iterable[str] = ()) -> tuple[list[RunRecord], int]:
    """For a report (drsync.report): the tenant's runs started in [since, until), its
    newest ok backup started before ``since`` (where the period's first gap begins), oldest
    first; and how many runs of any kind were ever recorded for it. A check of one of
    ``repos`` (the tenant's copies) is the tenant's whatever tenant the host that ran it
    named: an operator's `drsync --repo ... check` records the host's name."""
    name = sa.func.coalesce(runs_table.c.tenant, runs_table.c.host)
    ours = name == tenant
    if repos:
        ours = sa.or_(ours, sa.and_(runs_table.c.kind == "check",
                                    runs_table.c.repo.in_(sorted(set(repos)))))
    inside = (sa.select(runs_table).where(ours, runs_table.c.started >= since,
                                          runs_table.c.started < until)
              .order_by(runs_table.c.started, runs_table.c.id))
    before = (sa.select(runs_table).where(name == tenant, runs_table.c.started < since,
                                          runs_table.c.kind == "backup",
                                          runs_table.c.status == "ok")
              .order_by(runs_table.c.started.desc(), runs_table.c.id).limit(1))
    count = sa.select(sa.func.count()).select_from(runs_table).where(name == tenant)
    with catalog._engine.connect() as conn:
        earlier = Catalog._records(conn.execute(before).mappings().all())
        found = Catalog._records(conn.execute(inside).mappings().all())
        total = int(conn.execute(count).scalar_one())
    return earlier + found, total
