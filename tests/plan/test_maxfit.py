"""The trial's question, answered both ways: 12 serial, 72 planned, and the bounds."""

from __future__ import annotations

import pytest

from drsync.plan import Fleet, load_fleet, max_fit

from .checker import check_plan
from .conftest import TRIAL, make_fleet


def test_serial_reproduces_the_trials_arithmetic(trial: Fleet) -> None:
    result = max_fit(trial, "Nobeoka", "serial")
    assert result.per_tenant_s == pytest.approx(888.9, abs=0.05)
    assert result.max_tenants == 12
    assert len(result.plan.slots) == 12
    check_plan(result.plan)


def test_planned_meets_the_compress_then_send_bound(trial: Fleet) -> None:
    result = max_fit(trial, "Nobeoka")
    # All 72 towns compress at once (750 s), then the link sends one after another.
    assert result.per_tenant_s == pytest.approx(138.9, abs=0.05)
    assert result.bound == int((10800 - 750) / (300 / 9 / 0.24)) == 72
    assert result.max_tenants == 72
    assert result.plan.makespan_s == pytest.approx(750 + 72 * 300 / 9 / 0.24)
    check_plan(result.plan)


def test_streaming_tenants_come_within_five_percent_of_the_link_bound() -> None:
    fleet = load_fleet(TRIAL, ["tenant.Nobeoka.overlap=true"])
    result = max_fit(fleet, "Nobeoka")
    ideal = 0.24 * 10800 / (300 / 9)  # link capacity x window / bytes per tenant
    assert result.max_tenants >= 0.95 * ideal
    assert result.max_tenants <= result.bound
    check_plan(result.plan)


@pytest.mark.parametrize(
    ("sets", "mbit"),
    [
        (["defaults.compress_mb_per_s=2", "defaults.setup_s=60"], 1.92),
        (["defaults.compress_mb_per_s=0.05", "tenant.Nobeoka.daily_mb=30"], 1.92),
        (["defaults.compress_mb_per_s=40", "defaults.compression_ratio=4"], 100),
        (["defaults.compress_mb_per_s=40", "receiver.max_streams=3"], 100),
    ],
)
def test_streaming_bound_holds_across_rates(sets: list[str], mbit: float) -> None:
    fleet = load_fleet(TRIAL, ["tenant.Nobeoka.overlap=true", f"link.lgwan.mbit_per_s={mbit}",
                               *sets])
    nobeoka = fleet.tenant("Nobeoka")
    result = max_fit(fleet, "Nobeoka")
    ideal = fleet.link("lgwan").mb_per_s * (10800 - nobeoka.setup_s) / nobeoka.send_mb
    assert result.max_tenants >= 0.95 * ideal, (result.max_tenants, ideal)
    check_plan(result.plan)


def test_planned_always_beats_serial(trial: Fleet) -> None:
    for sets in ([], ["defaults.overlap=true"], ["link.lgwan.mbit_per_s=20"]):
        fleet = load_fleet(TRIAL, sets)
        assert max_fit(fleet, "Nobeoka").max_tenants >= max_fit(
            fleet, "Nobeoka", "serial").max_tenants


def test_stream_cap_limits_the_count() -> None:
    # 10 MB each, 1 MB/s link but 0.25 MB/s per stream and 2 streams: 0.5 MB/s usable.
    fleet = make_fleet([{"name": "T", "daily_mb": 10, "compress_mb_per_s": 100}],
                       stream_mbit=2, streams=2, minutes=10)
    result = max_fit(fleet, "T")
    assert result.bound == int(0.5 * (600 - 0.1) / 10) == 29
    # Two at a time, 40 s a pair from 0.1 s: 14 pairs end at 560.1 s, a 15th at 600.1 s.
    assert result.max_tenants == 28
    check_plan(result.plan)


def test_a_tenant_that_cannot_prepare_in_time_fits_zero_times() -> None:
    fleet = make_fleet([{"name": "T", "daily_mb": 5000}], minutes=10)
    result = max_fit(fleet, "T")
    assert result.max_tenants == 0 and result.bound == 0
    assert max_fit(fleet, "T", "serial").max_tenants == 0
