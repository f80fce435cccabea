"""The PITR drill: a base backup + archived WAL recovered on a throwaway cluster, validated,
measured, torn down; and the check that names what was damaged."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.pg.pitr import stamped_inserts

pytestmark = pytest.mark.slow


def _drill(drsync_bin: str, tenant: Any, scratch: Path, code: int = 0) -> Any:
    env = {**os.environ, "DRSYNC_REPO": str(tenant.repo), "DRSYNC_KEY_FILE": str(tenant.key),
           "DRSYNC_CATALOG": str(scratch.parent / "drill-catalog.sqlite"),
           "DRSYNC_PG_BINDIR": tenant.bindir}
    done = subprocess.run([drsync_bin, "drill", "--scratch-dir", str(scratch), "--json"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == code, done.stderr + done.stdout
    return json.loads(done.stdout)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _postmasters(scratch: Path) -> list[str]:
    done = subprocess.run(["pgrep", "-f", str(scratch)], capture_output=True, text=True)
    return done.stdout.split()


def test_pitr_drill_recovers_to_the_last_commit_and_names_damage(
        tenant_factory: Any, drsync_bin: str, scratch_dir: Path) -> None:
    tenant = tenant_factory()
    tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
    base = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    rows = stamped_inserts(tenant, 12)
    last_segment = tenant.switch_and_ship()
    scratch = scratch_dir  # the cluster's user must reach it: a 0755 directory in /tmp

    before = datetime.now(UTC)
    doc = _drill(drsync_bin, tenant, scratch)
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["status"] == "ok", doc
    assert doc["snapshot_id"] == base["snapshot_id"]
    assert [c["name"] for c in doc["checks"]] == [
        "snapshot", "wal", "restore", "recovery", "pg_amcheck", "table counts"]
    assert last_segment in checks["wal"]["detail"]
    assert "no corruption" in checks["pg_amcheck"]["detail"]
    # Recovery replayed to the end of the archived WAL: the last commit is the last row's.
    last = datetime.fromisoformat(rows[-1][1].replace(" ", "T")).astimezone(UTC)
    replayed = checks["recovery"]["detail"].split("last replayed commit ")[1]
    assert abs((datetime.fromisoformat(replayed.replace("Z", "+00:00")) - last)
               .total_seconds()) < 0.001
    # RPO: the drill's start minus that commit, as measured from this side of the drill.
    assert (before - last).total_seconds() - 1 <= doc["rpo_s"] <= \
        (datetime.now(UTC) - last).total_seconds()
    assert 0 < doc["rto_s"] < 600
    assert checks["table counts"]["ok"] and "rows read" in checks["table counts"]["detail"]
    assert list(scratch.iterdir()) == [] and _postmasters(scratch) == []

    # A damaged WAL file: the drill fails before any server starts, naming the object.
    wal_object = tenant.repo / "wal" / last_segment
    original = wal_object.read_bytes()
    _flip(wal_object)
    doc = _drill(drsync_bin, tenant, scratch, code=13)
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["wal"]
    assert f"object wal/{last_segment}" in failed[0]["detail"]
    assert list(scratch.iterdir()) == []
    wal_object.write_bytes(original)

    # A damaged pack: the restore fails naming it; nothing is left running or on disk.
    packs = [p for p in (tenant.repo / "data").rglob("*") if p.is_file()]
    for pack in packs:
        _flip(pack)
    doc = _drill(drsync_bin, tenant, scratch, code=13)
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["restore"]
    assert "object data/" in failed[0]["detail"]
    assert list(scratch.iterdir()) == [] and _postmasters(scratch) == []
