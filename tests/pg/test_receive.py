"""Streaming mode: wal-receive (pg_receivewal through a slot) on a server that does not
archive, then a point-in-time restore from a base backup and the streamed WAL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from drsync.testing_postgres import as_cluster_user
from tests.pg.pitr import restore_between, restored_ids, stamped_inserts

pytestmark = pytest.mark.slow


def _poll(what: str, check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _drsync_pid(launched: subprocess.Popen[str]) -> int:
    """The drsync process itself: under root it is runuser's child (runuser answers SIGTERM
    by killing its child, which is not what a service manager does)."""
    if os.geteuid() != 0:
        return launched.pid
    children = _poll("wal-receive to start", lambda: Path(
        f"/proc/{launched.pid}/task/{launched.pid}/children").read_text().split())
    return int(children[0])


def _spooled(tenant: Any) -> list[str]:
    spool = Path(tenant.spool)
    return sorted(n for n in os.listdir(spool) if not n.startswith(".")) if spool.is_dir() else []


def test_streamed_wal_restores_to_a_point_in_time(tenant_factory: Any,
                                                  scratch_dir: Path) -> None:
    tenant = tenant_factory({"archive_mode": "off"})
    assert tenant.cluster.psql("SHOW archive_mode") == "off"
    env = {**tenant.env}
    receiver = subprocess.Popen(
        as_cluster_user(["env", *(f"{k}={v}" for k, v in env.items()), tenant.exe,
                         "wal-receive", tenant.cluster.dsn, "--slot", "drsync_test"]),
        cwd=tenant.base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = _drsync_pid(receiver)
    try:
        _poll("the slot to be active", lambda: tenant.cluster.psql(
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'drsync_test'") == "t")
        tenant.pgbench("-i", "-s", "1", "-q")
        base = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
        tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
        rows = stamped_inserts(tenant, 30)
        last = tenant.cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
        # Completed segments reach the spool; the one being written stays .partial in staging.
        _poll(f"{last} in the spool", lambda: last in _spooled(tenant))
        assert not [n for n in _spooled(tenant) if n.endswith(".partial")]
        assert base["snapshot_id"]
    finally:
        os.kill(pid, signal.SIGTERM)
        out, err = receiver.communicate(timeout=120)
    assert receiver.returncode == 0, err
    assert "stopped:" in out and "spooled" in out
    staging = Path(tenant.spool) / ".receive"
    assert all(n.endswith(".partial") for n in os.listdir(staging))  # the rest was spooled

    shipped = tenant.drsync_json("wal-ship")
    assert shipped["shipped"] >= 2 and _spooled(tenant) == []

    expected, restored = restore_between(tenant, base["snapshot_id"], rows, 20, scratch_dir)
    assert restored_ids(restored) == expected
    restored.stop()
