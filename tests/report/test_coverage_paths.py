"""The report over real backups named by a relative path, and over a tenant whose
repository holds no snapshot: collected from a real catalog and real stores, then judged."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.catalog.db import Catalog
from drsync.plan.fleetfile import load_fleet
from drsync.repo import Repository, Secret
from drsync.repo.escrow import EscrowKeyPair
from drsync.repo.keys import KeyFile
from drsync.repo.runs import load_runs
from drsync.report.collect import collect
from drsync.report.controls import Result, assess
from drsync.report.evidence import Evidence, Period
from drsync.report.settings import load_report_settings
from drsync.settings import Settings
from drsync.store import open_store
from drsync.testing import make_repository

FLEET = """
[window]
start = "23:00"
minutes = 180

[[link]]
name = "lgwan"
mbit_per_s = 20

[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300
rpo_hours = 26
rto_hours = 4

[report]
primary_zone = "miyazaki-coast"
secondary_zone = "saga-inland"

[[tenant]]
name = "Saiki"
repo = "repos/saiki"
key_file = "keys/saiki.key"
datasets = [{{name = "住民記録", business = "住民基本台帳事務", tier = 1, source = "{dataset}"}}]

[[tenant]]
name = "Empty"
repo = "repos/empty"
key_file = "keys/empty.key"
"""


def _database(path: Path) -> None:
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE juki (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO juki (name) VALUES (?)", [(f"住民{i}",) for i in range(50)])
    db.commit()
    db.close()


def _judge(base: Path, dataset: str) -> dict[tuple[str, str], Result]:
    (base / "fleet.toml").write_text(FLEET.format(dataset=dataset))
    fleet = load_fleet(base / "fleet.toml")
    report = load_report_settings(fleet)
    now = dt.datetime.now(dt.UTC)
    period = Period(now.date() - dt.timedelta(days=1), now.date())
    catalog = Catalog(str(base / "catalog.sqlite"))
    try:
        evidence: Evidence = collect(fleet, report, catalog, Settings(), period, now)
    finally:
        catalog.close()
    return {(a.tenant, r.control): r for a in assess(evidence, report) for r in a.results}


@pytest.fixture
def fleet_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Saiki backed up ``src/saiki.db`` from /…/walkC (the run names it relative to
    there); Empty's repository holds no snapshot, one check ran on it."""
    base = tmp_path / "fleet"
    (base / "keys").mkdir(parents=True)
    escrow = EscrowKeyPair.generate()
    repos = {}
    for name in ("saiki", "empty"):
        repos[name] = make_repository(str(base / "repos" / name),
                                      key_file_path=base / "keys" / f"{name}.key")
        repos[name].add_escrow(escrow.public)
    walk = tmp_path / "walkC"
    _database(walk / "src" / "saiki.db")
    catalog = Catalog(str(base / "catalog.sqlite"))
    monkeypatch.chdir(walk)
    run_backup(repos["saiki"], BackupRequest(sqlite="src/saiki.db", tenant="Saiki"),
               catalog=catalog)
    monkeypatch.chdir(tmp_path)  # the report runs elsewhere
    run_id = catalog.start_run(repos["empty"].url, "check", "check", "empty-db",
                               tenant="Empty")
    catalog.finish_run(run_id, "ok")
    catalog.close()
    return base


def test_a_backup_by_relative_path_covers_the_absolute_dataset(fleet_dir: Path) -> None:
    db = fleet_dir.parent / "walkC" / "src" / "saiki.db"
    r = _judge(fleet_dir, f"sqlite:{db}")[("Saiki", "COVERAGE")]
    assert r.status == "PASS", r.summary
    # A path never backed up still fails, even one ending like the one that was.
    for other in (f"sqlite:{fleet_dir.parent}/walkD/src/saiki.db", f"sqlite:{db}.old",
                  f"{db.parent}"):
        r = _judge(fleet_dir, other)[("Saiki", "COVERAGE")]
        assert r.status == "FAIL" and f"no successful backup of {other}" in r.summary


def test_an_older_run_named_relative_is_matched_by_its_snapshot_path(fleet_dir: Path) -> None:
    """A run recorded before drsync named paths absolute (its store record, as that drsync
    wrote it, rebuilt into the catalog): its snapshot's recorded path covers it."""
    repo = Repository.open(open_store(str(fleet_dir / "repos" / "saiki")), Secret(
        key_file=KeyFile.load(fleet_dir / "keys" / "saiki.key")))
    (record,) = load_runs(repo)
    assert record["source"] == f"sqlite:{fleet_dir.parent}/walkC/src/saiki.db"
    catalog = Catalog(str(fleet_dir / "catalog.sqlite"))
    catalog.import_runs(repo.url, [{**record, "source": "sqlite:src/saiki.db"}])
    assert [r.source for r in catalog.runs() if r.kind == "backup"] == ["sqlite:src/saiki.db"]
    catalog.close()
    db = fleet_dir.parent / "walkC" / "src" / "saiki.db"
    assert _judge(fleet_dir, f"sqlite:{db}")[("Saiki", "COVERAGE")].status == "PASS"
    other = f"sqlite:{fleet_dir.parent}/walkD/src/saiki.db"
    assert _judge(fleet_dir, other)[("Saiki", "COVERAGE")].status == "FAIL"


def test_a_tenant_without_a_snapshot_passes_nothing_on_no_evidence(fleet_dir: Path) -> None:
    results = _judge(fleet_dir, "saiki.db")
    empty = {control: r for (tenant, control), r in results.items() if tenant == "Empty"}
    assert "PASS" not in {r.status for r in empty.values()}, \
        {c: (r.status, r.summary) for c, r in empty.items()}
    assert empty["ENCRYPTION"].status == "NOT_EVALUATED"
    assert "no recovery point to see encrypted: repo holds none" in empty["ENCRYPTION"].summary
    assert empty["ZERO-ERRORS"].status == "NOT_EVALUATED"
    assert "no recovery point to verify" in empty["ZERO-ERRORS"].summary
    # The tenant with a snapshot still passes both.
    assert results[("Saiki", "ENCRYPTION")].status == "PASS"
