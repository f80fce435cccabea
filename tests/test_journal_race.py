"""The run journal under concurrent appends and ingestion (one host, many processes):
no event is lost when the journal is set aside while an append is in flight."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from drsync.catalog.db import Catalog

APPENDER = r"""
import json, sys
from drsync.catalog import RunJournal
journal = RunJournal(sys.argv[1])
made = []
for i in range(int(sys.argv[2])):
    run_id = journal.start_run("r", "backup", "src", "h")
    journal.finish_run(run_id, "ok", bytes_read=i)
    made.append(run_id)
print(json.dumps(made))
"""

INGESTER = r"""
import sys
from pathlib import Path
from drsync.catalog.db import Catalog
while not Path(sys.argv[2]).exists():
    Catalog(sys.argv[1]).close()
"""


def test_appends_racing_ingestion_lose_nothing(tmp_path: Path) -> None:
    location = str(tmp_path / "catalog.sqlite")
    Catalog(location).close()
    stop = tmp_path / "stop"
    ingesters = [subprocess.Popen([sys.executable, "-c", INGESTER, location, str(stop)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.5)
    appenders = [subprocess.Popen([sys.executable, "-c", APPENDER, location, "150"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    made: list[str] = []
    try:
        for proc in appenders:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            made.extend(json.loads(out))
    finally:
        stop.touch()
        for proc in ingesters:
            _out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    runs = Catalog(location).runs(limit=None)
    assert len(made) == 600
    assert sorted(r.id for r in runs) == sorted(made)
    assert {r.status for r in runs} == {"ok"}
