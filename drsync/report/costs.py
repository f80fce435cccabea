"""Sharing the secondary site's yearly cost across tenants. Pure.

Each basis gives every tenant a fraction: ``equal`` 1/n; ``population`` its
population over the fleet's; ``stored_bytes`` and ``sent_bytes`` its bytes
of the period over the fleet's. The split weighs the bases (the Kanagawa
rule the seed's municipalities used: 4 equal : 6 population). A basis whose
fleet total is zero cannot share anything, so its weight falls back to
``equal`` (said in ``notes``).

Rounding is to whole yen by the largest-remainder (Hamilton) method: each
tenant gets the floor of its exact share, and the yen left over go one each
to the largest fractional parts (ties: fleet file order), so the shares sum
exactly to the yearly total. Exact shares are computed in fractions, not
floats, so no rounding error decides who gets a yen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from drsync.report.settings import CostSettings

__all__ = ["CostShare", "Sharing", "largest_remainder", "share_costs"]


@dataclass(frozen=True)
class CostShare:
    tenant: str
    fraction: Fraction  # of the yearly total
    yen: int
    by_basis: tuple[tuple[str, Fraction], ...]  # the tenant's fraction under each basis


@dataclass(frozen=True)
class Sharing:
    yearly_yen: int
    split: tuple[tuple[str, float], ...]
    shares: tuple[CostShare, ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"yearly_yen": self.yearly_yen, "split": dict(self.split),
                "notes": list(self.notes),
                "tenants": [{"tenant": s.tenant, "yen": s.yen,
                             "fraction": round(float(s.fraction), 9),
                             "by_basis": {b: round(float(f), 9) for b, f in s.by_basis}}
                            for s in self.shares]}


def largest_remainder(total: int, weights: Sequence[Fraction]) -> list[int]:
    """Whole parts of ``total`` proportional to ``weights`` (summing to 1), summing to
    ``total`` exactly."""
    exact = [total * w for w in weights]
    floors = [int(x) for x in exact]  # exact >= 0: int() is the floor
    left = total - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def share_costs(costs: CostSettings, tenants: Sequence[str],
                measures: Mapping[str, Mapping[str, int]]) -> Sharing:
    """The shares of ``tenants`` (fleet file order); ``measures[basis][tenant]`` gives the
    population, stored bytes and sent bytes."""
    n = len(tenants)
    notes: list[str] = []
    per_basis: dict[str, list[Fraction]] = {}
    for basis, _weight in costs.split:
        if basis == "equal":
            per_basis[basis] = [Fraction(1, n)] * n
            continue
        values = [max(0, int(measures.get(basis, {}).get(t, 0))) for t in tenants]
        total = sum(values)
        if total == 0:
            notes.append(f"{basis}: zero for every tenant; its weight is shared equally")
            per_basis[basis] = [Fraction(1, n)] * n
        else:
            per_basis[basis] = [Fraction(v, total) for v in values]
    weights = {b: Fraction(w).limit_denominator(10**9) for b, w in costs.split}
    scale = sum(weights.values())
    fractions = [sum((weights[b] / scale * per_basis[b][i] for b in per_basis), Fraction(0))
                 for i in range(n)]
    yen = largest_remainder(costs.yearly_yen, fractions) if n else []
    shares = tuple(CostShare(t, fractions[i], yen[i],
                             tuple((b, per_basis[b][i]) for b in per_basis))
                   for i, t in enumerate(tenants))
    return Sharing(costs.yearly_yen, costs.split, shares, tuple(notes))
