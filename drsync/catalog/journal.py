"""The run journal: append-only JSON lines, fsynced, ingested by the catalog later.

Each line is one event: ``{"event": "start", "run": <uuid>, ...}``,
``{"event": "finish", "run": <uuid>, ...}``, or a whole run at once,
``{"event": "record", "repo": ..., "run_id": <uuid>, ...}`` (the fields of a
run record, drsync.repo.runs). Lines are appended with
O_APPEND in a single write (well under PIPE_BUF), so concurrent agents on
one host never interleave. Ingestion renames the journal aside first, so
events appended meanwhile land in a fresh journal and are never lost: an
append holds a shared flock (``<journal>.append-lock``) from opening the
journal to its fsync, and the rename takes it exclusively, so no append
that opened the old file can land in it after it was set aside. One process
ingests a journal at a time (``<journal>.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drsync import __version__
from drsync.atomic import owner_for
from drsync.catalog.records import this_owner
from drsync.errors import StoreError, UsageError

__all__ = ["RunJournal", "journal_path", "location_problem"]

APPEND_LOCK = ".append-lock"  # shared by appenders, exclusive while setting the journal aside
INGEST_LOCK = ".lock"  # exclusive while one process ingests


_SCHEME_TYPO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?!//)")
_DATABASES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg", "mysql", "mariadb")
_BUILT_IN = ("postgresql", "postgres", "postgresql+psycopg")  # psycopg 3 comes with drsync


def location_problem(catalog: str) -> str | None:
    """What makes ``catalog`` no catalog location (None: nothing). Caught before any
    run: a backup only appends to the journal, so a catalog that can never be opened
    would otherwise be found by the first ``drsync runs``, weeks of runs later."""
    typo = _SCHEME_TYPO.match(catalog)
    if typo is not None and typo.group(1).lower() in _DATABASES:
        rest = catalog[typo.end():]
        meant = (f"sqlite:///{os.path.abspath(rest)}" if typo.group(1).lower() == "sqlite"
                 else f"{typo.group(1)}://{rest.lstrip('/')}")
        return (f"catalog {catalog!r} is not a URL (a scheme needs '://') nor a SQLite path "
                f"meant as one; did you mean {meant!r}?")
    if "://" not in catalog:
        return None if catalog.strip() else "catalog: an empty path"
    scheme = catalog.split("://", 1)[0].lower()
    if scheme == "sqlite":
        path = catalog.removeprefix("sqlite:///") if catalog.startswith("sqlite:///") else ""
        return None if path else (f"catalog {catalog!r}: an in-memory SQLite catalog keeps "
                                  "nothing; give a file (sqlite:////var/lib/drsync/catalog."
                                  "sqlite or a plain path)")
    if scheme in _BUILT_IN:
        return None
    try:  # another SQLAlchemy URL: its dialect and driver must load (this imports SQLAlchemy)
        from sqlalchemy.engine import make_url

        make_url(catalog).get_dialect().import_dbapi()
    except ImportError as err:
        return (f"catalog {catalog!r}: its database driver is not installed "
                f"({err.name or err}); drsync comes with SQLite and PostgreSQL (psycopg)")
    except Exception as err:
        return f"catalog {catalog!r}: not a database URL drsync can open ({err})"
    return None


def _give_to_owner(fd: int, directory: Path) -> None:
    """A journal file root creates in another user's directory (a restore run as root
    beside the postgres user's agent) is given to that user (``atomic.owner_for``), or
    its next backup could not append to it."""
    owner = owner_for(directory)
    if owner is not None:
        os.fchown(fd, *owner)


def journal_path(catalog: str, state_dir: str | None = None) -> Path:
    """Beside a SQLite catalog file; in the state directory (drsync.settings resolves it)
    for a catalog URL. A location that can be no catalog (``location_problem``) is a
    UsageError."""
    problem = location_problem(catalog)
    if problem:
        raise UsageError(problem)
    if "://" not in catalog:
        return Path(os.path.abspath(catalog) + "-journal.jsonl")
    if catalog.startswith("sqlite:///"):
        return Path(catalog.removeprefix("sqlite:///") + "-journal.jsonl")
    if not state_dir:
        raise UsageError(f"catalog {catalog}: a catalog URL needs the state directory for "
                         "its run journal")
    digest = hashlib.sha256(catalog.encode()).hexdigest()[:12]
    return Path(state_dir) / f"catalog-{digest}-journal.jsonl"


def _time(when: datetime | None) -> str:
    return (when or datetime.now(UTC)).isoformat()


class RunJournal:
    """A ``RunRecorder`` that appends to the journal of one catalog."""

    def __init__(self, catalog: str, state_dir: str | None = None) -> None:
        self.path = journal_path(catalog, state_dir)

    @contextlib.contextmanager
    def _locked(self, suffix: str, mode: int) -> Iterator[None]:
        """An flock on ``<journal><suffix>`` (per open file, so threads exclude each other
        too); released when the descriptor closes."""
        lock_path = self.path.with_name(self.path.name + suffix)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            _give_to_owner(fd, self.path.parent)
        except OSError as err:
            raise StoreError(f"cannot lock run journal {lock_path}: {err.strerror}") from None
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    def _append(self, event: dict[str, Any]) -> None:
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        # Shared with other appenders, exclusive of the rename in take(): a line is never
        # written into a journal that ingestion has already set aside and read.
        with self._locked(APPEND_LOCK, fcntl.LOCK_SH):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    _give_to_owner(fd, self.path.parent)
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as err:
                raise StoreError(f"cannot write run journal {self.path}: "
                                 f"{err.strerror}") from None

    def start_run(self, repo: str, kind: str, source: str, host: str, *,
                  tenant: str | None = None, started: datetime | None = None,
                  planned_start: datetime | None = None,
                  deadline: datetime | None = None) -> str:
        run_id = uuid.uuid4().hex
        event: dict[str, Any] = {"event": "start", "run": run_id, "repo": repo, "kind": kind,
                                 "source": source, "host": host, "tenant": tenant or host,
                                 "time": _time(started), "version": __version__,
                                 "owner": this_owner()}
        if planned_start is not None:
            event["planned_start"] = _time(planned_start)
        if deadline is not None:
            event["deadline"] = _time(deadline)
        self._append(event)
        return run_id

    def finish_run(self, run_id: str, status: str, *, bytes_read: int = 0,
                   bytes_added: int = 0, snapshot_id: str | None = None,
                   error: str | None = None, bytes_sent: int = 0,
                   finished: datetime | None = None) -> None:
        self._append({"event": "finish", "run": run_id, "status": status,
                      "bytes_read": bytes_read, "bytes_added": bytes_added,
                      "bytes_sent": bytes_sent, "snapshot_id": snapshot_id, "error": error,
                      "time": _time(finished)})

    def record_run(self, repo: str, record: dict[str, Any]) -> None:
        """Append a whole run at once (a run record as ``drsync.repo.runs`` stores it):
        for runs recorded after the fact, such as a missed slot."""
        self._append({"event": "record", "repo": repo, **record})

    def record_forgotten(self, repo: str, snapshot_ids: Iterable[str],
                         at: datetime | None = None) -> None:
        """Snapshots ``forget`` removed on purpose, so that the catalog's rollback check
        (``Catalog.snapshot_times``) does not report them missing."""
        ids = list(snapshot_ids)
        if ids:
            self._append({"event": "forgotten", "repo": repo, "snapshots": ids,
                          "time": _time(at)})

    @contextlib.contextmanager
    def ingesting(self) -> Iterator[None]:
        """Hold this journal's ingestion lock: two processes of one host opening the
        catalog at once ingest one after the other, so neither applies a finish before
        the other committed its start, nor deletes what the other has yet to commit."""
        with self._locked(INGEST_LOCK, fcntl.LOCK_EX):
            yield

    def take(self) -> Iterator[dict[str, Any]]:
        """Yield every event, oldest first, from journals set aside for ingestion.

        The journal is renamed aside before reading; the caller deletes the
        aside file (``done``) only after committing what it read, so a crash
        during ingestion re-ingests rather than loses.
        """
        aside = self.path.with_name(self.path.name + ".ingesting")
        try:
            with self._locked(APPEND_LOCK, fcntl.LOCK_EX):  # no append in flight
                if self.path.exists() and not aside.exists():
                    os.replace(self.path, aside)
            if not aside.exists():
                return
            with open(aside, encoding="utf-8") as fh:
                lines = fh.readlines()
        except OSError as err:
            raise StoreError(f"cannot ingest run journal {aside}: {err.strerror} (written by "
                             "another user? the catalog's files must be this user's)") from None
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except ValueError:
                continue  # a torn last line from a crash mid-append

    def done(self) -> None:
        self.path.with_name(self.path.name + ".ingesting").unlink(missing_ok=True)
