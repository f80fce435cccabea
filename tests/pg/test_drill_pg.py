"""Drills of pg_dump snapshots: restored into a scratch database, counts compared, dropped."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from drsync.testing import make_repository
from drsync.testing_postgres import Cluster


def _drsync(exe: str, env: dict[str, str], *args: str, code: int = 0) -> Any:
    done = subprocess.run([exe, *args, "--json"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == code, done.stderr
    return json.loads(done.stdout)


def _databases(cluster: Cluster) -> list[str]:
    return sorted(cluster.psql("SELECT datname FROM pg_database").split())


def test_pg_dump_drill_counts_rows_in_a_scratch_database_and_drops_it(
        cluster: Cluster, drsync_bin: str, tmp_path: Path) -> None:
    cluster.psql("CREATE DATABASE registry")
    cluster.psql("CREATE SCHEMA town; CREATE TABLE town.resident (id serial PRIMARY KEY, "
                 "name text); INSERT INTO town.resident (name) SELECT 'r' || g "
                 "FROM generate_series(1, 4321) g; CREATE TABLE public.\"odd|name\" (x int); "
                 "INSERT INTO public.\"odd|name\" VALUES (1), (2); CREATE TABLE empty (x int)",
                 dbname="registry")
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}
    make_repository(str(tmp_path / "repo"), "pw")
    _drsync(drsync_bin, env, "backup", "--pg-dump", cluster.dsn_for("registry"))
    spec = _drsync(drsync_bin, env, "snapshots")[-1]["source"]["spec"]
    # Counted (and checksummed) in the dump's own transaction.
    assert {t: v["rows"] for t, v in spec["tables"].items()} == {
        "public.empty": 0, "public.odd|name": 2, "town.resident": 4321}
    assert spec["tables"]["public.empty"]["checksum"] == 0
    # The checksum is the documented one: sum of md5(row text)'s first 60 bits.
    assert spec["tables"]["town.resident"]["checksum"] == int(cluster.psql(
        "SELECT sum(('x' || left(md5(t::text), 15))::bit(60)::bigint) FROM town.resident t",
        dbname="registry"))
    before = _databases(cluster)

    doc = _drsync(drsync_bin, env, "drill")
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["status"] == "ok", doc
    assert checks["restore"]["detail"].startswith("into scratch database drsync_drill_")
    assert checks["table counts"]["detail"] == "3 tables, 4323 rows as recorded"
    assert checks["pg_amcheck"]["ok"] and "no corruption" in checks["pg_amcheck"]["detail"]
    assert _databases(cluster) == before  # the scratch database is gone

    # A damaged pack: the restore fails naming it, and the half-made scratch database
    # is dropped all the same.
    for pack in (tmp_path / "repo" / "data").rglob("*"):
        if pack.is_file():
            pack.chmod(0o600)
            data = bytearray(pack.read_bytes())
            data[len(data) // 2] ^= 0x01
            pack.write_bytes(bytes(data))
    doc = _drsync(drsync_bin, env, "drill", code=13)
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert doc["status"] == "failed" and [c["name"] for c in failed] == ["restore"]
    assert "object data/" in failed[0]["detail"]
    assert _databases(cluster) == before
