"""Plans as plain JSON-ready dicts: ``--json`` output and the agents' schedule file.

Times are seconds from the window start, rounded to the millisecond; rates
are Mbit/s (10^6 bits) and volumes MB (10^6 bytes), rounded to six places,
so output is stable enough to keep as golden files.
"""

from __future__ import annotations

from typing import Any

from drsync.plan.cycle import Cycle
from drsync.plan.learn import Learned
from drsync.plan.maxfit import MaxFit
from drsync.plan.schedule import Plan, Slot

__all__ = [
    "SCHEDULE_FORMAT",
    "SCHEDULE_VERSION",
    "cycle_to_dict",
    "learned_to_dict",
    "maxfit_to_dict",
    "plan_to_dict",
    "schedule_file",
]

SCHEDULE_FORMAT = "drsync-schedule"
SCHEDULE_VERSION = 1


def _s(x: float) -> float:
    return round(x, 3)


def _v(x: float) -> float:
    return round(x, 6)


def _sends(slot: Slot) -> list[dict[str, float]]:
    return [{"from_s": _s(s.from_s), "to_s": _s(s.to_s), "mbit_per_s": _v(s.mbit_per_s)}
            for s in slot.sends]


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The ``drsync plan --json`` document."""
    window = plan.fleet.window
    return {
        "fleet": plan.fleet.source,
        "window": {"start": window.start, "minutes": window.minutes},
        "window_s": _s(plan.window_s),
        "total_tenants": len(plan.fleet.tenants),
        "fits": plan.fits,
        "all_fit": plan.all_fit,
        "makespan_s": _s(plan.makespan_s),
        "tenants": [
            {
                "name": slot.tenant.name,
                "link": slot.tenant.link,
                "priority": slot.tenant.priority,
                "start_s": _s(slot.start_s),
                "ready_s": _s(slot.ready_s),
                "end_s": _s(slot.end_s),
                "deadline_s": _s(slot.tenant.deadline_s),
                "slack_s": _s(slot.slack_s),
                "send_mb": _v(slot.tenant.send_mb),
                "send": _sends(slot),
            }
            for slot in plan.slots
        ],
        "unscheduled": [
            {"name": u.tenant.name, "link": u.tenant.link, "priority": u.tenant.priority,
             "reason": u.reason}
            for u in plan.unfit
        ],
        "utilisation": {load.name: _v(load.utilisation) for load in plan.links},
        "links": [
            {"name": load.name, "mbit_per_s": load.mbit_per_s, "sent_mb": _v(load.sent_mb),
             "capacity_mb": _v(load.capacity_mb), "utilisation": _v(load.utilisation)}
            for load in plan.links
        ],
    }


def maxfit_to_dict(result: MaxFit) -> dict[str, Any]:
    """The ``drsync plan --max-fit TENANT --json`` document, with its proving schedule."""
    return {
        "tenant": result.tenant.name,
        "strategy": result.strategy,
        "max_tenants": result.max_tenants,
        "per_tenant_s": _s(result.per_tenant_s),
        "bound": result.bound,
        "capped": result.capped,
        "schedule": plan_to_dict(result.plan),
    }


def cycle_to_dict(cycle: Cycle) -> dict[str, Any]:
    """The ``drsync plan --cycle --json`` document."""
    return {
        "days": cycle.days,
        "fits": all(night.fits for night in cycle.nights),
        "too_big": list(cycle.too_big),
        "first_full_night": {name: phase + 1 for name, phase in sorted(cycle.phases.items())},
        "moves": [
            {"tenant": m.tenant, "from_night": m.from_night, "to_night": m.to_night,
             "every_days": m.every_days}
            for m in cycle.moves
        ],
        "nights": [
            {
                "night": night.number,
                "fulls": list(night.fulls),
                "fits": night.fits,
                "scheduled": night.plan.fits,
                "makespan_s": _s(night.plan.makespan_s),
                "left_out": list(night.left_out),
                "utilisation": {ld.name: _v(ld.utilisation) for ld in night.plan.links},
            }
            for night in cycle.nights
        ],
    }


def learned_to_dict(learned: Learned) -> dict[str, Any]:
    return {
        "estimates": [
            {"tenant": e.tenant, "nights": e.nights, "daily_mb": _v(e.daily_mb),
             "compression_ratio": _v(e.compression_ratio),
             "compress_mb_per_s": _v(e.compress_mb_per_s), "latest_s": _s(e.latest_s),
             "slot_s": None if e.slot_s is None else _s(e.slot_s), "overran": e.overran}
            for e in learned.estimates
        ],
        "unknown_tenants": list(learned.unknown),
    }


def schedule_file(plan: Plan) -> dict[str, Any]:
    """What ``--write-schedule`` writes for the agents (format in docs/PLANNER.md)."""
    window = plan.fleet.window
    return {
        "format": SCHEDULE_FORMAT,
        "version": SCHEDULE_VERSION,
        "fleet": plan.fleet.source,
        "window": {"start": window.start, "minutes": window.minutes,
                   "seconds": _s(window.seconds)},
        "tenants": {
            slot.tenant.name: {
                "link": slot.tenant.link,
                "start": window.clock(slot.start_s),
                "start_s": _s(slot.start_s),
                "end_s": _s(slot.end_s),
                "deadline_s": _s(slot.tenant.deadline_s),
                "max_mbit_per_s": _v(max((s.mbit_per_s for s in slot.sends), default=0.0)),
                "send": _sends(slot),
            }
            for slot in plan.slots
        },
        "unscheduled": [u.tenant.name for u in plan.unfit],
    }
