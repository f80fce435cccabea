"""The catalog: a SQLAlchemy record of backup runs (SQLite by default).

The store is the truth; the catalog is a convenience for operators and
reports and can be rebuilt from the store. A run is recorded as ``running``
when it starts and finished with its outcome, so a killed run shows up as
``running`` with no end, which is itself evidence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from drsync.errors import ConfigError

__all__ = ["Catalog", "RunRecord"]

_metadata = sa.MetaData()
runs_table = sa.Table(
    "runs",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("repo", sa.String(1024), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),  # backup, restore, check
    sa.Column("source", sa.String(1024), nullable=False, default=""),
    sa.Column("host", sa.String(255), nullable=False, default=""),
    sa.Column("started", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(16), nullable=False),  # running, ok, partial, failed
    sa.Column("bytes_read", sa.BigInteger, nullable=False, default=0),
    sa.Column("bytes_added", sa.BigInteger, nullable=False, default=0),
    sa.Column("snapshot_id", sa.String(64)),
    sa.Column("error", sa.Text),
)


@dataclass(frozen=True)
class RunRecord:
    id: int
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


class Catalog:
    def __init__(self, location: str) -> None:
        self.location = location
        try:
            self._engine = sa.create_engine(_url(location))
            _metadata.create_all(self._engine)
        except (SQLAlchemyError, OSError) as err:
            raise ConfigError(f"cannot open catalog {location}: {err}") from None

    def start_run(self, repo: str, kind: str, source: str, host: str) -> int:
        with self._engine.begin() as conn:
            result = conn.execute(runs_table.insert().values(
                repo=repo, kind=kind, source=source, host=host,
                started=datetime.now(UTC), status="running", bytes_read=0, bytes_added=0,
            ))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish_run(self, run_id: int, status: str, *, bytes_read: int = 0, bytes_added: int = 0,
                   snapshot_id: str | None = None, error: str | None = None) -> None:
        with self._engine.begin() as conn:
            conn.execute(runs_table.update().where(runs_table.c.id == run_id).values(
                ended=datetime.now(UTC), status=status, bytes_read=bytes_read,
                bytes_added=bytes_added, snapshot_id=snapshot_id, error=error,
            ))

    def runs(self, repo: str | None = None, limit: int = 50) -> list[RunRecord]:
        query = sa.select(runs_table).order_by(runs_table.c.id.desc()).limit(limit)
        if repo is not None:
            query = query.where(runs_table.c.repo == repo)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            RunRecord(**{**row, "started": _aware(row["started"]), "ended": _aware(row["ended"])})
            for row in rows
        ]

    def close(self) -> None:
        self._engine.dispose()
