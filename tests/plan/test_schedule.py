"""The night's schedule: feasible, priority first, the link kept busy, reasons given."""

from __future__ import annotations

import pytest

from drsync.plan import Fleet, load_fleet, plan_fleet

from .checker import check_plan
from .conftest import KYUSHU, TRIAL, make_fleet


def test_trial_town_alone(trial: Fleet) -> None:
    plan = plan_fleet(trial)
    slot = plan.slot("Nobeoka")
    assert (slot.start_s, slot.ready_s) == (0, 750)
    assert slot.end_s == pytest.approx(888.889, abs=1e-3)
    assert [(s.from_s, s.mbit_per_s) for s in slot.sends] == [(750, pytest.approx(1.92))]
    assert slot.slack_s == pytest.approx(10800 - 888.889, abs=1e-3)
    assert plan.fits == 1 and plan.all_fit
    check_plan(plan)


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["link.miyazaki.mbit_per_s=2", "link.kagoshima.mbit_per_s=1"],
        ["receiver.max_streams=2"],
        ["defaults.overlap=false", "link.miyazaki.mbit_per_s=3"],
        ["defaults.full_kb_per_resident=50", "defaults.daily_kb_per_resident=200"],
        ["defaults.daily_kb_per_resident=600", "receiver.max_streams=3"],
    ],
)
def test_example_fleet_schedules_are_feasible(sets: list[str]) -> None:
    plan = plan_fleet(load_fleet(KYUSHU, sets))
    check_plan(plan)


def test_kyushu_fits_tonight(kyushu: Fleet) -> None:
    plan = plan_fleet(kyushu)
    assert plan.all_fit and plan.fits == len(kyushu.tenants) == 36
    assert plan.makespan_s <= plan.window_s


def test_higher_priority_is_never_displaced() -> None:
    # Room for one: the important one fits even though it is bigger and listed last.
    fleet = make_fleet([
        {"name": "small", "daily_mb": 2000, "priority": 5},
        {"name": "big", "daily_mb": 3000, "priority": 1},
    ], minutes=60, defaults={"compress_mb_per_s": 1000})
    plan = plan_fleet(fleet)
    assert [s.tenant.name for s in plan.slots] == ["big"]
    assert [u.tenant.name for u in plan.unfit] == ["small"]
    assert "full with tenants ahead of it" in plan.unfit[0].reason
    check_plan(plan)


def test_within_a_priority_short_jobs_go_first_so_more_fit() -> None:
    fleet = make_fleet([
        {"name": "long", "daily_mb": 3000, "compress_mb_per_s": 1000},
        {"name": "a", "daily_mb": 1500, "compress_mb_per_s": 1000},
        {"name": "b", "daily_mb": 1500, "compress_mb_per_s": 1000},
    ], minutes=60)
    plan = plan_fleet(fleet)
    assert plan.fits == 2 and [u.tenant.name for u in plan.unfit] == ["long"]


def test_link_is_shared_and_kept_busy() -> None:
    # Three compress-then-send tenants ready at different times: the link never idles
    # while someone is ready, so the last byte lands at 100 + 3 x 100 s.
    fleet = make_fleet([
        {"name": n, "daily_mb": 100, "setup_s": s} for n, s in (("a", 0), ("b", 50), ("c", 90))
    ], minutes=60)
    plan = plan_fleet(fleet)
    assert plan.makespan_s == pytest.approx(100 + 300)
    check_plan(plan)


def test_overlap_sends_only_what_is_compressed() -> None:
    # 0.25 MB/s of output, 1 MB/s link: sending follows compression, done when it is.
    fleet = make_fleet([{"name": "t", "daily_mb": 100, "compression_ratio": 4,
                         "overlap": True}])
    slot = plan_fleet(fleet).slot("t")
    assert [(s.from_s, s.to_s, s.mb_per_s) for s in slot.sends] == [(0, 100, 0.25)]
    assert slot.end_s == slot.ready_s == 100


def test_stream_cap_and_receiver_streams() -> None:
    fleet = make_fleet([{"name": n, "daily_mb": 100, "compress_mb_per_s": 1000}
                        for n in "abcd"], stream_mbit=4, streams=1)
    plan = plan_fleet(fleet)
    for slot in plan.slots:
        assert all(s.mb_per_s == pytest.approx(0.5) for s in slot.sends)
    assert plan.makespan_s == pytest.approx(0.1 + 4 * 200)
    check_plan(plan)


@pytest.mark.parametrize(
    ("tenant", "extra", "reason"),
    [
        ({"daily_mb": 5000}, {}, "preparation alone"),
        ({"daily_mb": 5000, "compress_mb_per_s": 100}, {}, "even alone on link wan"),
        ({"daily_mb": 5000, "compress_mb_per_s": 100, "deadline": "00:10"}, {},
         "by its deadline 00:10:00"),
    ],
)
def test_reasons(tenant: dict[str, object], extra: dict[str, object], reason: str) -> None:
    plan = plan_fleet(make_fleet([{"name": "t", **tenant}], **extra))  # type: ignore[arg-type]
    assert plan.fits == 0
    assert reason in plan.unfit[0].reason


def test_receiver_streams_reason() -> None:
    fleet = make_fleet([
        {"name": "slow", "daily_mb": 1000, "overlap": True, "priority": 1,
         "compression_ratio": 4},
        {"name": "late", "daily_mb": 10, "compress_mb_per_s": 100, "deadline": "00:10"},
    ], streams=1, minutes=60)
    plan = plan_fleet(fleet)
    assert [u.tenant.name for u in plan.unfit] == ["late"]
    assert "receiver streams" in plan.unfit[0].reason


def test_trial_fleet_with_many_towns_matches_max_fit() -> None:
    raw_sets = ["window.minutes=180"]
    fleet = load_fleet(TRIAL, raw_sets)
    town = fleet.tenant("Nobeoka")
    from dataclasses import replace

    many = fleet.with_tenants(tuple(replace(town, name=f"T{i:02d}") for i in range(80)))
    plan = plan_fleet(many)
    assert plan.fits == 72
    check_plan(plan)
