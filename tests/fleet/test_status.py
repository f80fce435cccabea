"""Fleet status, pure: rows from (fleet tenants, runs, schedule slots, now), golden.

Regenerate the golden file after an intended change with
    DRSYNC_REGEN_GOLDEN=1 .venv/bin/pytest -q tests/fleet/test_status.py
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drsync.fleet.html import render_html
from drsync.fleet.status import (
    FleetTenant,
    PlannedSlot,
    Run,
    fleet_status,
    slots_from_schedule,
)

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 11, 28, 7, 30, tzinfo=UTC)
REGEN = bool(os.environ.get("DRSYNC_REGEN_GOLDEN"))  # read before the fixtures clear DRSYNC_*


def _at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def _run(tenant: str, n: int, status: str, hours_ago: float, *, minutes: float = 20,
         error: str | None = None) -> Run:
    return Run(f"{tenant}-{n}", tenant, status, _at(hours_ago),
               None if status == "running" else _at(hours_ago) + timedelta(minutes=minutes),
               f"snap{tenant}{n}" if status in ("ok", "partial") else None,
               bytes_read=1_000_000 * n, bytes_sent=100_000 * n, error=error)


TENANTS = [
    FleetTenant("Nobeoka", 1), FleetTenant("Miyazaki", 1), FleetTenant("Hyuga", 2),
    FleetTenant("Shiiba", 3), FleetTenant("Kushima", 2, rpo_hours=72),
    FleetTenant("Miyakonojo", 1), FleetTenant("Saito", 2), FleetTenant("Aya", 3),
]
RUNS = [
    _run("Nobeoka", 1, "ok", 30), _run("Nobeoka", 2, "ok", 6),
    _run("Miyazaki", 1, "ok", 10), _run("Miyazaki", 2, "failed", 6, minutes=1,
                                         error="store unreachable: s3.dc2 timed out"),
    _run("Hyuga", 1, "ok", 30), _run("Hyuga", 2, "missed", 6),
    _run("Kushima", 1, "ok", 30),
    _run("Miyakonojo", 1, "failed", 30), _run("Miyakonojo", 2, "overrun", 6, minutes=60,
                                               error="deadline 01:00 reached"),
    _run("Saito", 1, "ok", 20), _run("Saito", 2, "running", 0.2),
    _run("Aya", 1, "ok", 8), _run("Aya", 2, "partial", 6, error="/srv/x: Permission denied"),
    _run("Takachiho", 1, "ok", 6),  # not in the fleet file
]
SLOTS = {name: PlannedSlot(f"23:{10 * i:02d}:00", "02:00:00")
         for i, name in enumerate(["Nobeoka", "Miyazaki", "Hyuga", "Shiiba", "Kushima", "Saito"])}


def test_rows_golden() -> None:
    status = fleet_status(TENANTS, reversed(RUNS), NOW, SLOTS)
    text = json.dumps(status.to_json(), indent=2) + "\n"
    path = GOLDEN / "fleet_status.json"
    if REGEN:
        path.write_text(text)
    assert text == path.read_text()


def test_health_and_order() -> None:
    status = fleet_status(TENANTS, RUNS, NOW, SLOTS)
    assert [(r.tenant, r.health) for r in status.rows] == [
        ("Shiiba", "no-report"),
        ("Miyakonojo", "rpo-exceeded"),  # never a good run
        ("Hyuga", "rpo-exceeded"),  # 30 h > 24 h
        ("Miyazaki", "degraded"),  # good 10 h ago, last run failed
        ("Aya", "degraded"),  # partial
        ("Nobeoka", "ok"),
        ("Kushima", "ok"),  # 30 h, but its target is 72 h
        ("Saito", "ok"),  # running now, good 20 h ago
    ]
    by_name = {r.tenant: r for r in status.rows}
    nobeoka = by_name["Nobeoka"]
    assert nobeoka.last_good_snapshot == "snapNobeoka2" and nobeoka.rpo_now_hours == 6
    assert by_name["Miyazaki"].last_good_snapshot == "snapMiyazaki1"
    assert by_name["Miyazaki"].problems == ("last run failed: store unreachable: s3.dc2 timed out",)
    assert by_name["Hyuga"].problems == ("newest good point is 30.0 h old (target 24 h)",
                                         "last run missed")
    assert "not in tonight's schedule" in by_name["Miyakonojo"].problems
    assert by_name["Shiiba"].planned == PlannedSlot("23:30:00", "02:00:00")
    assert status.unknown_tenants == ("Takachiho",)
    assert not status.healthy
    assert status.counts() == {"no-report": 1, "rpo-exceeded": 2, "degraded": 2, "ok": 3}
    # Without a schedule there is no planned slot and no schedule problem.
    plain = fleet_status(TENANTS, RUNS, NOW)
    assert all(r.planned is None for r in plain.rows)
    assert all("schedule" not in p for r in plain.rows for p in r.problems)


def test_all_good_is_healthy() -> None:
    status = fleet_status([FleetTenant("Nobeoka")], [_run("Nobeoka", 1, "ok", 23.9)], NOW)
    assert status.healthy and status.rows[0].health == "ok"
    late = fleet_status([FleetTenant("Nobeoka")], [_run("Nobeoka", 1, "ok", 24.1)], NOW)
    assert not late.healthy and late.rows[0].health == "rpo-exceeded"


def _job(n: int, source: str, status: str, start: datetime, minutes: float,
         slot: datetime, kind: str = "backup", error: str | None = None) -> Run:
    return Run(f"Nobeoka-{n}", "Nobeoka", status, start, start + timedelta(minutes=minutes),
               f"snap{n}" if status == "ok" else None, bytes_read=1_000_000 * n,
               bytes_sent=100_000 * n, error=error, kind=kind, source=source,
               planned_start=slot)


def _agent_night(slot: datetime, first: int, files_status: str) -> list[Run]:
    """An agent's slot: its night choice, a files job, then a sqlite job that went well."""
    return [
        _job(first, "ships wal: no base", "ok", slot, 0, slot, kind="night"),
        _job(first + 1, "files:/srv/missing", files_status, slot, 1, slot,
             error=None if files_status == "ok" else "/srv/missing: No such file or directory"),
        _job(first + 2, "sqlite:/var/lib/app/m.db", "ok", slot + timedelta(minutes=2), 10,
             slot),
    ]


def test_a_night_with_a_failed_job_is_not_ok_however_its_last_job_went() -> None:
    tenant = [FleetTenant("Nobeoka")]
    slot = _at(7)
    status = fleet_status(tenant, _agent_night(slot - timedelta(days=1), 0, "ok")
                          + _agent_night(slot, 3, "failed"), NOW)
    row = status.rows[0]
    assert not status.healthy and row.health == "degraded"
    assert row.last_status == "failed"
    assert row.problems == ("last night files:/srv/missing failed: "
                            "/srv/missing: No such file or directory",)
    assert row.last_error == "files:/srv/missing: /srv/missing: No such file or directory"
    # The night's actual times: from its first job's start to its last job's end.
    assert (row.last_started, row.last_finished) == (slot, slot + timedelta(minutes=12))
    assert (row.bytes_read, row.bytes_sent) == (9_000_000, 900_000)
    # The newest good point is the sqlite job's, dated by the start of its night.
    assert row.last_good_snapshot == "snap5" and row.last_good_time == slot
    assert row.to_json()["last_run"]["status"] == "failed"


def test_a_night_whose_jobs_all_went_well_is_ok() -> None:
    slot = _at(7)
    status = fleet_status([FleetTenant("Nobeoka")], _agent_night(slot, 0, "ok"), NOW)
    row = status.rows[0]
    assert status.healthy and row.health == "ok" and row.problems == ()
    assert (row.last_status, row.last_error) == ("ok", None)
    assert (row.last_started, row.last_finished) == (slot, slot + timedelta(minutes=12))
    assert row.last_good_time == slot and row.rpo_now_hours == 7


def test_runs_without_a_slot_are_each_a_night_of_their_own() -> None:
    # no agent (drsync backup from cron): the newest run is the night, as before
    runs = [_run("Nobeoka", 1, "failed", 8, error="disk full"), _run("Nobeoka", 2, "ok", 6)]
    assert fleet_status([FleetTenant("Nobeoka")], runs, NOW).rows[0].health == "ok"
    runs = [_run("Nobeoka", 1, "ok", 8), _run("Nobeoka", 2, "failed", 6, error="disk full")]
    row = fleet_status([FleetTenant("Nobeoka")], runs, NOW).rows[0]
    assert row.health == "degraded" and row.problems == ("last run failed: disk full",)
    assert row.last_error == "disk full" and row.last_started == _at(6)


def test_slots_from_a_schedule_document() -> None:
    doc = {"format": "drsync-schedule", "version": 1,
           "window": {"start": "23:00", "minutes": 180, "seconds": 10800.0},
           "tenants": {"Nobeoka": {"start": "23:05:00", "start_s": 300.0, "end_s": 900.0,
                                   "deadline_s": 9900.0}}}
    assert slots_from_schedule(doc) == {"Nobeoka": PlannedSlot("23:05:00", "01:45:00")}


def test_html_is_self_contained_sorted_and_escaped() -> None:
    hostile = FleetTenant('<img src=x onerror="alert(1)">', 1)
    status = fleet_status([*TENANTS, hostile], RUNS, NOW, SLOTS)
    page = render_html(status)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<img" not in page and "&lt;img" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no external asset
    assert "<style>" in page and "<link" not in page
    order = re.findall(r'<tr class="([a-z-]+)" data-tenant="([^"]+)"', page)
    assert [name for _h, name in order][:2] == ["&lt;img src=x onerror=&quot;alert(1)&quot;&gt;",
                                                "Shiiba"]
    assert [h for h, _n in order] == [r.health for r in status.rows]
    assert "2026-11-28 07:30 UTC" in page  # generated time
    assert "store unreachable: s3.dc2 timed out" in page
