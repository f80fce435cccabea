"""The agent's decisions, pure: dataclasses and datetimes in, decisions out, no I/O.

- ``decide``: what to do about the tenant's slot now. Before tonight's
  slot start: wait for it. After it, not yet run: a missed slot (host down,
  agent started late) runs at once if the planned duration still ends by
  the tenant's deadline, otherwise it is recorded as missed. A window that
  closed before this agent ever ran is nobody's miss. A window already
  handled (run, overran or missed) is never run twice.
- ``rate_at``: the upload rate at a moment of the window: the rate of the
  ``send`` segment holding it; outside every segment only ``max_mbit_per_s``
  (no limit when the schedule gives none); never above the configured cap.
- ``health``: what makes ``agent status`` unhealthy (exit 1).
- ``choose_night``: for a tenant that archives WAL over base backups, whether
  tonight ships the day's WAL or a new base backup's deduplicated delta, by
  the bytes each would put on the link and the tenant's policy.
- ``drill_due``: whether a restore drill is due after tonight's slot: drills
  every ``drill_every_days`` days, counted from the last drill on record in
  the store (whoever ran it: the agent, an operator, the secondary side), so
  a drill made by hand postpones the next one; none on record: due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from drsync.agent.config import TenantSlot
from drsync.plan.fleet import clock_seconds

__all__ = ["RUN_STATUSES", "Decision", "NightChoice", "boundaries", "bytes_per_s",
           "choose_night", "decide", "drill_due", "health", "rate_at", "window_opening"]

RUN_STATUSES = ("ok", "partial", "failed", "missed", "overrun")


@dataclass(frozen=True)
class Decision:
    action: str  # "wait": run at ``at``; "run": run now (missed, room left); "missed"
    window: datetime  # the opening of the window this is about
    at: datetime  # when the slot runs, or the slot start that was missed
    deadline: datetime
    reason: str


def window_opening(now: datetime, window_start: str) -> datetime:
    """The latest opening of the window at or before ``now`` (windows may cross midnight)."""
    seconds = clock_seconds(window_start)
    opening = now.replace(hour=seconds // 3600, minute=seconds % 3600 // 60,
                          second=seconds % 60, microsecond=0)
    return opening if opening <= now else opening - timedelta(days=1)


def decide(now: datetime, slot: TenantSlot, last_window: datetime | None) -> Decision:
    """What to do about the slot; ``last_window`` is the opening of the last window this
    agent handled (None: it never handled one)."""
    opening = window_opening(now, slot.window_start)

    def at(o: datetime) -> tuple[datetime, datetime]:
        return o + timedelta(seconds=slot.start_s), o + timedelta(seconds=slot.deadline_s)

    start, deadline = at(opening)
    handled = last_window is not None and last_window >= opening
    window_over = now >= opening + timedelta(seconds=slot.window_s)
    if now < start and not handled:
        return Decision("wait", opening, start, deadline, "tonight's slot")
    if handled or (window_over and last_window is None):
        nxt = opening + timedelta(days=1)
        s, d = at(nxt)
        return Decision("wait", nxt, s, d, "the next window's slot")
    room = (deadline - now).total_seconds()
    if room >= slot.planned_s:
        return Decision("run", opening, start, deadline,
                        f"slot at {start:%H:%M:%S} was missed; {room:.0f} s left before the "
                        f"deadline, {slot.planned_s:.0f} s planned")
    return Decision("missed", opening, start, deadline,
                    f"slot at {start:%H:%M:%S} was missed and {max(room, 0):.0f} s before the "
                    f"deadline {deadline:%H:%M:%S} are less than the {slot.planned_s:.0f} s "
                    "planned")


def rate_at(slot: TenantSlot, offset_s: float) -> float:
    """The planned upload rate in Mbit/s at ``offset_s`` from the window start; 0: no limit."""
    for send in slot.sends:
        if send.from_s <= offset_s < send.to_s:
            return send.mbit_per_s
    return slot.max_mbit_per_s


def bytes_per_s(mbit_per_s: float, cap: float) -> float:
    """A planned rate (Mbit/s, 0: none) under the configured cap (bytes/s, 0: none)."""
    planned = mbit_per_s * 1e6 / 8
    limits = [x for x in (planned, cap) if x > 0]
    return min(limits) if limits else 0.0


def boundaries(slot: TenantSlot) -> list[float]:
    """Offsets (from the window start) where the planned rate may change."""
    return sorted({t for s in slot.sends for t in (s.from_s, s.to_s)})


def _hours(seconds: float) -> str:
    """An RPO as people read it: hours, or seconds when under a tenth of an hour ("0.0 h
    exceeds the target of 0.01 h" said nothing)."""
    return f"{seconds / 3600:.1f} h" if seconds >= 360 else f"{seconds:.0f} s"


def health(last_status: str | None, rpo_s: float | None, rpo_hours: float) -> list[str]:
    """Why the tenant is unhealthy (empty: healthy)."""
    problems = []
    if last_status in ("failed", "missed", "overrun"):
        problems.append(f"the last run was {last_status}")
    if rpo_s is None:
        problems.append("no restorable point yet")
    elif rpo_s > rpo_hours * 3600:
        problems.append(f"RPO {_hours(rpo_s)} exceeds the target of {rpo_hours:g} h")
    return problems


@dataclass(frozen=True)
class NightChoice:
    """What tonight's slot ships: ``both`` (the jobs as configured, then the WAL: every
    night before this choice existed), ``wal`` (the WAL only: the base backup job is
    skipped, the last base plus the day's WAL restore to the last commit) or ``delta``
    (a new base backup, and WAL only from its start: the spooled WAL before it is
    superseded and dropped)."""

    ship: str
    reason: str
    wal_bytes: int | None = None  # the spooled WAL, as it would be shipped
    delta_bytes: int | None = None  # what the base backup would add (a dry run)

    def to_json(self) -> dict[str, object]:
        return {"ship": self.ship, "reason": self.reason, "wal_bytes": self.wal_bytes,
                "delta_bytes": self.delta_bytes}


def choose_night(*, pitr: bool, rpo_hours: float, has_base_job: bool,
                 wal_bytes: int | None, delta_bytes: int | None,
                 has_base: bool = True) -> NightChoice:
    """Pure: the cheaper of the day's WAL and a base backup's delta that still meets
    the tenant's policy. PITR needs every WAL file, so a ``pitr`` tenant always ships
    both; so does a tenant whose RPO is under a day (a new base a night does not bound
    it) or that has no base backup job to trade against. With no base backup stored
    yet, WAL alone restores nothing: the base it is. Ties go to the delta: it is
    restored without replaying a day of WAL."""
    if pitr:
        return NightChoice("both", "point-in-time recovery needs every WAL file")
    if rpo_hours < 24:
        return NightChoice("both", f"an RPO of {rpo_hours:g} h needs the day's WAL")
    if not has_base_job:
        return NightChoice("both", "no base backup job to ship instead of the WAL")
    if not has_base:
        return NightChoice("delta", "no base backup in the repository yet: the WAL alone "
                           "restores nothing", wal_bytes, delta_bytes)
    if not wal_bytes:
        return NightChoice("both", "no WAL waiting in the spool", wal_bytes, delta_bytes)
    if delta_bytes is None:
        return NightChoice("both", "the base backup's delta could not be estimated",
                           wal_bytes, None)
    if delta_bytes <= wal_bytes:
        return NightChoice("delta", f"a new base adds {delta_bytes} bytes, the day's WAL is "
                           f"{wal_bytes}", wal_bytes, delta_bytes)
    return NightChoice("wal", f"the day's WAL is {wal_bytes} bytes, a new base would add "
                       f"{delta_bytes}", wal_bytes, delta_bytes)


def drill_due(now: datetime, last_drill: datetime | None, every_days: float) -> str | None:
    """Why a drill is due at ``now`` (None: not due, or ``every_days`` is 0: drills off)."""
    if every_days <= 0:
        return None
    if last_drill is None:
        return "no drill on record"
    age = now - last_drill
    if age < timedelta(days=every_days):
        return None
    return (f"the last drill started {age.total_seconds() / 86400:.1f} days ago "
            f"(drill_every_days = {every_days:g})")
