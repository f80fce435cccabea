"""The catalog: runs recorded through the journal, ingested once, killed runs visible."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from drsync.backup import BackupRequest, run_backup
from drsync.catalog import RunJournal
from drsync.catalog.db import Catalog
from drsync.errors import SourceError
from drsync.testing import make_repo


def test_journal_is_ingested_once_with_outcomes(tmp_path: Path) -> None:
    location = str(tmp_path / "catalog.sqlite")
    journal = RunJournal(location)
    repo = make_repo()
    ok = run_backup(repo, BackupRequest(stdin_name="a", stdin=_bytes(b"abc")), catalog=journal)
    with contextlib.suppress(SourceError):
        run_backup(repo, BackupRequest(sqlite=str(tmp_path / "none.db")), catalog=journal)
    killed = journal.start_run("memory://", "backup", "killed", "h")  # never finished
    catalog = Catalog(location)
    runs = {r.source: r for r in catalog.runs()}
    assert runs["stdin:a"].status == "ok" and runs["stdin:a"].snapshot_id == ok.snapshot_id
    assert runs["stdin:a"].bytes_read == 3 and runs["stdin:a"].ended is not None
    assert runs[f"sqlite:{tmp_path / 'none.db'}"].status == "failed"
    assert "does not exist" in (runs[f"sqlite:{tmp_path / 'none.db'}"].error or "")
    assert runs["killed"].status == "running" and runs["killed"].ended is None
    assert [r.id for r in catalog.runs() if r.source == "killed"] == [killed]
    assert not journal.path.exists()
    # Reopening ingests nothing twice.
    assert len(Catalog(location).runs()) == 3


def test_torn_last_line_is_ignored_and_crash_during_ingest_loses_nothing(
        tmp_path: Path) -> None:
    location = str(tmp_path / "catalog.sqlite")
    journal = RunJournal(location)
    run_id = journal.start_run("r", "backup", "src", "h")
    journal.finish_run(run_id, "ok", bytes_read=5)
    with open(journal.path, "a") as fh:
        fh.write('{"event": "start", "ru')  # torn by a crash mid-append
    # A crash after setting the journal aside, before committing: the aside file stays.
    events = list(journal.take())
    assert [e["event"] for e in events] == ["start", "finish"]
    journal.start_run("r", "backup", "later", "h")  # appended while ingestion was pending
    catalog = Catalog(location)
    assert sorted(r.source for r in catalog.runs()) == ["src"]
    assert json.loads(journal.path.read_text().splitlines()[0])["source"] == "later"
    assert sorted(r.source for r in Catalog(location).runs()) == ["later", "src"]


def _bytes(data: bytes):  # type: ignore[no-untyped-def]
    import io

    return io.BytesIO(data)
