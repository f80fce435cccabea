"""Logical backups: pg_dump streamed into the repository, pg_restore into a new database."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from drsync.testing import make_repository
from drsync.testing_postgres import Cluster

CHECKSUM = ("SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY {key})) "
            "FROM {table} t")
TABLES = {"pgbench_accounts": "aid", "pgbench_branches": "bid", "resident": "id"}


def _drsync(exe: str, env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([exe, *args, "--json"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_dump_restores_with_equal_row_counts_and_checksums(
        cluster: Cluster, drsync_bin: str, tmp_path: Path) -> None:
    cluster.psql("CREATE DATABASE registry")
    cluster.run(cluster.bin("pgbench"), "-h", str(cluster.base), "-p", str(cluster.port),
                "-U", "postgres", "-i", "-s", "1", "-q", "registry")
    cluster.psql("CREATE ROLE clerk; CREATE TABLE resident (id serial PRIMARY KEY, name text, "
                 "moved timestamptz); ALTER TABLE resident OWNER TO clerk; "
                 "INSERT INTO resident (name, moved) SELECT '住民 ' || g, now() - g * "
                 "interval '1 day' FROM generate_series(1, 5000) g", dbname="registry")
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}
    make_repository(str(tmp_path / "repo"), "pw")
    first = _drsync(drsync_bin, env, "backup", "--pg-dump", cluster.dsn_for("registry"),
                    "--pg-dumpall-globals")
    cluster.psql("UPDATE resident SET name = name || ' (moved)' WHERE id % 100 = 0",
                 dbname="registry")
    second = _drsync(drsync_bin, env, "backup", "--pg-dump", cluster.dsn_for("registry"))
    # Uncompressed custom format: the second night deduplicates against the first.
    assert second["bytes_added"] < min(first["bytes_added"], second["bytes_read"] * 0.05)

    snaps = _drsync(drsync_bin, env, "snapshots")
    spec = snaps[-1]["source"]["spec"]
    assert snaps[-1]["source"]["kind"] == "pg_dump"
    assert spec["database"] == "registry" and spec["server_version"].startswith("15")
    assert spec["consistent_at"].endswith("Z") and "/" in spec["consistent_lsn"]
    assert snaps[0]["source"]["spec"]["globals"] is True

    for jobs, snap in (("1", second), ("2", second)):
        name = f"restored_{jobs}"
        cluster.psql(f"CREATE DATABASE {name}")
        done = _drsync(drsync_bin, env, "restore", snap["snapshot_id"], "--pg-restore",
                       cluster.dsn_for(name), "--jobs", jobs)
        assert done["kind"] == "pg_dump" and done["bytes_written"] > 0
        for table, key in TABLES.items():
            query = CHECKSUM.format(table=table, key=key)
            assert cluster.psql(query, dbname=name) == cluster.psql(query, dbname="registry")
        assert cluster.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'resident'",
                            dbname=name) == "clerk"


def test_dump_of_a_missing_database_is_one_line(cluster: Cluster, drsync_bin: str,
                                                tmp_path: Path) -> None:
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}
    make_repository(str(tmp_path / "repo"), "pw")
    done = subprocess.run([drsync_bin, "backup", "--pg-dump", cluster.dsn_for("nowhere")],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 15
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nowhere" in lines[0], lines


def test_restore_creates_a_missing_database_and_refuses_a_non_empty_one(
        cluster: Cluster, drsync_bin: str, tmp_path: Path) -> None:
    cluster.psql("CREATE DATABASE registry")
    cluster.psql("CREATE TABLE resident (id int PRIMARY KEY, name text); INSERT INTO resident "
                 "SELECT g, 'resident ' || g FROM generate_series(1, 300) g", dbname="registry")
    # Another user than the superuser: the new database must be owned by the DSN's user.
    cluster.psql("CREATE ROLE restorer LOGIN CREATEDB")
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}
    make_repository(str(tmp_path / "repo"), "pw")
    snap = _drsync(drsync_bin, env, "backup", "--pg-dump", cluster.dsn_for("registry"))
    dsn = f"host={cluster.base} port={cluster.port} user=restorer dbname='new registry'"
    done = _drsync(drsync_bin, env, "restore", snap["snapshot_id"], "--pg-restore", dsn,
                   "--no-owner")
    assert done["created"] is True and done["target_database"] == "new registry"
    query = CHECKSUM.format(table="resident", key="id")
    assert cluster.psql(query, dbname="new registry") == cluster.psql(query, dbname="registry")
    assert cluster.psql("SELECT pg_get_userbyid(datdba) FROM pg_database "
                        "WHERE datname = 'new registry'") == "restorer"

    # It exists now and holds a table: refused in one line, nothing touched.
    cluster.psql("UPDATE resident SET name = 'changed'", dbname="new registry")
    refused = subprocess.run([drsync_bin, "restore", snap["snapshot_id"], "--pg-restore", dsn,
                              "--no-owner"], env=env, capture_output=True, text=True)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "not empty" in lines[0] and "--clean" in lines[0], lines
    assert cluster.psql("SELECT count(*) FROM resident WHERE name = 'changed'",
                        dbname="new registry") == "300"

    # --clean: the dump's objects are dropped and recreated.
    done = _drsync(drsync_bin, env, "restore", snap["snapshot_id"], "--pg-restore", dsn,
                   "--no-owner", "--clean")
    assert done["created"] is False
    assert cluster.psql(query, dbname="new registry") == cluster.psql(query, dbname="registry")

    # Each attempt is a run of kind restore in the catalog, the refused one too.
    runs = [r for r in _drsync(drsync_bin, env, "runs") if r["kind"] == "restore"]
    assert [r["status"] for r in runs] == ["ok", "failed", "ok"]
    assert runs[0]["id"] == done["run_id"] and runs[0]["bytes_read"] == done["bytes_fetched"]
    assert all(r["snapshot_id"] == snap["snapshot_id"] for r in runs)
    assert runs[0]["source"].startswith("pg_restore -> ") and "--clean" in runs[1]["error"]
