"""The run journal with an append in flight while the catalog ingests (two processes of
one host): the append must not land in a journal already set aside and read."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

from drsync.catalog import RunJournal
from drsync.catalog.db import Catalog
from drsync.catalog.journal import APPEND_LOCK


def test_an_append_in_flight_is_not_lost_to_ingestion(tmp_path: Path) -> None:
    location = str(tmp_path / "catalog.sqlite")
    journal = RunJournal(location)
    run_id = journal.start_run("r", "backup", "src", "h")
    # Another process's append, caught between opening the journal and writing its line
    # (as appenders do, it holds the append lock shared from open to fsync).
    lock = os.open(str(journal.path) + APPEND_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_SH)
    fd = os.open(journal.path, os.O_WRONLY | os.O_APPEND)
    ingest = threading.Thread(target=lambda: Catalog(location).close())
    ingest.start()
    time.sleep(0.5)  # time enough for an ingestion that does not wait to finish and delete
    line = {"event": "finish", "run": run_id, "status": "ok", "bytes_read": 7,
            "bytes_added": 1, "snapshot_id": "s", "error": None,
            "time": "2026-11-27T01:10:00+00:00"}
    os.write(fd, (json.dumps(line) + "\n").encode())
    os.fsync(fd)
    os.close(fd)
    os.close(lock)
    ingest.join(timeout=60)
    assert not ingest.is_alive()
    [run] = Catalog(location).runs()
    assert (run.id, run.status, run.bytes_read) == (run_id, "ok", 7)
    assert not journal.path.exists()
