"""Point-in-time recovery end to end: archive through wal-push, restore on a second cluster."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from drsync.testing_postgres import free_port

pytestmark = pytest.mark.slow


def _stamped_inserts(tenant: Any, n: int) -> list[tuple[int, str]]:
    """n rows, each committed alone; returns (id, commit timestamp) from the server."""
    for i in range(n):
        tenant.cluster.psql(f"INSERT INTO stamped (note) VALUES ('row {i}')")
    rows = tenant.cluster.psql(
        "SELECT id, pg_xact_commit_timestamp(xmin) FROM stamped ORDER BY id")
    return [(int(a), b) for a, b in (line.split("|") for line in rows.splitlines())]


def test_pitr_contains_every_row_before_the_target_and_none_after(
        tenant_factory: Any, scratch_dir: Path) -> None:
    tenant = tenant_factory()
    tenant.pgbench("-i", "-s", "2", "-q")
    base = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
    bench = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", tenant.cluster.bin("pgbench"), "-h",
         str(tenant.base), "-p", str(tenant.cluster.port), "-T", "3", "-c", "2", "postgres"]
        if __import__("os").geteuid() == 0 else
        [tenant.cluster.bin("pgbench"), "-h", str(tenant.base), "-p", str(tenant.cluster.port),
         "-T", "3", "-c", "2", "postgres"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = _stamped_inserts(tenant, 40)
    bench.wait()
    tenant.switch_and_ship()
    # The target falls strictly between two commits, half-way.
    k = 25
    target = tenant.cluster.psql(
        f"SELECT (timestamptz '{rows[k][1]}' + (timestamptz '{rows[k + 1][1]}' - "
        f"timestamptz '{rows[k][1]}') / 2)::text")
    expected = [rid for rid, ts in rows if ts <= target]
    assert 0 < len(expected) < len(rows)

    port = free_port()
    done = tenant.drsync_json(
        "restore", base["snapshot_id"], "--pgdata", str(scratch_dir / "data"),
        "--target-time", target, "--start", "--pg-option", f"port={port}",
        "--pg-option", f"unix_socket_directories={scratch_dir}")
    assert done["started"] is True
    from drsync.testing_postgres import Cluster

    restored = Cluster(scratch_dir, tenant.bindir, port)
    got = [int(x) for x in restored.psql("SELECT id FROM stamped ORDER BY id").split()]
    assert got == expected
    # pgbench's invariant holds in any consistent state: money is neither made nor lost.
    sums = restored.psql("SELECT (SELECT sum(abalance) FROM pgbench_accounts) = "
                         "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)")
    assert sums == "t"
    restored.stop()

    # pitr-range: the base backup is restorable, up to the last shipped segment.
    doc = tenant.drsync_json("pitr-range")
    assert doc["earliest"] == base_consistent(tenant, base["snapshot_id"])
    assert doc["latest"] is not None and doc["latest"] >= doc["earliest"]
    # Read from the WAL itself: the newest commit archived, at least the last stamped row's.
    assert doc["latest_basis"] == "last commit in the archived WAL"
    last_row = tenant.cluster.psql(
        f"SELECT to_char(timestamptz '{rows[-1][1]}' AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    assert doc["latest"] >= last_row
    assert doc["base_backups"][0]["latest_lsn"]
    assert doc["rpo_s"] is not None and doc["rpo_s"] >= 0
    assert doc["base_backups"][0]["complete"] is True


def base_consistent(tenant: Any, snapshot_id: str) -> str:
    snaps = tenant.drsync_json("snapshots")
    return str(next(s for s in snaps if s["id"] == snapshot_id)["source"]["spec"]
               ["consistent_at"])


def test_second_base_backup_after_one_percent_of_pages_is_incremental(
        tenant_factory: Any) -> None:
    tenant = tenant_factory()
    tenant.pgbench("-i", "-s", "5", "-q")
    tenant.cluster.psql("CHECKPOINT")
    first = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    pages = int(tenant.cluster.psql(
        "SELECT pg_relation_size('pgbench_accounts') / current_setting('block_size')::int"))
    # Touch 1% of the table's pages: one row on each of them, spread evenly.
    step = 100
    tenant.cluster.psql(
        f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE ctid = ANY (ARRAY("
        f"SELECT format('(%s,1)', p)::tid FROM generate_series(0, {pages - 1}, {step}) p))")
    tenant.cluster.psql("CHECKPOINT")
    second = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    added = second["bytes_added"] / second["bytes_read"]
    print(f"cluster {second['bytes_read']} bytes; second base backup added "
          f"{second['bytes_added']} ({added:.2%}); first added {first['bytes_added']}")
    assert added <= 0.05
    assert first["bytes_added"] > 5 * second["bytes_added"]
    time.sleep(0)
