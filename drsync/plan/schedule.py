"""The night's schedule: who sends what, when, at which rate; who does not fit.

The algorithm (docs/PLANNER.md explains why this one):

1. Every tenant starts preparing at its earliest moment: hosts share
   nothing, so waiting would only waste the window.
2. Tenants are placed one at a time in order of priority (1 first), then
   deadline, then the link time they need (smallest first: within one
   priority, the most tenants fit when short jobs go first), then name.
3. Each tenant takes, from what the tenants placed before it left free,
   the earliest sending it can get (``fill``): as fast as its link, its
   stream cap and its compressed backlog allow. If that cannot finish by
   its deadline, the tenant is left out with the reason, and nothing placed
   before it moves: a lower-priority tenant never displaces a higher one.

Because each tenant sends whenever it has bytes and the link has room, the
link is never idle while an admitted tenant waits with bytes to send (up to
stream caps and the receiver's stream limit), so the night ends as early as
the admitted set allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from drsync.plan.fill import fill
from drsync.plan.fleet import Fleet, Tenant
from drsync.plan.profile import Profile

__all__ = ["LinkLoad", "Plan", "Send", "Slot", "Unfit", "placement_order", "plan_fleet"]


@dataclass(frozen=True)
class Send:
    """A stretch of constant-rate sending."""

    from_s: float
    to_s: float
    mb_per_s: float

    @property
    def mbit_per_s(self) -> float:
        return self.mb_per_s * 8.0

    @property
    def mb(self) -> float:
        return self.mb_per_s * (self.to_s - self.from_s)


@dataclass(frozen=True)
class Slot:
    """A scheduled tenant: prepare from ``start_s``, send as ``sends`` say, done at ``end_s``."""

    tenant: Tenant
    start_s: float
    ready_s: float
    end_s: float
    sends: tuple[Send, ...]

    @property
    def slack_s(self) -> float:
        return self.tenant.deadline_s - self.end_s

    @property
    def send_s(self) -> float:
        return sum(s.to_s - s.from_s for s in self.sends)


@dataclass(frozen=True)
class Unfit:
    tenant: Tenant
    reason: str


@dataclass(frozen=True)
class LinkLoad:
    name: str
    mbit_per_s: float
    sent_mb: float
    capacity_mb: float

    @property
    def utilisation(self) -> float:
        return self.sent_mb / self.capacity_mb if self.capacity_mb > 0 else 0.0


@dataclass(frozen=True)
class Plan:
    """A night's schedule for a fleet."""

    fleet: Fleet
    slots: tuple[Slot, ...]
    unfit: tuple[Unfit, ...]
    links: tuple[LinkLoad, ...]

    @property
    def window_s(self) -> float:
        return self.fleet.window.seconds

    @property
    def fits(self) -> int:
        return len(self.slots)

    @property
    def all_fit(self) -> bool:
        return not self.unfit

    @property
    def makespan_s(self) -> float:
        return max((slot.end_s for slot in self.slots), default=0.0)

    def slot(self, name: str) -> Slot:
        for slot in self.slots:
            if slot.tenant.name == name:
                return slot
        raise KeyError(name)


def placement_order(fleet: Fleet) -> list[Tenant]:
    """Priority, then deadline, then link time needed, then name."""
    def key(t: Tenant) -> tuple[int, float, float, str]:
        rate = fleet.link(t.link).stream_mb_per_s
        return (t.priority, t.deadline_s, t.send_mb / rate, t.name)

    return sorted(fleet.tenants, key=key)


def plan_fleet(fleet: Fleet, order: list[Tenant] | None = None) -> Plan:
    """Schedule as many tenants as fit, in ``placement_order`` (or the order given)."""
    link_index = {link.name: i for i, link in enumerate(fleet.links)}
    profile = Profile(fleet.window.seconds, [lk.mb_per_s for lk in fleet.links], fleet.max_streams)
    slots: list[Slot] = []
    unfit: list[Unfit] = []
    for tenant in order if order is not None else placement_order(fleet):
        li = link_index[tenant.link]
        stream_rate = fleet.links[li].stream_mb_per_s
        result = fill(profile, li, tenant, stream_rate)
        if not result.complete:
            unfit.append(Unfit(tenant, _reason(fleet, profile, li, tenant, result.sent_mb)))
            continue
        profile.take(li, result.pieces)
        first = tenant.compress_from_s if tenant.overlap else tenant.ready_s
        profile.note_full(li, first)
        sends = tuple(Send(a, b, r) for a, b, r in result.pieces)
        end = sends[-1].to_s if sends else tenant.ready_s
        slots.append(Slot(tenant, tenant.earliest_s, tenant.ready_s, end, sends))
    loads = []
    for link in fleet.links:
        sent = sum(s.tenant.send_mb for s in slots if s.tenant.link == link.name)
        capacity = link.mb_per_s * fleet.window.seconds
        loads.append(LinkLoad(link.name, link.mbit_per_s, sent, capacity))
    return Plan(fleet, tuple(slots), tuple(unfit), tuple(loads))


def _reason(fleet: Fleet, profile: Profile, li: int, tenant: Tenant, sent_mb: float) -> str:
    """Why ``tenant`` cannot be placed: its own preparation, its link, or the receiver."""
    window = fleet.window
    deadline = window.clock(tenant.deadline_s)
    if not tenant.overlap and tenant.ready_s > tenant.deadline_s:
        return (f"preparation alone ({tenant.prep_s:.0f} s) ends at {window.clock(tenant.ready_s)}"
                f", after its deadline {deadline}")
    link = fleet.links[li]
    alone = Profile(window.seconds, [lk.mb_per_s for lk in fleet.links], 1)
    if not fill(alone, li, tenant, link.stream_mb_per_s).complete:
        return (f"even alone on link {link.name} it cannot send its {tenant.send_mb:.1f} MB "
                f"by its deadline {deadline}")
    if fleet.streams_limited and fill(profile, li, tenant, link.stream_mb_per_s,
                                      ignore_streams=True).complete:
        return (f"all {fleet.max_streams} receiver streams are taken whenever link "
                f"{link.name} has room before {deadline}")
    share = 100.0 * sent_mb / tenant.send_mb
    return (f"link {link.name} is full with tenants ahead of it in priority order: only "
            f"{share:.0f}% of its {tenant.send_mb:.1f} MB could be sent by {deadline}")
