"""Properties over random fleets: every plan is feasible; more capacity never hurts.

"More capacity never hurts" is stated for the placement order: every tenant
that fit before the first one left out still fits when a link gets faster.
The total count alone is *not* monotone for any priority-first planner: a
faster link can let a big priority-1 tenant in that then crowds out two
small priority-2 ones (see docs/PLANNER.md, "Limits").
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drsync.plan import Fleet, placement_order, plan_fleet

from .checker import check_plan
from .conftest import make_fleet

TIMES = ["00:00", "00:10", "00:20", "00:30", "00:45", "01:00"]


@st.composite
def tenants(draw: st.DrawFn, links: tuple[str, ...]) -> dict[str, Any]:
    t: dict[str, Any] = {
        "daily_mb": draw(st.floats(0, 3000)),
        "compress_mb_per_s": draw(st.floats(0.2, 50)),
        "compression_ratio": draw(st.floats(1, 10)),
        "overlap": draw(st.booleans()),
        "setup_s": draw(st.floats(0, 300)),
        "priority": draw(st.integers(1, 3)),
        "link": draw(st.sampled_from(links)),
    }
    earliest = draw(st.sampled_from(range(len(TIMES) - 1)))
    if earliest:
        t["earliest"] = TIMES[earliest]
    if draw(st.booleans()):
        t["deadline"] = TIMES[draw(st.integers(earliest + 1, len(TIMES) - 1))]
    return t


@st.composite
def fleets(draw: st.DrawFn, *, one_link: bool = False, streams: bool = True) -> Fleet:
    names = ("a",) if one_link else ("a", "b")
    links = [{"name": n, "mbit_per_s": draw(st.floats(0.5, 40))} for n in names]
    if draw(st.booleans()):
        links[0]["stream_mbit_per_s"] = draw(st.floats(0.5, 40))
    items = draw(st.lists(tenants(names), min_size=1, max_size=8))
    for i, item in enumerate(items):
        item["name"] = f"t{i}"
    max_streams = draw(st.one_of(st.none(), st.integers(1, 4))) if streams else None
    return make_fleet(items, links=links, streams=max_streams)


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(fleets())
def test_every_plan_passes_the_checker(fleet: Fleet) -> None:
    check_plan(plan_fleet(fleet))


def _prefix(fleet: Fleet) -> list[str]:
    """Tenants in placement order up to the first one left out."""
    plan = plan_fleet(fleet)
    fit = {s.tenant.name for s in plan.slots}
    prefix = []
    for tenant in placement_order(fleet):
        if tenant.name not in fit:
            break
        prefix.append(tenant.name)
    return prefix


@SETTINGS
@given(fleets(one_link=True, streams=False), st.floats(1.0, 4.0))
def test_more_capacity_never_drops_a_tenant_that_fit_in_order(fleet: Fleet,
                                                              factor: float) -> None:
    from dataclasses import replace

    link = fleet.links[0]
    faster = replace(fleet, links=(replace(link, mbit_per_s=link.mbit_per_s * factor),))
    before, after = _prefix(fleet), _prefix(faster)
    assert after[:len(before)] == before
    check_plan(plan_fleet(faster))
    if plan_fleet(fleet).all_fit:
        assert plan_fleet(faster).all_fit


def test_japan_benchmark_plans_fast() -> None:
    """Issue 5, item 10: all 1,741 municipalities in under a second (generous here)."""
    import importlib.util
    import time
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "plan_bench.py"
    spec = importlib.util.spec_from_file_location("plan_bench", path)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from drsync.plan import fleet_from_dict

    fleet = fleet_from_dict(bench.japan())
    start = time.perf_counter()
    plan = plan_fleet(fleet)
    assert time.perf_counter() - start < 2.0
    assert len(fleet.tenants) == 1741 and plan.fits > 1700
    check_plan(plan)
