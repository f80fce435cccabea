"""The secondary side with only the stores, the fleet file and its keys: ``drill TENANT
--fleet`` and ``catalog rebuild --fleet`` on a fleet of two tenants, one opened by its key
file and one only by the operator's escrow key."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from drsync.repo.escrow import EscrowKeyPair
from drsync.testing import make_repository

FLEET = """
[window]
minutes = 60
[[link]]
name = "wan"
mbit_per_s = 20
[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300
[keys]
escrow_key = "operator/escrow.key"

[[tenant]]
name = "Nobeoka"
repo = "repos/nobeoka"
key_file = "keys/nobeoka.key"

[[tenant]]
name = "Hyuga"
repo = "repos/hyuga"
"""


class Site:
    def __init__(self, exe: str, base: Path) -> None:
        self.exe, self.base = exe, base
        self.catalog = base / "catalog.sqlite"
        self.fleet = base / "fleet.toml"

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DRSYNC_CATALOG": str(self.catalog)}
        done = subprocess.run([self.exe, *args], capture_output=True, text=True, env=env,
                              timeout=120, cwd=self.base)
        assert done.returncode == code, done.stderr + done.stdout
        return done

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self.run(*args, "--json", code=code).stdout)

    def tenant_args(self, name: str) -> list[str]:
        return ["--repo", str(self.base / "repos" / name), "--key-file",
                str(self.base / "keys" / f"{name}.key")]


def _site(exe: str, base: Path) -> Site:
    site = Site(exe, base)
    (base / "keys").mkdir()
    pair = EscrowKeyPair.generate()
    (base / "operator").mkdir()
    pair.write(base / "operator")
    for name in ("nobeoka", "hyuga"):
        repo = make_repository(str(base / "repos" / name),
                               key_file_path=base / "keys" / f"{name}.key")
        repo.add_escrow(pair.public)
    files = base / "src" / "nobeoka"
    files.mkdir(parents=True)
    (files / "registry.csv").write_bytes(os.urandom(200_000))
    site.run(*site.tenant_args("nobeoka"), "backup", str(files))
    db = base / "src" / "hyuga.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE resident (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO resident (name) VALUES (?)",
                         [(f"resident {i}",) for i in range(700)])
    conn.close()
    site.run(*site.tenant_args("hyuga"), "backup", "--sqlite", str(db))
    site.fleet.write_text(FLEET)
    # Hyuga's own key is lost with its town hall: only the escrow key opens it now.
    (base / "keys" / "hyuga.key").unlink()
    return site


def test_fleet_drill_and_catalog_rebuild_from_the_stores_alone(drsync_bin: str,
                                                               tmp_path: Path) -> None:
    site = _site(drsync_bin, tmp_path)
    nobeoka = site.json("drill", "Nobeoka", "--fleet", str(site.fleet))
    assert nobeoka["status"] == "ok" and nobeoka["tenant"] == "Nobeoka"
    assert {c["name"] for c in nobeoka["checks"]} == {"snapshot", "restore", "files"}
    hyuga = site.json("drill", "Hyuga", "--fleet", str(site.fleet))  # by the escrow key
    assert hyuga["status"] == "ok" and hyuga["tenant"] == "Hyuga"
    counts = next(c for c in hyuga["checks"] if c["name"] == "table counts")
    assert counts["ok"] and "700 rows as recorded" in counts["detail"]

    # Both drills are in the catalog, with the tenant's name, and in each store.
    runs_before = site.json("runs", "--all-repos")
    drills = {r["tenant"]: r for r in runs_before if r["kind"] == "drill"}
    assert {n: (r["id"], r["status"]) for n, r in drills.items()} == {
        "Nobeoka": (nobeoka["drill_id"], "ok"), "Hyuga": (hyuga["drill_id"], "ok")}
    assert sorted(r["kind"] for r in runs_before) == ["backup", "backup", "drill", "drill"]
    snaps_before = site.json(*site.tenant_args("nobeoka"), "snapshots")
    # Restores (one alone, one by dr restore) and checks are runs too, in each store.
    site.run(*site.tenant_args("nobeoka"), "restore", "latest", "--target",
             str(tmp_path / "restored"))
    site.run(*site.tenant_args("nobeoka"), "check", "--read-data")
    (tmp_path / "targets.toml").write_text('[[target]]\ntenant = "Hyuga"\n'
                                           'directory = "dr/hyuga"\n')
    site.run("dr", "restore", str(site.fleet), "--to", str(tmp_path / "targets.toml"),
             code=1)  # Nobeoka has no target: failed, and Hyuga restored
    runs_before = site.json("runs", "--all-repos")
    host = runs_before[0]["host"]  # runs of the tenants' own commands: the host's name
    assert sorted((r["tenant"], r["kind"], r["status"]) for r in runs_before) == sorted([
        ("Hyuga", "drill", "ok"), ("Hyuga", "restore", "ok"), ("Nobeoka", "drill", "ok"),
        (host, "backup", "ok"), (host, "backup", "ok"), (host, "check", "ok"),
        (host, "restore", "ok")])

    # Unknown tenant, and TENANT without --fleet: one line, exit 2.
    bad = site.run("drill", "Kadogawa", "--fleet", str(site.fleet), code=2)
    assert "no tenant 'Kadogawa' (tenants: Nobeoka, Hyuga)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    site.run("drill", "Nobeoka", code=2)

    site.catalog.unlink()  # the primary and its catalog are gone
    assert site.json("runs", "--all-repos") == []
    rebuilt = site.json("catalog", "rebuild", "--fleet", str(site.fleet))
    assert [(t["tenant"], t["status"], t["runs"], t["drills"], t["wal_ranges"])
            for t in rebuilt["tenants"]] == [("Nobeoka", "ok", 3, 1, 0),
                                             ("Hyuga", "ok", 2, 1, 0)]

    def by_id(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(runs, key=lambda r: r["id"])

    assert by_id(site.json("runs", "--all-repos")) == by_id(runs_before)
    assert site.json(*site.tenant_args("nobeoka"), "snapshots") == snaps_before
    # Again: nothing is duplicated.
    site.run("catalog", "rebuild", "--fleet", str(site.fleet))
    assert len(site.json("runs", "--all-repos")) == 7


def test_catalog_rebuild_goes_on_past_a_tenant_it_cannot_open(drsync_bin: str,
                                                              tmp_path: Path) -> None:
    site = _site(drsync_bin, tmp_path)
    (tmp_path / "operator" / "escrow.key").unlink()  # now nothing opens Hyuga
    done = site.run("catalog", "rebuild", "--fleet", str(site.fleet), "--json", code=4)
    rows = {t["tenant"]: t for t in json.loads(done.stdout)["tenants"]}
    assert rows["Nobeoka"]["status"] == "ok" and rows["Nobeoka"]["runs"] == 1
    assert rows["Hyuga"]["status"] == "failed" and "escrow" in rows["Hyuga"]["error"]
