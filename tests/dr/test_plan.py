"""The pure dr plan: restore order, bytes, predicted times, RTO met; the fleet file's new keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drsync.dr.plan import DEFAULT_RESTORE_MBIT_PER_S, Point, Probe, Rate, dr_plan, measured_rate
from drsync.errors import ConfigError
from drsync.plan.fleetfile import load_fleet

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MB = 1_000_000


def point(mb: float, hours_ago: float, kind: str = "files") -> Point:
    return Point("ab" * 32, kind, NOW - timedelta(hours=hours_ago), int(mb * MB), "snapshot")


def test_order_bytes_times_and_rto() -> None:
    probes = [
        Probe("Kushima", 3, 24, point(100, 2)),
        Probe("Hyuga", 1, 8, point(7200, 5)),  # 7.2 GB at 10 MB/s: 720 s
        Probe("Nobeoka", 1, 4, point(3600, 1)),  # same priority, tighter RTO: first
        Probe("Shiiba", 2, 0.25, point(1000, 1)),  # done after 460 s... no: see below
        Probe("Saiki", 1, 1, reason="no repository configured"),
        Probe("Misato", 5, 1, reason="wrong key file (k) for repository r"),
    ]
    plan = dr_plan(probes, Rate(10 * MB, "test"), NOW)
    rows = {r.name: r for r in plan.rows}
    # The unrestorable first (by priority), then priority, then rto_hours.
    assert [r.name for r in plan.rows] == ["Saiki", "Misato", "Nobeoka", "Hyuga", "Shiiba",
                                           "Kushima"]
    assert [(r.predicted_s, r.finish_s) for r in plan.rows] == [
        (None, None), (None, None), (360.0, 360.0), (720.0, 1080.0), (100.0, 1180.0),
        (10.0, 1190.0)]
    assert rows["Saiki"].reason == "no repository configured"
    assert not rows["Saiki"].rto_met and not rows["Misato"].rto_met
    assert rows["Nobeoka"].rto_met and rows["Hyuga"].rto_met and rows["Kushima"].rto_met
    assert not rows["Shiiba"].rto_met  # 1180 s > 0.25 h = 900 s
    assert rows["Hyuga"].rpo_s == 5 * 3600
    assert plan.total_bytes == int((100 + 7200 + 3600 + 1000) * MB)
    doc = plan.to_json()
    assert doc["all_rto_met"] is False
    assert doc["rate"] == {"mbit_per_s": 80.0, "basis": "test"}
    assert doc["tenants"][2] == {
        "name": "Nobeoka", "priority": 1, "rto_hours": 4, "repo": None, "restorable": True,
        "reason": None, "snapshot_id": "ab" * 32, "source_kind": "files",
        "point_time": "2026-12-01T08:00:00+00:00", "basis": "snapshot", "wal_until": None,
        "bytes": 3600 * MB, "not_restored": [], "predicted_s": 360.0, "finish_s": 360.0,
        "rpo_s": 3600.0, "rto_met": True}


def test_rate_measured_then_configured_then_default() -> None:
    measured = measured_rate([(100 * MB, 10.0), (0, 5.0), (300 * MB, 30.0)], 50)
    assert measured.bytes_per_s == 10 * MB and measured.basis.startswith("measured (2 ")
    configured = measured_rate([], 40)
    assert configured.mbit_per_s == pytest.approx(40) and "restore_mbit_per_s" in configured.basis
    assert measured_rate([], None).mbit_per_s == pytest.approx(DEFAULT_RESTORE_MBIT_PER_S)


FLEET = """
[window]
start = "23:00"
minutes = 180
[[link]]
name = "wan"
mbit_per_s = 20
[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300
rto_hours = 12
{extra}
[[tenant]]
name = "Nobeoka"
priority = 1
repo = "repos/nobeoka"
key_file = "keys/nobeoka.key"
{tenant}
[[tenant]]
name = "Hyuga"
repo = "s3://dr/hyuga"
"""


def write(tmp_path: Path, extra: str = "", tenant: str = "") -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET.format(extra=extra, tenant=tenant))
    return path


def test_fleet_file_repo_keys_rto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, extra='[keys]\nescrow_key = "op/escrow.key"\n'
                 '[dr]\nrestore_mbit_per_s = 200\n', tenant="rto_hours = 4")
    monkeypatch.chdir("/")
    fleet = load_fleet(path)
    nobeoka, hyuga = fleet.tenants
    assert nobeoka.repo == str(tmp_path / "repos/nobeoka")  # relative to the fleet file
    assert nobeoka.key_file == str(tmp_path / "keys/nobeoka.key")
    assert nobeoka.rto_hours == 4 and hyuga.rto_hours == 12  # from [defaults]
    assert hyuga.repo == "s3://dr/hyuga" and hyuga.key_file is None
    assert fleet.escrow_key == str(tmp_path / "op/escrow.key")
    assert fleet.restore_mbit_per_s == 200


@pytest.mark.parametrize(("extra", "tenant", "message"), [
    ("", "rto_hours = -1", "tenant.Nobeoka.rto_hours: must be > 0"),
    ("[keys]\nescrow_key = 3\n", "", "keys.escrow_key: must be a non-empty string"),
    ("[keys]\nescrow = 'x'\n", "", "keys.escrow: unknown key"),
    ("[dr]\nrestore_mbit_per_s = 0\n", "", "dr.restore_mbit_per_s: must be > 0"),
    ("", "", None),
])
def test_fleet_file_bad_keys(tmp_path: Path, extra: str, tenant: str,
                             message: str | None) -> None:
    path = write(tmp_path, extra=extra, tenant=tenant)
    if message is None:
        load_fleet(path)
        return
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_fleet_file_bad_repo(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace('repo = "s3://dr/hyuga"', "repo = ''"))
    with pytest.raises(ConfigError, match=r"tenant\.Hyuga\.repo: must be a non-empty string"):
        load_fleet(path)
