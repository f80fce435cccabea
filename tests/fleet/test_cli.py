"""`drsync fleet status` end to end: catalog + fleet file + schedule -> table, JSON, page."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fleet.conftest import FleetSetup, record


def test_status_json_and_html_from_the_catalog(fleet_setup: FleetSetup) -> None:
    page = fleet_setup.base / "www" / "fleet.html"
    page.parent.mkdir()
    done = fleet_setup.run("fleet", "status", str(fleet_setup.fleet), "--schedule",
                           str(fleet_setup.schedule), "--json", "--html", str(page))
    assert done.returncode == 1, done.stderr  # problems in the fleet
    doc = json.loads(done.stdout)
    assert [(t["tenant"], t["health"]) for t in doc["tenants"]] == [
        ("Shiiba", "no-report"), ("Kushima", "rpo-exceeded"), ("Hyuga", "degraded"),
        ("Nobeoka", "ok")]
    rows = {t["tenant"]: t for t in doc["tenants"]}
    schedule = json.loads(fleet_setup.schedule.read_text())
    assert rows["Nobeoka"]["planned"]["start"] == schedule["tenants"]["Nobeoka"]["start"]
    assert rows["Nobeoka"]["last_good"]["snapshot_id"] == "1" * 64
    assert 4.9 < rows["Nobeoka"]["rpo_now_hours"] < 5.1
    assert rows["Hyuga"]["rpo_hours"] == 48
    assert rows["Hyuga"]["last_run"]["error"] == "store unreachable: connect timed out"
    assert rows["Kushima"]["last_run"]["status"] == "overrun"
    assert rows["Nobeoka"]["last_run"]["bytes_sent"] == 3_000_000
    text = page.read_text()
    assert text.index('data-tenant="Shiiba"') < text.index('data-tenant="Nobeoka"')
    assert [p.name for p in page.parent.iterdir()] == ["fleet.html"]  # no temporary left


def test_table_for_people_and_exit_0_when_all_are_protected(fleet_setup: FleetSetup,
                                                            tmp_path: Path) -> None:
    done = fleet_setup.run("fleet", "status", str(fleet_setup.fleet))
    assert done.returncode == 1
    for name in ("Nobeoka", "Hyuga", "Shiiba", "Kushima", "no-report", "rpo-exceeded"):
        assert name in done.stdout
    from drsync.catalog.db import Catalog

    good = tmp_path / "good.toml"
    good.write_text(fleet_setup.fleet.read_text().split('[[tenant]]\nname = "Hyuga"')[0])
    catalog = Catalog(str(fleet_setup.catalog))
    catalog.import_runs("/srv/dr/fleet", [record("Nobeoka", 9, "ok", 1)])
    catalog.close()
    done = fleet_setup.run("fleet", "status", str(good), "--json")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["healthy"] is True


def test_bad_fleet_file_is_one_line_and_writes_no_page(fleet_setup: FleetSetup) -> None:
    bad = fleet_setup.base / "bad.toml"
    bad.write_text(fleet_setup.fleet.read_text().replace("rpo_hours = 48", "rpo_hours = -1"))
    page = fleet_setup.base / "page.html"
    done = fleet_setup.run("fleet", "status", str(bad), "--html", str(page))
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "tenant.Hyuga.rpo_hours" in lines[0] and str(bad) in lines[0]
    assert not page.exists()


def test_a_tenant_is_judged_by_its_whole_night(fleet_setup: FleetSetup) -> None:
    """An agent's slot of a files job on a missing directory, then a good sqlite job."""
    from datetime import UTC, datetime, timedelta

    from drsync.catalog.db import Catalog

    slot = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    files = {**record("Shiiba", 1, "failed", 3, error="/srv/missing: No such file"),
             "source": "files:/srv/missing", "planned_start": slot.isoformat()}
    sqlite = {**record("Shiiba", 2, "ok", 2.9), "planned_start": slot.isoformat()}
    catalog = Catalog(str(fleet_setup.catalog))
    catalog.import_runs("/srv/dr/shiiba", [files, sqlite])
    catalog.close()
    done = fleet_setup.run("fleet", "status", str(fleet_setup.fleet), "--json")
    rows = {t["tenant"]: t for t in json.loads(done.stdout)["tenants"]}
    assert rows["Shiiba"]["health"] == "degraded", rows["Shiiba"]
    assert rows["Shiiba"]["last_run"]["status"] == "failed"
    assert "files:/srv/missing failed" in rows["Shiiba"]["problems"][0]
