"""Cost sharing: the 4:6 rule by hand, usage shares, and whole yen that always add up."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from drsync.report.costs import largest_remainder, share_costs
from drsync.report.settings import CostSettings

KANAGAWA = CostSettings(10_000_000, (("equal", 0.4), ("population", 0.6)))


def test_the_four_to_six_rule_by_hand() -> None:
    # equal part 4,000,000 / 3 = 1,333,333.33 each; population part 6,000,000 split
    # 120,000 : 60,000 : 20,000 = 3,600,000 / 1,800,000 / 600,000. Exact shares:
    # 4,933,333.33 / 3,133,333.33 / 1,933,333.33; the floors leave 1 yen, which goes to
    # the first of the equal remainders (fleet file order).
    sharing = share_costs(KANAGAWA, ["Nobeoka", "Hyuga", "Kushima"],
                          {"population": {"Nobeoka": 120_000, "Hyuga": 60_000,
                                          "Kushima": 20_000}})
    assert [s.yen for s in sharing.shares] == [4_933_334, 3_133_333, 1_933_333]
    assert sharing.shares[0].fraction == Fraction(4_933_333, 10_000_000) + Fraction(1, 30_000_000)
    assert dict(sharing.shares[2].by_basis) == {"equal": Fraction(1, 3),
                                                "population": Fraction(1, 10)}
    assert sharing.notes == ()


def test_usage_and_a_basis_nobody_has() -> None:
    costs = CostSettings(1_000, (("equal", 0.5), ("stored_bytes", 0.25), ("sent_bytes", 0.25)))
    sharing = share_costs(costs, ["A", "B"], {"stored_bytes": {"A": 3, "B": 1},
                                              "sent_bytes": {"A": 0, "B": 0}})
    # A: 250 + 187.5 + 125 = 562.5; B: 250 + 62.5 + 125 = 437.5; the half yen: A (first)
    assert [s.yen for s in sharing.shares] == [563, 437]
    assert sharing.notes == ("sent_bytes: zero for every tenant; its weight is shared "
                             "equally",)


def test_largest_remainder_gives_the_leftover_to_the_largest_fractions() -> None:
    assert largest_remainder(100, [Fraction(1, 7)] * 7) == [15, 15, 14, 14, 14, 14, 14]
    assert largest_remainder(10, [Fraction(1, 10), Fraction(33, 100), Fraction(57, 100)]) \
        == [1, 3, 6]
    assert largest_remainder(0, [Fraction(1, 2)] * 2) == [0, 0]


@given(st.integers(0, 10**10), st.lists(st.integers(0, 10**6), min_size=1, max_size=40),
       st.floats(0, 1))
def test_shares_always_sum_to_the_total_and_stay_within_a_yen(
        total: int, populations: list[int], equal: float) -> None:
    names = [f"t{i}" for i in range(len(populations))]
    costs = CostSettings(total, (("equal", equal), ("population", 1 - equal)))
    sharing = share_costs(costs, names, {"population": dict(zip(names, populations,
                                                                strict=True))})
    assert sum(s.yen for s in sharing.shares) == total
    for s in sharing.shares:
        assert abs(s.yen - s.fraction * total) < 1
