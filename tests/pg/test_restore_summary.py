"""A --pgdata restore checks its restore_command before the server starts, resumes with
--delta, and reports where recovery stopped as the restored server says; each attempt is
a run of kind restore in the catalog."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from drsync.testing_postgres import Cluster, free_port, running_as_root
from tests.pg.pitr import restored_ids, stamped_inserts

pytestmark = pytest.mark.slow

UTC_ISO = "YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\""


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    return lines[0]


def test_broken_restore_command_is_one_line_then_delta_rerun_reports_recovery(
        tenant_factory: Any, scratch_dir: Path, drsync_bin: str, tmp_path: Path) -> None:
    tenant = tenant_factory()
    tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
    tenant.pgbench("-i", "-s", "1", "-q")
    base = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    rows = stamped_inserts(tenant, 12)
    tenant.switch_and_ship()
    k = 7
    target = tenant.cluster.psql(
        f"SELECT (timestamptz '{rows[k][1]}' + (timestamptz '{rows[k + 1][1]}' - "
        f"timestamptz '{rows[k][1]}') / 2)::text")
    data = scratch_dir / "data"
    port = free_port()
    restore = ("restore", base["snapshot_id"], "--pgdata", str(data), "--target-time", target,
               "--start", "--pg-option", f"port={port}",
               "--pg-option", f"unix_socket_directories={scratch_dir}")

    # A restore_command that cannot run (drsync is not where it says) fails the restore
    # in one line naming the command's own error, before PostgreSQL is started.
    broken = tenant.drsync(*restore, "--drsync-command", "/nonexistent/drsync", ok=False)
    line = _one_line(broken)
    assert broken.returncode == 4, broken.stderr
    assert "restore_command run as user postgres" in line and "/nonexistent/drsync" in line
    assert not (data / "postmaster.pid").exists()

    if running_as_root():
        # Root restores (it can read its key); the server's user cannot: said in one line.
        root_key = tmp_path / "root-only.key"
        shutil.copy(tenant.key, root_key)
        os.chmod(root_key, 0o600)
        env = {**os.environ, "DRSYNC_REPO": str(tenant.repo), "DRSYNC_KEY_FILE": str(root_key),
               "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}
        done = subprocess.run([drsync_bin, *restore, "--delta", "--drsync-command",
                               tenant.exe], capture_output=True, text=True, env=env,
                              timeout=300)
        line = _one_line(done)
        assert done.returncode == 4 and "as user postgres" in line, done.stderr
        assert str(root_key) in line  # wal-fetch's own words: the key file it cannot read
        assert not (data / "postmaster.pid").exists()
        runs = json.loads(subprocess.run([drsync_bin, "runs", "--json"], capture_output=True,
                                         text=True, env=env, check=True).stdout)
        assert [(r["kind"], r["status"]) for r in runs] == [("restore", "failed")]
        assert "restore_command" in runs[0]["error"]

    # Run again with --delta over what the failed attempts left: what is there verifies.
    doc = tenant.drsync_json(*restore, "--delta")
    restored = Cluster(scratch_dir, tenant.bindir, port)
    assert restored_ids(restored) == [rid for rid, ts in rows if ts <= target]
    assert doc["files_kept"] > 100 and doc["files_written"] < 10
    assert doc["bytes_fetched"] < doc["bytes_kept"] / 10
    assert doc["restore_command_checked"]["wal"] == doc["wal_needed"][0]

    # Where recovery stopped, in the summary, is what the server says.
    recovery = doc["recovery"]
    server_at = restored.psql(
        f"SELECT to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', '{UTC_ISO}')")
    assert recovery["last_replayed_xact_at"] == server_at
    commit_k = tenant.cluster.psql(
        f"SELECT to_char(timestamptz '{rows[k][1]}' AT TIME ZONE 'UTC', '{UTC_ISO}')")
    target_utc = tenant.cluster.psql(
        f"SELECT to_char(timestamptz '{target}' AT TIME ZONE 'UTC', '{UTC_ISO}')")
    assert _at(commit_k) <= _at(server_at) <= _at(target_utc)
    timeline = int(restored.psql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"),
                   16)
    assert recovery["timeline"] == timeline == doc["timeline"] + 1  # promoted: a new one
    assert recovery["last_replay_lsn"] == restored.psql("SELECT pg_last_wal_replay_lsn()")
    log = Path(recovery["log"]).read_text()
    assert recovery["wal_files_fetched"] == log.count("restored log file \"0") >= 1
    assert recovery["stopped"].startswith("recovery stopping before commit")
    restored.stop()

    runs = [r for r in tenant.drsync_json("runs") if r["kind"] == "restore"]
    assert [r["status"] for r in runs] == ["ok", "failed"]
    assert runs[0]["id"] == doc["run_id"] and runs[0]["snapshot_id"] == base["snapshot_id"]
    assert runs[0]["bytes_read"] == doc["bytes_fetched"]
    assert "restore_command" in runs[1]["error"]


def test_a_target_past_the_archived_wal_fails_in_one_line_instead_of_waiting(
        tenant_factory: Any, scratch_dir: Path) -> None:
    """Recovery that ends before its target shuts the server down, before pg_ctl -w
    returns or (hot_standby took connections) after it, which of the two is the server's
    timing: either way the restore says so in one line at once, exit 15."""
    tenant = tenant_factory()
    tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
    base = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    stamped_inserts(tenant, 3)
    tenant.switch_and_ship()
    beyond = tenant.cluster.psql("SELECT (now() + interval '1 day')::text")
    data = scratch_dir / "data"
    done = tenant.drsync("restore", base["snapshot_id"], "--pgdata", str(data),
                         "--target-time", beyond, "--start",
                         "--pg-option", f"port={free_port()}",
                         "--pg-option", f"unix_socket_directories={scratch_dir}",
                         ok=False, timeout=240)
    line = _one_line(done)
    assert done.returncode == 15, done.stderr
    assert line.startswith(f"drsync: error: PostgreSQL did not start in {data}")
    assert "recovery ended before configured recovery target was reached" in line
    assert not (data / "postmaster.pid").exists()  # no server left behind
