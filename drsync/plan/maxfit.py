"""How many tenants like this one fit the window on its link alone?

Two strategies:

- ``serial``: the 2011 trial's arithmetic. One town at a time, each
  preparing and then sending before the next starts; a town takes its
  alone-on-the-link time (``per_tenant_s``) and ``floor(window /
  per_tenant_s)`` fit.
- ``planned`` (the default): identical copies placed by the real scheduler
  (``plan_fleet``): all prepare at once on their own hosts and share the
  link. ``per_tenant_s`` is then the link time one tenant costs.

``bound`` is the best any schedule could do on that link:
``floor(capacity x (deadline - first byte) / bytes per tenant)``, where the
first byte exists when preparation ends (compress, then send) or when
compression starts (overlap). For compress-then-send tenants the planner
meets it exactly; for overlap tenants it comes within a few percent (the
first seconds, when little is compressed yet, cannot fill the link).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from drsync.plan.fill import fill
from drsync.plan.fleet import Fleet, Tenant
from drsync.plan.profile import Profile
from drsync.plan.schedule import Plan, plan_fleet

__all__ = ["MAX_COPIES", "MaxFit", "Strategy", "max_fit"]

Strategy = Literal["planned", "serial"]
# Past this many copies the answer is "more than Japan has municipalities".
MAX_COPIES = 5000


@dataclass(frozen=True)
class MaxFit:
    tenant: Tenant
    strategy: Strategy
    max_tenants: int
    per_tenant_s: float
    bound: int
    capped: bool
    plan: Plan  # the schedule of ``max_tenants`` copies that proves the count


def max_fit(fleet: Fleet, name: str, strategy: Strategy = "planned") -> MaxFit:
    """Count copies of tenant ``name`` that fit on its link, with the proving schedule."""
    tenant = fleet.tenant(name)
    link = fleet.link(tenant.link)
    alone = fleet.with_tenants((tenant,))
    bound = _bound(fleet, tenant)
    capped = False
    if strategy == "serial":
        per = _alone_s(fleet, tenant)
        n = int((tenant.deadline_s - tenant.earliest_s) // per) if per > 0 else 0
        if n > MAX_COPIES:
            n, capped = MAX_COPIES, True
        copies = tuple(
            replace(tenant, name=_copy_name(tenant, k), earliest_s=tenant.earliest_s + k * per)
            for k in range(n)
        )
    else:
        per = tenant.send_mb / link.stream_mb_per_s
        n, capped = _count_planned(fleet, tenant, min(bound + 1, MAX_COPIES))
        copies = tuple(replace(tenant, name=_copy_name(tenant, k)) for k in range(n))
    proof = plan_fleet(replace(alone, links=(link,), tenants=copies), order=list(copies))
    return MaxFit(tenant, strategy, n, per, bound, capped, proof)


def _count_planned(fleet: Fleet, tenant: Tenant, limit: int) -> tuple[int, bool]:
    """Place identical copies until one does not fit (then no later one would either)."""
    link = fleet.link(tenant.link)
    profile = Profile(fleet.window.seconds, [link.mb_per_s], fleet.max_streams)
    first = tenant.compress_from_s if tenant.overlap else tenant.ready_s
    for n in range(limit):
        result = fill(profile, 0, tenant, link.stream_mb_per_s)
        if not result.complete:
            return n, False
        profile.take(0, result.pieces)
        profile.note_full(0, first)
    return limit, limit >= MAX_COPIES


def _alone_s(fleet: Fleet, tenant: Tenant) -> float:
    """Start of preparation to last byte sent, with the link to itself."""
    link = fleet.link(tenant.link)
    profile = Profile(math.inf, [link.mb_per_s], 1)
    result = fill(profile, 0, replace(tenant, deadline_s=math.inf), link.stream_mb_per_s)
    end = result.pieces[-1][1] if result.pieces else tenant.ready_s
    return end - tenant.earliest_s


def _bound(fleet: Fleet, tenant: Tenant) -> int:
    link = fleet.link(tenant.link)
    rate = min(link.mb_per_s, fleet.max_streams * link.stream_mb_per_s)
    first = tenant.compress_from_s if tenant.overlap else tenant.ready_s
    if tenant.send_mb <= 0:
        return MAX_COPIES
    return max(0, int(rate * (tenant.deadline_s - first) / tenant.send_mb + 1e-9))


def _copy_name(tenant: Tenant, k: int) -> str:
    return f"{tenant.name}#{k + 1}"
