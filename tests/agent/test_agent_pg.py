"""The agent on a throwaway PostgreSQL: pg-dump and pg-base jobs, then wal-ship in the slot."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drsync.testing_postgres import as_cluster_user, chown_to_cluster_user

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _agent_pid(proc: subprocess.Popen[str]) -> int:
    """The drsync process itself (runuser's child when the cluster user is another)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    for _ in range(50):
        if not children.exists():
            return proc.pid
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.1)
    return proc.pid


def _wait(predicate: Any, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"agent exited {proc.returncode}: {proc.communicate()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {predicate}")


def test_pg_dump_pg_base_and_wal_ship_in_the_slot(tenant_factory: Any) -> None:
    schedule = "schedule.json"
    extra = (f'[agent]\ntenant = "Nobeoka"\nschedule = "{schedule}"\nship_wal = true\n'
             'metrics_file = "metrics.prom"\n'
             '[[agent.job]]\nsource = "pg-dump"\ntarget = "DSN"\n'
             '[[agent.job]]\nsource = "pg-base"\ntarget = "DSN"\n')
    t = tenant_factory(config_extra=extra)
    t.config.write_text(t.config.read_text().replace("DSN", t.cluster.dsn))
    t.pgbench("-i", "-s", "1", "-q")
    # WAL waiting in the spool before the slot opens (archive_command is wal-push)
    t.cluster.psql("CREATE TABLE moved AS SELECT g FROM generate_series(1, 1000) g; "
                   "SELECT pg_switch_wal()")

    def spooled() -> list[str]:
        return sorted(p.name for p in t.spool.glob("[!.]*")) if t.spool.exists() else []

    deadline = time.monotonic() + 60
    while not spooled() and time.monotonic() < deadline:
        time.sleep(0.2)
    before = spooled()
    opening = (datetime.now() + timedelta(seconds=3)).replace(microsecond=0)
    (t.base / schedule).write_text(json.dumps({
        "format": "drsync-schedule", "version": 1, "fleet": "fleet.toml",
        "window": {"start": opening.strftime("%H:%M:%S"), "minutes": 10, "seconds": 600},
        "tenants": {"Nobeoka": {"link": "lgwan", "start": opening.strftime("%H:%M:%S"),
                                "start_s": 0, "end_s": 30, "deadline_s": 300,
                                "max_mbit_per_s": 0, "send": []}},
        "unscheduled": []}))
    chown_to_cluster_user(t.base)
    env = [f"{k}={v}" for k, v in t.env.items()]
    proc = subprocess.Popen(as_cluster_user(["env", *env, t.exe, "agent", "run"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=t.base)
    try:
        state = t.base / "state" / "drsync" / "agent" / "Nobeoka" / "state.json"
        _wait(state.exists, proc)
        pid = _agent_pid(proc)
        subprocess.run(as_cluster_user(["kill", "-TERM", str(pid)]), check=True)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err
    run = json.loads(state.read_text())["last_run"]
    assert run["status"] == "ok", (run, out[-2000:])
    snaps = t.drsync_json("snapshots")
    assert sorted(s["source"]["kind"] for s in snaps) == ["pg_base", "pg_dump"]
    assert sorted(s["id"] for s in snaps) == sorted(run["snapshot_ids"])
    stored = {p.name for p in (t.repo / "wal").rglob("*") if p.is_file()}
    assert before and set(before) <= stored, (before, stored)
    ships = [r for r in t.drsync_json("runs") if r["kind"] == "wal-ship"]
    assert [r["status"] for r in ships] == ["ok"]
    status = t.drsync("agent", "status", "--json")
    doc = json.loads(status.stdout)
    assert doc["healthy"] and doc["rpo_s"] < 300, doc
    assert (t.base / "metrics.prom").read_text().count('tenant="Nobeoka"') >= 8
