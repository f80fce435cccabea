"""The catalog database: runs, in SQLAlchemy (a SQLite file by default, any URL by config)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from drsync.catalog.journal import RunJournal
from drsync.errors import ConfigError

__all__ = ["Catalog", "RunRecord"]

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
    sa.Column("status", sa.String(16), nullable=False),  # running, ok, partial, failed
    sa.Column("bytes_read", sa.BigInteger, nullable=False),
    sa.Column("bytes_added", sa.BigInteger, nullable=False),
    sa.Column("snapshot_id", sa.String(64)),
    sa.Column("error", sa.Text),
)


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

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "repo": self.repo, "kind": self.kind, "source": self.source,
            "host": self.host, "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None, "status": self.status,
            "bytes_read": self.bytes_read, "bytes_added": self.bytes_added,
            "snapshot_id": self.snapshot_id, "error": self.error,
        }


def _url(location: str) -> str:
    if "://" in location:
        return location
    path = os.path.abspath(location)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return f"sqlite:///{path}"


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything stored is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


class Catalog:
    """A ``RunRecorder`` writing straight to the database; ingests the journal on open."""

    def __init__(self, location: str, state_dir: str | None = None) -> None:
        self.location = location
        try:
            self._engine = sa.create_engine(_url(location))
            _metadata.create_all(self._engine)
        except (SQLAlchemyError, OSError) as err:
            raise ConfigError(f"cannot open catalog {location}: {err}") from None
        self.ingest(RunJournal(location, state_dir))

    def ingest(self, journal: RunJournal) -> int:
        """Apply the journal's events; return how many were applied."""
        count = 0
        with self._engine.begin() as conn:
            for event in journal.take():
                run_id = str(event.get("run", ""))
                if event.get("event") == "start":
                    exists = conn.execute(sa.select(runs_table.c.id).where(
                        runs_table.c.id == run_id)).first()
                    if exists is None:
                        conn.execute(runs_table.insert().values(
                            id=run_id, repo=event["repo"], kind=event["kind"],
                            source=event["source"], host=event["host"],
                            started=_parse_time(event["time"]), status="running",
                            bytes_read=0, bytes_added=0))
                elif event.get("event") == "finish":
                    conn.execute(runs_table.update().where(runs_table.c.id == run_id).values(
                        ended=_parse_time(event["time"]), status=event["status"],
                        bytes_read=event["bytes_read"], bytes_added=event["bytes_added"],
                        snapshot_id=event["snapshot_id"], error=event["error"]))
                count += 1
        journal.done()
        return count

    def start_run(self, repo: str, kind: str, source: str, host: str) -> str:
        run_id = uuid.uuid4().hex
        with self._engine.begin() as conn:
            conn.execute(runs_table.insert().values(
                id=run_id, repo=repo, kind=kind, source=source, host=host,
                started=datetime.now(UTC), status="running", bytes_read=0, bytes_added=0,
            ))
        return run_id

    def finish_run(self, run_id: str, status: str, *, bytes_read: int = 0, bytes_added: int = 0,
                   snapshot_id: str | None = None, error: str | None = None) -> None:
        with self._engine.begin() as conn:
            conn.execute(runs_table.update().where(runs_table.c.id == run_id).values(
                ended=datetime.now(UTC), status=status, bytes_read=bytes_read,
                bytes_added=bytes_added, snapshot_id=snapshot_id, error=error,
            ))

    def runs(self, repo: str | None = None, limit: int = 50) -> list[RunRecord]:
        query = sa.select(runs_table).order_by(runs_table.c.started.desc()).limit(limit)
        if repo is not None:
            query = query.where(runs_table.c.repo == repo)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            RunRecord(**{**row, "started": _aware(row["started"]), "ended": _aware(row["ended"])})
            for row in rows
        ]

    def snapshot_times(self, repo: str) -> dict[str, str]:
        """Snapshot id -> when its backup finished (ISO 8601 UTC), for every snapshot the
        runs of ``repo`` made: what the store should still hold (a rollback shows)."""
        query = sa.select(runs_table.c.snapshot_id, runs_table.c.ended).where(
            runs_table.c.repo == repo, runs_table.c.kind == "backup",
            runs_table.c.snapshot_id.is_not(None), runs_table.c.ended.is_not(None),
            runs_table.c.status.in_(("ok", "partial")))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return {str(snapshot_id): _aware(ended).isoformat()  # type: ignore[union-attr]
                for snapshot_id, ended in rows}

    def close(self) -> None:
        self._engine.dispose()
