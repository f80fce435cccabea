"""Periodic full dumps spread over a cycle of nights so that every night fits.

A tenant with ``full_mb`` and ``full_every_days = P`` ships a full on one
night in every P, on top of that night's differential log (the log is still
needed to recover to points inside that day). Its *phase* is the first
night of the cycle on which it does. The cycle is the least common multiple
of the periods, so the pattern of nights repeats exactly.

1. Spread: fulls are placed largest first (in link time), each on the
   phase whose nights have the least full-dump link time so far on its link.
2. Check: every night of the cycle is scheduled for real (``plan_fleet``).
   A night fits when nobody is left out who fits on a night without fulls.
3. Repair: for a night that does not fit, try moving one of its fulls
   (largest first) to another phase where every night it lands on still
   fits; each move is reported as "full of X moves from night a to night
   b". A night no move can repair is reported with who is left out, and
   fulls too big for any night (even as its only full) are named.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from drsync.errors import ConfigError
from drsync.plan.fleet import Fleet, Tenant
from drsync.plan.schedule import Plan, plan_fleet

__all__ = ["MAX_CYCLE_DAYS", "Cycle", "Move", "Night", "plan_cycle"]

MAX_CYCLE_DAYS = 366


@dataclass(frozen=True)
class Move:
    """A full moved off a night that could not take it (nights are 1-based)."""

    tenant: str
    from_night: int
    to_night: int
    every_days: int


@dataclass(frozen=True)
class Night:
    number: int  # 1-based
    fulls: tuple[str, ...]
    plan: Plan
    left_out: tuple[str, ...]  # tenants unscheduled tonight that fit on a plain night

    @property
    def fits(self) -> bool:
        return not self.left_out


@dataclass(frozen=True)
class Cycle:
    days: int
    phases: dict[str, int]  # tenant -> first full night, 0-based
    nights: tuple[Night, ...]
    moves: tuple[Move, ...]
    baseline: Plan  # a night without any full
    too_big: tuple[str, ...]  # fulls that do not fit even as a night's only full


def plan_cycle(fleet: Fleet) -> Cycle:
    """Spread the fulls, schedule each night, and move fulls off nights that overflow."""
    with_fulls = [t for t in fleet.tenants if t.full_mb is not None and t.full_every_days]
    days = _cycle_days(fleet, with_fulls)
    baseline = plan_fleet(fleet)
    base_unfit = {u.tenant.name for u in baseline.unfit}
    phases = _spread(fleet, with_fulls, days)
    by_name = {t.name: t for t in with_fulls}
    cache: dict[frozenset[str], Plan] = {}

    def night_plan(n: int) -> Plan:
        fulls = frozenset(name for name in phases if _due(by_name[name], phases[name], n))
        if fulls not in cache:
            tenants = tuple(
                t.with_full(t.full_mb or 0.0) if t.name in fulls else t for t in fleet.tenants
            )
            cache[fulls] = plan_fleet(fleet.with_tenants(tenants))
        return cache[fulls]

    def fits(n: int) -> bool:
        return {u.tenant.name for u in night_plan(n).unfit} <= base_unfit

    moves: list[Move] = []
    for n in range(days):
        if not fits(n):
            moves.extend(_repair(n, days, phases, by_name, fits, fleet))
    too_big = sorted(
        {name for n in range(days) if not fits(n) for name in phases
         if _due(by_name[name], phases[name], n)
         and not _fits_alone(fleet, by_name[name], base_unfit)}
    )
    nights = []
    for n in range(days):
        plan = night_plan(n)
        fulls = tuple(sorted(name for name in phases if _due(by_name[name], phases[name], n)))
        left = tuple(sorted({u.tenant.name for u in plan.unfit} - base_unfit))
        nights.append(Night(n + 1, fulls, plan, left))
    return Cycle(days, dict(phases), tuple(nights), tuple(moves), baseline, tuple(too_big))


def _fits_alone(fleet: Fleet, tenant: Tenant, base_unfit: set[str]) -> bool:
    """Does a night with this full as its only one fit?"""
    tenants = tuple(t.with_full(t.full_mb or 0.0) if t.name == tenant.name else t
                    for t in fleet.tenants)
    plan = plan_fleet(fleet.with_tenants(tenants))
    return {u.tenant.name for u in plan.unfit} <= base_unfit


def _repair(
    n: int, days: int, phases: dict[str, int], by_name: dict[str, Tenant],
    fits: Callable[[int], bool], fleet: Fleet,
) -> list[Move]:
    """Move fulls off night ``n`` until it fits or no single move helps."""
    moves: list[Move] = []
    tried: set[str] = set()
    while not fits(n):
        tonight = [name for name in phases
                   if name not in tried and _due(by_name[name], phases[name], n)]
        if not tonight:
            break
        tonight.sort(key=lambda name: -_link_s(fleet, by_name[name]))
        moved = False
        for name in tonight:
            tried.add(name)
            tenant, old = by_name[name], phases[name]
            period = tenant.full_every_days or 1
            for new in range(period):
                if new == old:
                    continue
                phases[name] = new
                if fits(n) and all(fits(m) for m in range(new, days, period)):
                    moves.append(Move(name, old + 1, new + 1, period))
                    moved = True
                    break
                phases[name] = old
            if moved:
                break
        if not moved:
            break
    return moves


def _spread(fleet: Fleet, tenants: list[Tenant], days: int) -> dict[str, int]:
    load: dict[tuple[str, int], float] = {}
    phases: dict[str, int] = {}
    for tenant in sorted(tenants, key=lambda t: (-_link_s(fleet, t), t.name)):
        period = tenant.full_every_days or 1

        def worst(phase: int, tenant: Tenant = tenant, period: int = period) -> float:
            return max(load.get((tenant.link, n), 0.0) for n in range(phase, days, period))

        phase = min(range(period), key=lambda p: (worst(p), p))
        phases[tenant.name] = phase
        for n in range(phase, days, period):
            load[(tenant.link, n)] = load.get((tenant.link, n), 0.0) + _link_s(fleet, tenant)
    return phases


def _link_s(fleet: Fleet, tenant: Tenant) -> float:
    """Link time a tenant's full costs: its compressed volume at the link's full rate."""
    return (tenant.full_mb or 0.0) / tenant.compression_ratio / fleet.link(tenant.link).mb_per_s


def _due(tenant: Tenant, phase: int, night: int) -> bool:
    return (night - phase) % (tenant.full_every_days or 1) == 0


def _cycle_days(fleet: Fleet, tenants: list[Tenant]) -> int:
    days = math.lcm(*(t.full_every_days or 1 for t in tenants)) if tenants else 1
    if days > MAX_CYCLE_DAYS:
        raise ConfigError(
            f"{fleet.source}: full_every_days: the periods make a cycle of {days} nights "
            f"(more than {MAX_CYCLE_DAYS}); choose periods that divide one another"
        )
    return days
