"""Fleet status: one row per tenant of the fleet file, from the runs reported for it.

Pure: plain dataclasses in, rows out, no I/O and no clock (``now`` is given).
A tenant is judged by its latest night: the newest run and, when an agent ran it
in a scheduled slot, every other job of that slot (the runs with the same
``planned_start``). The night's result is its worst job's (a night with a
failed job and a good one failed: the agent ran the jobs in order and the last
one's success says nothing of the first), its start and end those of its
first and last job. A run without ``planned_start`` (``drsync backup`` from
cron, no agent) is a night by itself. The agent's ``night`` run is its choice
of what to ship, recorded ``ok`` before the jobs run: it carries no outcome and
is not judged.

A tenant's row says its last good point (the newest ``ok`` run: its snapshot,
and the start of its night, when the night's data began to be taken), the
RPO now (the age of that point) against the tenant's ``rpo_hours``, the
latest night's result, and the planned slot (from a schedule) beside the
actual one. Rows are sorted by health, problems first, then by priority (1
first) and name.

Health, worst first:

``no-report``     no run was ever reported for the tenant
``rpo-exceeded``  no good point, or the newest is older than ``rpo_hours``
``degraded``      within the RPO, but a job of the latest night was not ``ok``
``ok``            within the RPO and every job of the latest night was ``ok`` (or
                  is running)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["HEALTH", "FleetStatus", "FleetTenant", "PlannedSlot", "Run", "TenantRow",
           "fleet_status", "slots_from_schedule"]

HEALTH = ("no-report", "rpo-exceeded", "degraded", "ok")
# A night's result is its worst job's, in this order.
_WORST = ("missed", "overrun", "failed", "partial", "running", "ok")


@dataclass(frozen=True)
class FleetTenant:
    name: str
    priority: int = 10
    rpo_hours: float = 24.0


@dataclass(frozen=True)
class Run:
    run_id: str
    tenant: str
    status: str  # running, ok, partial, failed, missed, overrun
    started: datetime
    finished: datetime | None = None
    snapshot_id: str | None = None
    bytes_read: int = 0
    bytes_sent: int = 0
    error: str | None = None
    kind: str = "backup"
    source: str | None = None  # names the job in a problem of a night of several
    planned_start: datetime | None = None  # the agent's slot; None: not run in a slot


@dataclass(frozen=True)
class PlannedSlot:
    """A tenant's slot in tonight's schedule, as times of day; ``None`` times: the
    schedule left the tenant unscheduled."""

    start: str | None
    deadline: str | None


@dataclass(frozen=True)
class TenantRow:
    tenant: str
    priority: int
    rpo_hours: float
    health: str
    problems: tuple[str, ...]
    rpo_now_hours: float | None
    last_good_time: datetime | None
    last_good_snapshot: str | None
    last_status: str | None
    last_error: str | None
    last_started: datetime | None
    last_finished: datetime | None
    bytes_read: int | None
    bytes_sent: int | None
    planned: PlannedSlot | None  # None: no schedule was given

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "tenant": self.tenant, "priority": self.priority, "health": self.health,
            "problems": list(self.problems),
            "rpo_hours": self.rpo_hours,
            "rpo_now_hours": None if self.rpo_now_hours is None
            else round(self.rpo_now_hours, 3),
            "last_good": {"time": iso(self.last_good_time),
                          "snapshot_id": self.last_good_snapshot},
            "last_run": None if self.last_status is None else {
                "status": self.last_status, "error": self.last_error,
                "started": iso(self.last_started), "finished": iso(self.last_finished),
                "bytes_read": self.bytes_read, "bytes_sent": self.bytes_sent},
            "planned": None if self.planned is None else {
                "start": self.planned.start, "deadline": self.planned.deadline},
        }


@dataclass(frozen=True)
class FleetStatus:
    generated: datetime
    rows: tuple[TenantRow, ...]
    unknown_tenants: tuple[str, ...] = field(default=())  # reported, not in the fleet file

    @property
    def healthy(self) -> bool:
        return all(row.health == "ok" for row in self.rows)

    def counts(self) -> dict[str, int]:
        return {h: sum(row.health == h for row in self.rows) for h in HEALTH}

    def to_json(self) -> dict[str, Any]:
        return {"generated": self.generated.isoformat(), "healthy": self.healthy,
                "counts": self.counts(), "tenants": [row.to_json() for row in self.rows],
                "unknown_tenants": list(self.unknown_tenants)}


def fleet_status(tenants: Iterable[FleetTenant], runs: Iterable[Run], now: datetime,
                 slots: Mapping[str, PlannedSlot] | None = None) -> FleetStatus:
    """The rows of ``tenants`` given every run reported (any order, any tenant).

    ``slots`` is the schedule's slots by tenant (None: no schedule; a tenant
    missing from it is shown unscheduled).
    """
    tenants = list(tenants)
    by_tenant: dict[str, list[Run]] = {}
    for run in runs:
        by_tenant.setdefault(run.tenant, []).append(run)
    rows = [_row(t, by_tenant.get(t.name, []), now, slots) for t in tenants]
    rows.sort(key=lambda r: (HEALTH.index(r.health), r.priority, r.tenant))
    known = {t.name for t in tenants}
    return FleetStatus(now, tuple(rows), tuple(sorted(set(by_tenant) - known)))


def _newest(runs: Iterable[Run]) -> Run | None:
    return max(runs, key=lambda r: (r.started, r.run_id), default=None)


def _night(runs: list[Run], run: Run) -> list[Run]:
    """The jobs of ``run``'s night, first to last."""
    if run.planned_start is None:
        return [run]
    return sorted((r for r in runs if r.planned_start == run.planned_start),
                  key=lambda r: (r.started, r.run_id))


def _worst(night: list[Run]) -> str:
    # an unknown status is not a good one
    return min((r.status for r in night),
               key=lambda s: _WORST.index(s) if s in _WORST else -1)


def _job_problem(run: Run, named: bool) -> str:
    text = f"{run.source or run.kind} {run.status}" if named else run.status
    return text + (f": {run.error}" if run.error else "")


def _row(tenant: FleetTenant, runs: list[Run], now: datetime,
         slots: Mapping[str, PlannedSlot] | None) -> TenantRow:
    jobs = [r for r in runs if r.kind != "night"]
    newest = _newest(jobs)
    night = _night(jobs, newest) if newest else []
    good = _newest(r for r in jobs if r.status == "ok")
    good_time = _night(jobs, good)[0].started if good else None
    rpo_now = (now - good_time).total_seconds() / 3600 if good_time else None
    problems: list[str] = []
    bad = [r for r in night if r.status not in ("ok", "running")]
    named = len(night) > 1
    if not night:
        health = "no-report"
        problems.append("no run reported")
    else:
        health = "ok"
        if good is None:
            health = "rpo-exceeded"
            problems.append("no good backup on record")
        elif rpo_now is not None and rpo_now > tenant.rpo_hours:
            health = "rpo-exceeded"
            problems.append(f"newest good point is {rpo_now:.1f} h old "
                            f"(target {tenant.rpo_hours:g} h)")
        if bad:
            if health == "ok":
                health = "degraded"
            problems.append(("last night " if named else "last run ")
                            + "; ".join(_job_problem(r, named) for r in bad))
    planned = None
    if slots is not None:
        planned = slots.get(tenant.name, PlannedSlot(None, None))
        if planned.start is None:
            problems.append("not in tonight's schedule")
    finished = [r.finished for r in night]
    return TenantRow(
        tenant=tenant.name, priority=tenant.priority, rpo_hours=tenant.rpo_hours,
        health=health, problems=tuple(problems), rpo_now_hours=rpo_now,
        last_good_time=good_time, last_good_snapshot=good.snapshot_id if good else None,
        last_status=_worst(night) if night else None,
        last_error=next((f"{r.source or r.kind}: {r.error}" if named else r.error
                         for r in bad if r.error), None),
        last_started=night[0].started if night else None,
        last_finished=max(f for f in finished if f is not None)
        if night and None not in finished else None,
        bytes_read=sum(r.bytes_read for r in night) if night else None,
        bytes_sent=sum(r.bytes_sent for r in night) if night else None, planned=planned,
    )


def slots_from_schedule(doc: Mapping[str, Any]) -> dict[str, PlannedSlot]:
    """Each scheduled tenant's slot from a checked ``drsync-schedule`` v1 document
    (drsync.plan.export.load_schedule): its start and its deadline, as times of day."""
    from drsync.plan.fleet import Window

    window = doc["window"]
    clock = Window(str(window["start"]), float(window["minutes"])).clock
    return {name: PlannedSlot(str(slot["start"]), clock(float(slot["deadline_s"])))
            for name, slot in doc["tenants"].items()}
