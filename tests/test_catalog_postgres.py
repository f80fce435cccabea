"""A central PostgreSQL catalog: many agents (real processes) report into it at once.

Runs against the machine's PostgreSQL server (127.0.0.1:5432, trust auth), in a
throwaway database created and dropped here. Under CI a missing server fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER = "127.0.0.1:5432"


def _admin() -> tuple[object, str]:
    import psycopg

    errors = []
    for user in ("postgres", "root"):
        try:
            return psycopg.connect(f"postgresql://{user}@{SERVER}/test", autocommit=True,
                                   connect_timeout=5), user
        except psycopg.Error as err:
            errors.append(f"{user}: {str(err).strip().splitlines()[0]}")
    reason = f"no PostgreSQL server at {SERVER} (database test): {'; '.join(errors)}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def pg_catalog() -> Iterator[str]:
    """The URL of a fresh database on the server, dropped afterwards."""
    conn, user = _admin()
    name = f"drsync_test_{secrets.token_hex(6)}"
    conn.execute(f"CREATE DATABASE {name}")  # type: ignore[attr-defined]
    try:
        yield f"postgresql://{user}@{SERVER}/{name}"
    finally:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[attr-defined]
        conn.close()  # type: ignore[attr-defined]


# One agent: open the catalog (creating the tables, racing the others), record runs in
# its host's journal, ingest now and then while the host's other agent does the same.
AGENT = r"""
import json, sys, time
from pathlib import Path
from drsync.catalog import RunJournal
from drsync.catalog.db import Catalog

url, state, host, go, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
while not Path(go).exists():
    time.sleep(0.005)
Catalog(url, state).close()
journal = RunJournal(url, state)
made = []
for i in range(runs):
    if i == runs - 1:  # a slot that never ran, recorded after the fact
        run_id = f"{host}-{sys.argv[6]}-missed"
        journal.record_run(f"repo-{host}", {
            "run_id": run_id, "tenant": host, "host": host, "kind": "backup",
            "status": "missed", "started": "2026-11-27T01:00:00+00:00", "finished": None})
    else:
        run_id = journal.start_run(f"repo-{host}", "backup", "src", host, tenant=host)
        journal.finish_run(run_id, "ok", bytes_read=i, snapshot_id=f"snap-{run_id}")
    made.append(run_id)
    if i % 2:
        Catalog(url, state).close()
Catalog(url, state).close()
print(json.dumps(made))
"""


def test_twenty_concurrent_agents_lose_and_duplicate_nothing(pg_catalog: str,
                                                            tmp_path: Path) -> None:
    from drsync.catalog.db import Catalog

    hosts, per_host, runs = 10, 2, 6  # two agents share each host's journal
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    agents = [
        subprocess.Popen([sys.executable, "-c", AGENT, pg_catalog, str(tmp_path / f"h{h}"),
                          f"host{h}", str(go), str(runs), str(a)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for h in range(hosts) for a in range(per_host)
    ]
    time.sleep(1.0)  # let every interpreter start, then release them together
    go.touch()
    made: list[str] = []
    for agent in agents:
        out, err = agent.communicate(timeout=300)
        assert agent.returncode == 0, err
        made.extend(json.loads(out))
    assert len(made) == len(set(made)) == hosts * per_host * runs
    catalog = Catalog(pg_catalog, str(tmp_path / "operator"))
    try:
        recorded = catalog.runs(limit=None)
        ids = [r.id for r in recorded]
        assert len(ids) == len(set(ids))  # nothing duplicated
        assert set(ids) == set(made)  # nothing lost
        by_id = {r.id: r for r in recorded}
        missed = [i for i in made if i.endswith("-missed")]
        assert len(missed) == hosts * per_host
        assert all(by_id[i].status == "missed" for i in missed)
        finished = [by_id[i] for i in made if i not in missed]
        assert all(r.status == "ok" and r.snapshot_id == f"snap-{r.id}" for r in finished)
        assert all(r.ended is not None and r.tenant == r.host for r in finished)
        # Every journal was taken in whole: nothing left to ingest on any host.
        assert not [p for p in tmp_path.rglob("*-journal.jsonl*") if not p.name.endswith("lock")]
        assert {r.tenant for r in catalog.tenant_runs(["host3"])} == {"host3"}
    finally:
        catalog.close()


def test_backups_report_into_postgres_through_the_cli(pg_catalog: str, tmp_path: Path,
                                                      drsync_bin: str) -> None:
    from drsync.testing import make_repository

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_bytes(b"municipal" * 1000)
    procs = []
    for name in ("Nobeoka", "Hyuga", "Saiki"):
        make_repository(str(tmp_path / name), "pw")
        env = {**os.environ, "DRSYNC_REPO": str(tmp_path / name), "DRSYNC_PASSWORD": "pw",
               "XDG_STATE_HOME": str(tmp_path / f"state-{name}")}
        procs.append((name, env, subprocess.Popen(
            [drsync_bin, "--catalog", pg_catalog, "backup", "--tenant", name, "--json",
             str(tmp_path / "data")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)))
    runs = {}
    for name, env, proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        runs[name] = json.loads(out)["run_id"]
        listed = subprocess.run([drsync_bin, "--catalog", pg_catalog, "runs", "--all-repos",
                                 "--json"], env=env, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
    final = json.loads(listed.stdout)
    assert {r["tenant"]: r["id"] for r in final} == runs
    assert {r["status"] for r in final} == {"ok"}


def test_an_unreachable_catalog_is_one_clear_line(drsync_bin: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [drsync_bin, "--catalog", "postgresql://drsync@127.0.0.1:1/nowhere", "runs"],
        capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 14 and len(lines) == 1, done.stderr  # the network, not a setting
    assert lines[0].startswith("drsync: error: cannot open catalog postgresql://drsync@")
