"""Periodic fulls spread over the cycle; nights that overflow move a full elsewhere."""

from __future__ import annotations

from drsync.plan import Fleet, load_fleet, plan_cycle

from .checker import check_plan
from .conftest import KYUSHU, make_fleet


def test_kyushu_cycle_fits_every_night(kyushu: Fleet) -> None:
    cycle = plan_cycle(kyushu)
    assert cycle.days == 28  # fulls every 14 nights, Yakushima's every 28
    assert all(night.fits for night in cycle.nights)
    assert not cycle.moves and not cycle.too_big
    fulls = [name for night in cycle.nights for name in night.fulls]
    assert fulls.count("Miyazaki") == 2 and fulls.count("Yakushima") == 1
    for night in cycle.nights:
        check_plan(night.plan)


def test_fulls_are_spread_not_stacked() -> None:
    fleet = make_fleet([
        {"name": n, "daily_mb": 10, "full_mb": 2000, "full_every_days": 2,
         "compress_mb_per_s": 1000} for n in ("a", "b")
    ], minutes=60)
    cycle = plan_cycle(fleet)
    assert [night.fulls for night in cycle.nights] == [("a",), ("b",)]
    assert all(night.fits for night in cycle.nights)


def test_a_night_that_overflows_moves_a_full() -> None:
    # By link time alone "a" and "b" (1500 s each) balance "c" (2000 s), so the spread
    # puts "c" on night 1 and pairs "a" and "b" on night 2; but "b" must be done by
    # 00:40 while "a" goes first (priority 1). The repair moves a full to night 1.
    fleet = make_fleet([
        {"name": "c", "daily_mb": 1, "full_mb": 2000, "full_every_days": 2, "priority": 3},
        {"name": "a", "daily_mb": 1, "full_mb": 1500, "full_every_days": 2, "priority": 1},
        {"name": "b", "daily_mb": 1, "full_mb": 1500, "full_every_days": 2, "priority": 2,
         "deadline": "00:40"},
    ], minutes=60, defaults={"compress_mb_per_s": 1000})
    cycle = plan_cycle(fleet)
    assert cycle.moves, [n.fulls for n in cycle.nights]
    move = cycle.moves[0]
    assert (move.from_night, move.to_night, move.every_days) == (2, 1, 2)
    assert all(night.fits for night in cycle.nights)


def test_a_full_too_big_for_any_night_is_named() -> None:
    fleet = load_fleet(KYUSHU, ["tenant.Miyazaki.full_mb=400000"])
    cycle = plan_cycle(fleet)
    assert "Miyazaki" in cycle.too_big
    bad = [n for n in cycle.nights if not n.fits]
    assert bad and all("Miyazaki" in n.left_out for n in bad)


def test_no_fulls_means_a_one_night_cycle() -> None:
    cycle = plan_cycle(make_fleet([{"name": "a", "daily_mb": 10}]))
    assert cycle.days == 1 and cycle.nights[0].fits
