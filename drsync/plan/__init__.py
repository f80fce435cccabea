"""The window planner: how many tenants fit the night, and the schedule they follow.

Pure policy: fleets and plans are frozen dataclasses, and nothing here
touches the network or a repository. The CLI (``drsync plan``) reads a
fleet file with ``load_fleet`` and renders what these functions return.
See docs/PLANNER.md for the model and the algorithm.
"""

from __future__ import annotations

from drsync.plan.cycle import Cycle, Move, Night, plan_cycle
from drsync.plan.export import (
    SCHEDULE_FORMAT,
    cycle_to_dict,
    learned_to_dict,
    load_schedule,
    maxfit_to_dict,
    plan_to_dict,
    schedule_file,
)
from drsync.plan.fleet import UNLIMITED_STREAMS, Fleet, Link, Tenant, Window
from drsync.plan.fleetfile import apply_overrides, fleet_from_dict, load_fleet
from drsync.plan.learn import (
    Estimate,
    History,
    Learned,
    history_from_runs,
    learn,
    read_history_csv,
)
from drsync.plan.maxfit import MAX_COPIES, MaxFit, Strategy, max_fit
from drsync.plan.schedule import LinkLoad, Plan, Send, Slot, Unfit, placement_order, plan_fleet

__all__ = [
    "MAX_COPIES",
    "SCHEDULE_FORMAT",
    "UNLIMITED_STREAMS",
    "Cycle",
    "Estimate",
    "Fleet",
    "History",
    "Learned",
    "Link",
    "LinkLoad",
    "MaxFit",
    "Move",
    "Night",
    "Plan",
    "Send",
    "Slot",
    "Strategy",
    "Tenant",
    "Unfit",
    "Window",
    "apply_overrides",
    "cycle_to_dict",
    "fleet_from_dict",
    "history_from_runs",
    "learn",
    "learned_to_dict",
    "load_fleet",
    "load_schedule",
    "max_fit",
    "maxfit_to_dict",
    "placement_order",
    "plan_cycle",
    "plan_fleet",
    "plan_to_dict",
    "read_history_csv",
    "schedule_file",
]
