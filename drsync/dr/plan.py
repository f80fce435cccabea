"""The disaster-recovery plan: every tenant in restore order, with what would be restored.

Pure: plain dataclasses in, rows out, no I/O and no clock (``now`` is given).
Restore order is the fleet file's ``priority`` (1 first), then ``rto_hours``
(the tightest first), then name; tenants with no restorable point (no
repository configured, the key opens nothing, no snapshot yet) come first, each
with its reason, since they need an operator before anything else.

The predicted time is the bytes to fetch over one rate (bytes per second):
measured from the catalog's earlier restore and drill runs when there are
any, else the fleet's ``[dr] restore_mbit_per_s``, else
``DEFAULT_RESTORE_MBIT_PER_S``. A tenant's RTO is met when the time
restoring it *in order* (every tenant before it, one after the other, plus
its own) fits its ``rto_hours``: with ``--jobs N`` the restore can only be
faster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["DEFAULT_RESTORE_MBIT_PER_S", "DrPlan", "PlanRow", "Point", "Probe", "Rate",
           "dr_plan", "measured_rate"]

DEFAULT_RESTORE_MBIT_PER_S = 100.0  # a WAN link between data centers, when nothing is known


@dataclass(frozen=True)
class Point:
    """A tenant's latest restorable point."""

    snapshot_id: str
    source_kind: str  # files, sqlite, stdin, pg_dump, pg_base
    time: datetime  # the moment the restored data is from
    bytes: int  # what a restore fetches from the store
    basis: str  # "snapshot", or for pg_base with WAL: "base backup + WAL"
    wal_until: str | None = None  # pg_base: the last commit the WAL reaches (ISO)
    # The newest snapshot of each other source of the tenant ("sqlite /srv/juki.db:
    # 1a2b3c4d of 2026-..."), which this point does not bring back.
    others: tuple[str, ...] = ()


@dataclass(frozen=True)
class Probe:
    """What opening a tenant's repository found: a point, or why there is none."""

    name: str
    priority: int
    rto_hours: float
    point: Point | None = None
    reason: str | None = None  # set when point is None
    repo: str | None = None


@dataclass(frozen=True)
class Rate:
    bytes_per_s: float
    basis: str  # "measured (N runs)", "[dr] restore_mbit_per_s", "default"

    @property
    def mbit_per_s(self) -> float:
        return self.bytes_per_s * 8 / 1e6


@dataclass(frozen=True)
class PlanRow:
    name: str
    priority: int
    rto_hours: float
    repo: str | None
    point: Point | None
    reason: str | None
    predicted_s: float | None  # restoring this tenant alone
    finish_s: float | None  # this tenant done, restoring in order from the start
    rpo_s: float | None  # the point's age now

    @property
    def restorable(self) -> bool:
        return self.point is not None

    @property
    def rto_met(self) -> bool:
        return self.finish_s is not None and self.finish_s <= self.rto_hours * 3600

    def to_json(self) -> dict[str, Any]:
        p = self.point
        return {
            "name": self.name, "priority": self.priority, "rto_hours": self.rto_hours,
            "repo": self.repo, "restorable": self.restorable, "reason": self.reason,
            "snapshot_id": p.snapshot_id if p else None,
            "source_kind": p.source_kind if p else None,
            "point_time": p.time.isoformat() if p else None,
            "basis": p.basis if p else None, "wal_until": p.wal_until if p else None,
            "bytes": p.bytes if p else None,
            "not_restored": list(p.others) if p else [],
            "predicted_s": _round(self.predicted_s), "finish_s": _round(self.finish_s),
            "rpo_s": _round(self.rpo_s), "rto_met": self.rto_met,
        }


@dataclass(frozen=True)
class DrPlan:
    generated: datetime
    rate: Rate
    rows: tuple[PlanRow, ...]

    @property
    def all_met(self) -> bool:
        return all(row.rto_met for row in self.rows)

    @property
    def total_bytes(self) -> int:
        return sum(row.point.bytes for row in self.rows if row.point)

    def to_json(self) -> dict[str, Any]:
        return {"generated": self.generated.isoformat(),
                "rate": {"mbit_per_s": round(self.rate.mbit_per_s, 3),
                         "basis": self.rate.basis},
                "total_bytes": self.total_bytes, "all_rto_met": self.all_met,
                "tenants": [row.to_json() for row in self.rows]}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def order_key(probe: Probe) -> tuple[int, int, float, str]:
    """Unrestorable first (they need an operator), then priority, then the tightest RTO."""
    return (0 if probe.point is None else 1, probe.priority, probe.rto_hours, probe.name)


def dr_plan(probes: Iterable[Probe], rate: Rate, now: datetime) -> DrPlan:
    """The rows of every probed tenant, in restore order."""
    if rate.bytes_per_s <= 0:
        raise ValueError("a restore rate must be > 0")
    rows = []
    elapsed = 0.0
    for probe in sorted(probes, key=order_key):
        point = probe.point
        predicted = finish = rpo = None
        if point is not None:
            predicted = point.bytes / rate.bytes_per_s
            elapsed += predicted
            finish = elapsed
            rpo = (now - point.time).total_seconds()
        rows.append(PlanRow(probe.name, probe.priority, probe.rto_hours, probe.repo, point,
                            probe.reason, predicted, finish, rpo))
    return DrPlan(now, rate, tuple(rows))


def measured_rate(runs: Iterable[tuple[int, float]], configured_mbit_per_s: float | None,
                  ) -> Rate:
    """The restore rate: bytes over seconds of earlier restores and drills ((bytes,
    seconds) per ok run), else the configured rate, else the default."""
    usable = [(b, s) for b, s in runs if b > 0 and s > 0]
    if usable:
        total_b = sum(b for b, _ in usable)
        total_s = sum(s for _, s in usable)
        return Rate(total_b / total_s, f"measured ({len(usable)} restore/drill runs)")
    if configured_mbit_per_s is not None:
        return Rate(configured_mbit_per_s * 1e6 / 8, "[dr] restore_mbit_per_s")
    return Rate(DEFAULT_RESTORE_MBIT_PER_S * 1e6 / 8,
                f"default ({DEFAULT_RESTORE_MBIT_PER_S:g} Mbit/s)")
