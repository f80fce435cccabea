"""``drsync dr restore`` of a base backup + WAL tenant into a pgdata target, started on a port,
run as the cluster's user (as on the secondary site)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from drsync.testing_postgres import Cluster, as_cluster_user, chown_to_cluster_user, free_port
from tests.pg.pitr import restored_ids, stamped_inserts

pytestmark = pytest.mark.slow


def test_pitr_tenant_restored_to_the_last_commit(tenant_factory: Any) -> None:
    tenant = tenant_factory()
    tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
    tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    rows = stamped_inserts(tenant, 10)
    tenant.switch_and_ship()
    base: Path = tenant.base
    port = free_port()
    (base / "fleet.toml").write_text(f"""
[window]
minutes = 60
[[link]]
name = "wan"
mbit_per_s = 20
[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300
[[tenant]]
name = "Hyuga"
repo = "{tenant.repo}"
key_file = "{tenant.key}"
""")
    (base / "targets.toml").write_text(f"""
[[target]]
tenant = "Hyuga"
pgdata = "restored/data"
port = {port}
""")
    chown_to_cluster_user(base)
    env = {**tenant.env}
    env.pop("DRSYNC_CONFIG")
    env["DRSYNC_CATALOG"] = str(base / "dr-catalog.sqlite")
    cmd = as_cluster_user(["env", *(f"{k}={v}" for k, v in env.items()), tenant.exe, "dr",
                           "restore", str(base / "fleet.toml"), "--to",
                           str(base / "targets.toml"), "--json", "--drsync-command",
                           tenant.exe])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=base)
    restored = Cluster(base / "restored", tenant.bindir, port)
    try:
        assert done.returncode == 0, done.stderr + done.stdout
        (row,) = json.loads(done.stdout)["tenants"]
        assert row["status"] == "ok" and row["bytes"] > 0
        # Every committed row is back: recovery ran to the end of the archived WAL.
        # (the restored configuration keeps the source's socket directory, on its own port)
        assert restored_ids(Cluster(base, tenant.bindir, port)) == [rid for rid, _ in rows]
        # The restored point is the last commit the WAL holds, not the base backup.
        last = datetime.fromisoformat(rows[-1][1].replace(" ", "T"))
        point = datetime.fromisoformat(row["point_time"].replace("Z", "+00:00"))
        assert abs((point - last).total_seconds()) < 1
        assert row["rpo_s"] >= 0
    finally:
        restored.stop("immediate")
