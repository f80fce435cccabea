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


_START_AND_WAIT = """
import sys, time
from drsync.catalog import RunJournal
print(RunJournal(sys.argv[1]).start_run("memory://", "backup", sys.argv[2], "h"), flush=True)
time.sleep(600)
"""


def test_a_run_whose_process_ended_unfinished_is_settled_as_failed(tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys

    from drsync.catalog.records import this_owner

    location = str(tmp_path / "catalog.sqlite")
    children = [subprocess.Popen([sys.executable, "-c", _START_AND_WAIT, location, name],
                                 stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
    try:
        ids = [c.stdout.readline().strip() for c in children if c.stdout]
        children[0].send_signal(signal.SIGKILL)  # as the OOM killer would
        children[0].wait()
        catalog = Catalog(location)
        runs = {r.id: r for r in catalog.runs()}
        killed, alive = runs[ids[0]], runs[ids[1]]
        assert killed.status == "failed" and killed.ended is not None
        assert (killed.error or "").startswith(
            f"interrupted: process {children[0].pid} is gone and never finished the run")
        assert alive.status == "running" and alive.ended is None  # its process still runs
        children[1].send_signal(signal.SIGKILL)
        children[1].wait()
        assert {r.id: r.status for r in Catalog(location).runs()}[ids[1]] == "failed"
    finally:
        for child in children:
            child.kill()
            child.wait()

    # Only this host can tell: another host's run stays running; a pid now another
    # process's, or a run from before this host booted, is settled.
    _host, pid, start, boot = this_owner().rsplit(":", 3)
    journal = RunJournal(location)
    kinds = {}
    for name, owner in (("elsewhere", f"db2.example:{pid}:{start}:{boot}"),
                        ("reused", f"{socket.gethostname()}:{pid}:{int(start or 0) + 1}:"
                                   f"{boot}"),
                        ("rebooted", f"{socket.gethostname()}:{pid}:{start}:not-this-boot")):
        run_id = journal.start_run("memory://", "backup", name, "h")
        kinds[run_id] = name
        _set_owner(journal.path, run_id, owner)
    settled = {kinds[r.id]: r for r in Catalog(location).runs() if r.id in kinds}
    assert settled["elsewhere"].status == "running"
    assert "now belongs to another process" in (settled["reused"].error or "")
    assert "written before this host last booted" in (settled["rebooted"].error or "")


def _set_owner(journal: Path, run_id: str, owner: str) -> None:
    lines = journal.read_text().splitlines()
    out = []
    for line in lines:
        event = json.loads(line)
        if event.get("run") == run_id:
            event["owner"] = owner
        out.append(json.dumps(event))
    journal.write_text("\n".join(out) + "\n")
