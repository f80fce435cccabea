"""A PITR tenant drilled through the fleet file, then its catalog lost and rebuilt from its
store: runs (the drill's too), snapshots and pitr-range the same before and after, and the
WAL ranges in the catalog."""

from __future__ import annotations

from typing import Any

import pytest

from drsync.testing_postgres import chown_to_cluster_user
from tests.pg.pitr import stamped_inserts

pytestmark = pytest.mark.slow


def _steady(doc: dict[str, Any]) -> dict[str, Any]:
    """pitr-range without what moves with the clock (ages, the RPO now)."""
    doc = {k: v for k, v in doc.items() if k != "rpo_s"}
    for key in ("newest_wal_in_store", "newest_wal_in_spool"):
        if doc.get(key):
            doc[key] = {k: v for k, v in doc[key].items() if k != "age_s"}
    return doc


def test_rebuilt_catalog_of_a_pitr_tenant_equals_the_lost_one(tenant_factory: Any) -> None:
    tenant = tenant_factory()
    tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
    tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    stamped_inserts(tenant, 5)
    tenant.switch_and_ship()
    tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    stamped_inserts(tenant, 3)
    tenant.switch_and_ship()
    fleet = tenant.base / "fleet.toml"
    fleet.write_text(f"""
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
    chown_to_cluster_user(fleet)
    # A fleet drill by the cluster's own user (not root: the scratch cluster is its own).
    drill = tenant.drsync_json("drill", "Hyuga", "--fleet", str(fleet))
    assert drill["status"] == "ok", drill
    assert drill["tenant"] == "Hyuga" and drill["rpo_s"] >= 0
    runs = tenant.drsync_json("runs")
    assert [r["id"] for r in runs if r["kind"] == "drill"] == [drill["drill_id"]]
    snaps = tenant.drsync_json("snapshots")
    pitr = tenant.drsync_json("pitr-range")
    assert len(pitr["base_backups"]) == 2 and pitr["latest"] is not None

    (tenant.base / "catalog.sqlite").unlink()
    assert tenant.drsync_json("runs") == []
    rebuilt = tenant.drsync_json("catalog", "rebuild", "--fleet", str(fleet))
    assert [(t["tenant"], t["status"], t["wal_ranges"]) for t in rebuilt["tenants"]] == [
        ("Hyuga", "ok", 2)]

    assert sorted(tenant.drsync_json("runs"), key=lambda r: r["id"]) == \
        sorted(runs, key=lambda r: r["id"])
    assert tenant.drsync_json("snapshots") == snaps
    assert _steady(tenant.drsync_json("pitr-range")) == _steady(pitr)
    from drsync.catalog.db import Catalog

    catalog = Catalog(str(tenant.base / "catalog.sqlite"))
    try:
        ranges = catalog.wal_ranges()
    finally:
        catalog.close()
    assert [{k: v for k, v in r.items() if k not in ("repo", "tenant")} for r in ranges] == \
        pitr["base_backups"]
    assert {r["tenant"] for r in ranges} == {"Hyuga"}
