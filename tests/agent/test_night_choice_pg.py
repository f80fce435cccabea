"""[agent] pitr = false on a throwaway PostgreSQL: each night ships the day's WAL or a new
base backup's delta, whichever the estimates say is fewer bytes, and the repository stays
restorable and checkable either way."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import datetime, timedelta
from typing import Any

import pytest

from drsync.testing_postgres import as_cluster_user, chown_to_cluster_user
from tests.agent.test_agent_pg import _agent_pid, _wait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _night(t: Any, n: int) -> dict[str, Any]:
    """One slot of the agent opening 2 s from now; the state's last run."""
    opening = (datetime.now() + timedelta(seconds=2)).replace(microsecond=0)
    (t.base / "schedule.json").write_text(json.dumps({
        "format": "drsync-schedule", "version": 1, "fleet": "fleet.toml",
        "window": {"start": opening.strftime("%H:%M:%S"), "minutes": 10, "seconds": 600},
        "tenants": {"Nobeoka": {"link": "lgwan", "start": opening.strftime("%H:%M:%S"),
                                "start_s": 0, "end_s": 60, "deadline_s": 500,
                                "max_mbit_per_s": 0, "send": []}},
        "unscheduled": []}))
    chown_to_cluster_user(t.base)
    state = t.base / "state" / "drsync" / "agent" / "Nobeoka" / "state.json"
    env = [f"{k}={v}" for k, v in t.env.items()]
    proc = subprocess.Popen(as_cluster_user(["env", *env, t.exe, "agent", "run"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=t.base)
    try:
        _wait(lambda: state.exists() and len(_nights(t)) == n
              and json.loads(state.read_text())["last_run"]["finished"] > opening.isoformat(),
              proc, timeout=300)
        subprocess.run(as_cluster_user(["kill", "-TERM", str(_agent_pid(proc))]), check=True)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
    run: dict[str, Any] = json.loads(state.read_text())["last_run"]
    assert run["status"] == "ok", run
    return run


def _nights(t: Any) -> list[dict[str, Any]]:
    return sorted((r for r in t.drsync_json("runs") if r["kind"] == "night"),
                  key=lambda r: str(r["started"]))


def _bases(t: Any) -> list[dict[str, Any]]:
    return [s for s in t.drsync_json("snapshots") if s["source"]["kind"] == "pg_base"]


def _wait_spooled(t: Any) -> None:
    segment = t.cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
    t.cluster.wait_archived(segment)


def test_each_night_ships_the_cheaper_of_wal_and_a_new_base(tenant_factory: Any) -> None:
    extra = ('[agent]\ntenant = "Nobeoka"\nschedule = "schedule.json"\nship_wal = true\n'
             'pitr = false\nrpo_hours = 24\n'
             '[[agent.job]]\nsource = "pg-base"\ntarget = "DSN"\n')
    t = tenant_factory(config_extra=extra)
    t.config.write_text(t.config.read_text().replace("DSN", t.cluster.dsn))
    t.pgbench("-i", "-s", "1", "-q")
    t.cluster.psql("CREATE TABLE counter (id int PRIMARY KEY, v bigint); "
                   "INSERT INTO counter SELECT g, 0 FROM generate_series(1, 10) g")
    _wait_spooled(t)

    # Night 1: no base backup yet, so the WAL alone would restore nothing.
    run = _night(t, 1)
    assert run["night"]["ship"] == "delta" and "no base backup" in run["night"]["reason"]
    [base1] = _bases(t)
    assert base1["source"]["spec"]["wal_restarts"] is True
    start1 = base1["source"]["spec"]["start_wal"]
    stored = sorted(p.name for p in (t.repo / "wal").iterdir())
    assert stored and min(n[:24] for n in stored if not n.endswith(".history")) >= start1
    assert t.drsync("check").returncode == 0

    # Night 2: one small insert, then nothing: a mostly-empty segment beats a new base,
    # whose tree alone changes.
    t.cluster.psql("INSERT INTO counter VALUES (11, 1)")
    _wait_spooled(t)
    run = _night(t, 2)
    night = _nights(t)[-1]
    assert run["night"]["wal_bytes"] == night["bytes_read"] > 0
    assert run["night"]["delta_bytes"] == night["bytes_added"] > 0
    assert run["night"]["ship"] == "wal", run["night"]
    assert run["night"]["wal_bytes"] < run["night"]["delta_bytes"]
    assert len(_bases(t)) == 1 and run["snapshot_ids"] == []  # the base job was skipped
    assert [p for p in t.spool.glob("[!.]*")] == []  # the WAL went to the store
    after2 = {p.name for p in (t.repo / "wal").iterdir()}

    # Night 3: 200,000 updates of ten rows: a day of WAL, a handful of changed pages.
    # Committed every 100 statements: in one transaction each update walked every dead
    # version before it (no pruning until commit), and the loop took 70 s instead of 2.
    t.cluster.psql("DO $$ BEGIN FOR i IN 1..20000 LOOP "
                   "UPDATE counter SET v = v + 1; "
                   "IF i % 100 = 0 THEN COMMIT; END IF; END LOOP; END $$")
    _wait_spooled(t)
    run = _night(t, 3)
    assert run["night"]["ship"] == "delta", run["night"]
    assert run["night"]["delta_bytes"] <= run["night"]["wal_bytes"]
    bases = _bases(t)
    assert len(bases) == 2 and run["snapshot_ids"] == [bases[-1]["id"]]
    start3 = bases[-1]["source"]["spec"]["start_wal"]
    shipped3 = sorted(p.name for p in (t.repo / "wal").iterdir()
                      if p.name not in after2 and not p.name.endswith(".history"))
    # What came after night 2 and before night 3's base was dropped from the spool, not
    # shipped: the chain restarts at the new base, whose own WAL is in the store.
    assert shipped3 and min(n[:24] for n in shipped3) == start3, (shipped3, start3)
    assert max(n[:24] for n in after2) < start3
    assert [p for p in t.spool.glob("[!.]*")] == []
    checked = t.drsync("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "left out by policy" in checked.stdout + checked.stderr
    assert t.cluster.psql("SELECT v FROM counter WHERE id = 1") == "20000"
    ranges = t.drsync_json("pitr-range")
    assert ranges, ranges
