"""Point-in-time recovery end to end: archive through wal-push, restore on a second cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from drsync.testing_postgres import as_cluster_user
from tests.pg.pitr import restore_between, restored_ids, stamped_inserts

pytestmark = pytest.mark.slow


def test_pitr_contains_every_row_before_the_target_and_none_after(
        tenant_factory: Any, scratch_dir: Path) -> None:
    tenant = tenant_factory()
    tenant.pgbench("-i", "-s", "2", "-q")
    base = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
    bench = subprocess.Popen(
        as_cluster_user([tenant.cluster.bin("pgbench"), "-h", str(tenant.base), "-p",
                         str(tenant.cluster.port), "-T", "3", "-c", "2", "postgres"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = stamped_inserts(tenant, 40)
    bench.wait()
    tenant.switch_and_ship()
    # The target falls strictly between two commits, half-way.
    expected, restored = restore_between(tenant, base["snapshot_id"], rows, 25, scratch_dir)
    assert restored_ids(restored) == expected
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
    # An incremental base backup is only worth its WAL, off-site: wait until the archiver
    # has closed and archived the segment after it and the spool is shipped to the store.
    tenant.switch_and_ship()
    doc = tenant.drsync_json("pitr-range")
    bases = {b["snapshot_id"]: b for b in doc["base_backups"]}
    assert bases[first["snapshot_id"]]["complete"] and bases[second["snapshot_id"]]["complete"]
    spec = next(s for s in tenant.drsync_json("snapshots")
                if s["id"] == second["snapshot_id"])["source"]["spec"]
    assert doc["newest_wal_in_store"] is not None, doc
    assert doc["newest_wal_in_store"]["wal"] >= spec["stop_wal"]


def test_a_target_before_the_base_backup_is_refused_and_latest_picks_an_older_one(
        tenant_factory: Any, scratch_dir: Path) -> None:
    """The server cannot roll a base backup back past the moment it was taken: it stops
    at the first later commit it replays and reports nothing wrong, so a target before
    the base backup gave rows committed after it, with exit 0; `latest` took the newest
    base backup whatever the target. Found by an edge hunt."""
    from datetime import datetime

    from drsync.testing_postgres import Cluster, free_port

    tenant = tenant_factory()
    tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
    older = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    rows = stamped_inserts(tenant, 10)
    newer = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    tenant.cluster.psql("INSERT INTO stamped (note) VALUES ('after the newer base')")
    tenant.switch_and_ship()
    target = tenant.cluster.psql(
        f"SELECT (timestamptz '{rows[4][1]}' + (timestamptz '{rows[5][1]}' - "
        f"timestamptz '{rows[4][1]}') / 2)::text")
    expected = [rid for rid, ts in rows if ts <= target]
    pgdata = scratch_dir / "data"
    refused = tenant.drsync("restore", newer["snapshot_id"], "--pgdata", str(pgdata),
                            "--target-time", target, ok=False)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert f"is before base backup {newer['snapshot_id'][:8]} was consistent" in lines[0]
    assert not pgdata.exists() or not any(pgdata.iterdir())  # nothing written
    # `latest` with that target is the older base backup; the time as pitr-range prints
    # times (ISO 8601, 'T' and 'Z'), which recovery_target_time itself refuses.
    iso = datetime.fromisoformat(target.replace(" ", "T").replace("+00", "+00:00")
                                 ).isoformat().replace("+00:00", "Z")
    port = free_port()
    done = tenant.drsync_json("restore", "latest", "--pgdata", str(pgdata), "--target-time",
                              iso, "--start", "--pg-option", f"port={port}",
                              "--pg-option", f"unix_socket_directories={scratch_dir}")
    assert done["snapshot_id"] == older["snapshot_id"] and done["started"] is True
    restored = Cluster(scratch_dir, tenant.bindir, port)
    assert restored_ids(restored) == expected
    restored.stop()
