"""Plans as plain JSON-ready dicts: ``--json`` output and the agents' schedule file.

Times are seconds from the window start, rounded to the millisecond; rates
are Mbit/s (10^6 bits) and volumes MB (10^6 bytes), rounded to six places,
so output is stable enough to keep as golden files. ``load_schedule`` reads
a schedule file back, checking every field an agent relies on.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, NoReturn

from drsync.errors import ConfigError
from drsync.plan.cycle import Cycle
from drsync.plan.learn import Learned
from drsync.plan.maxfit import MaxFit
from drsync.plan.schedule import Plan, Slot

__all__ = [
    "SCHEDULE_FORMAT",
    "SCHEDULE_VERSION",
    "cycle_to_dict",
    "learned_to_dict",
    "load_schedule",
    "maxfit_to_dict",
    "parse_schedule",
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
             "slot_s": None if e.slot_s is None else _s(e.slot_s), "overran": e.overran,
             "overrun_nights": e.overrun_nights}
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


_CLOCK = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?")


def load_schedule(path: str | Path) -> dict[str, Any]:
    """Read a ``--write-schedule`` file; ConfigError naming the file and the field.

    Refuses an unknown format or version (docs/PLANNER.md); fields added within
    version 1 are kept as they are, unchecked.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: schedule file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read schedule file: {err.strerror}") from None
    return parse_schedule(data, str(path))


def parse_schedule(data: bytes, source: str) -> dict[str, Any]:
    """A schedule's bytes (from a file or a store), checked as ``load_schedule`` does;
    ``source`` names it in errors."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: schedule file is not UTF-8 text") from None
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{source}: schedule file is not valid JSON: {str(err)[:200]}") \
            from None
    _Schedule(source).check(doc)
    return dict(doc)


class _Schedule:
    """The checks of one schedule file, failing with ``file: field: problem``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.source}: {where}: {message}")

    def table(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, "must be an object")
        return value

    def seconds(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value < 0:
            self.fail(where, f"must be a number >= 0, got {str(value)[:40]}")
        return float(value)

    def check(self, doc: Any) -> None:
        doc = self.table(doc, "the document")
        if doc.get("format") != SCHEDULE_FORMAT:
            self.fail("format", f"is not {SCHEDULE_FORMAT!r} (not a drsync schedule file)")
        if doc.get("version") != SCHEDULE_VERSION:
            self.fail("version", f"{str(doc.get('version'))[:20]} is not supported "
                                 f"(this drsync reads {SCHEDULE_VERSION})")
        window = self.table(doc.get("window"), "window")
        if not isinstance(window.get("start"), str) or not _CLOCK.fullmatch(window["start"]):
            self.fail("window.start", 'must be a time of day "HH:MM"')
        for key in ("minutes", "seconds"):
            self.seconds(window.get(key), f"window.{key}")
        for name, slot in self.table(doc.get("tenants"), "tenants").items():
            self.slot(self.table(slot, f"tenants.{name}"), f"tenants.{name}")
        unscheduled = doc.get("unscheduled")
        if not isinstance(unscheduled, list) or not all(isinstance(n, str) for n in unscheduled):
            self.fail("unscheduled", "must be a list of tenant names")

    def slot(self, slot: dict[str, Any], where: str) -> None:
        if not isinstance(slot.get("link"), str):
            self.fail(f"{where}.link", "must be a link name")
        if not isinstance(slot.get("start"), str) or not _CLOCK.fullmatch(slot["start"]):
            self.fail(f"{where}.start", 'must be a time of day "HH:MM:SS"')
        start, end = (self.seconds(slot.get(k), f"{where}.{k}") for k in ("start_s", "end_s"))
        if end < start:
            self.fail(f"{where}.end_s", "is before start_s")
        for key in ("deadline_s", "max_mbit_per_s"):
            self.seconds(slot.get(key), f"{where}.{key}")
        sends = slot.get("send")
        if not isinstance(sends, list):
            self.fail(f"{where}.send", "must be a list of {from_s, to_s, mbit_per_s}")
        for i, send in enumerate(sends):
            at = f"{where}.send[{i}]"
            send = self.table(send, at)
            low, high = (self.seconds(send.get(k), f"{at}.{k}") for k in ("from_s", "to_s"))
            if high < low:
                self.fail(f"{at}.to_s", "is before from_s")
            self.seconds(send.get("mbit_per_s"), f"{at}.mbit_per_s")
