"""An independent check that a plan is feasible.

It shares nothing with the scheduler but the dataclasses: it recomputes
every constraint from the fleet's numbers and the plan's sends, so a bug
in ``fill`` or ``Profile`` cannot hide itself.
"""

from __future__ import annotations

from collections import defaultdict

from drsync.plan import Fleet, Link, Plan, Send, Tenant

REL = 1e-6  # relative tolerance on rates and volumes
ABS_T = 1e-6  # seconds


def check_plan(plan: Plan, fleet: Fleet | None = None) -> None:
    """Raise AssertionError naming the first broken constraint."""
    fleet = fleet or plan.fleet
    names = [s.tenant.name for s in plan.slots] + [u.tenant.name for u in plan.unfit]
    assert sorted(names) == sorted(t.name for t in fleet.tenants), "every tenant placed or listed"
    window = fleet.window.minutes * 60.0
    links = {lk.name: lk for lk in fleet.links}
    for slot in plan.slots:
        _check_slot(slot.tenant, slot.sends, links[slot.tenant.link], window)
        assert slot.start_s >= slot.tenant.earliest_s - ABS_T, f"{slot.tenant.name} starts early"
        last = max((s.to_s for s in slot.sends), default=slot.ready_s)
        assert abs(slot.end_s - last) <= ABS_T, f"{slot.tenant.name} end_s is its last send"
    _check_sharing(plan, fleet)


def _check_slot(tenant: Tenant, sends: tuple[Send, ...], link: Link, window: float) -> None:
    name = tenant.name
    out_mb = (tenant.daily_mb + tenant.full_tonight_mb) / tenant.compression_ratio
    compress_s = (tenant.daily_mb + tenant.full_tonight_mb) / tenant.compress_mb_per_s
    compress_from = tenant.earliest_s + tenant.setup_s
    ready = compress_from + compress_s
    cap = link.mbit_per_s / 8
    if link.stream_mbit_per_s is not None:
        cap = min(cap, link.stream_mbit_per_s / 8)
    sent = 0.0
    prev_end = -1.0
    for s in sends:
        assert s.from_s < s.to_s, f"{name}: empty or reversed send"
        assert s.from_s >= prev_end - ABS_T, f"{name}: sends overlap or are out of order"
        prev_end = s.to_s
        assert 0 < s.mb_per_s <= cap * (1 + REL), f"{name}: rate {s.mb_per_s} over stream cap"
        assert s.from_s >= -ABS_T and s.to_s <= window + ABS_T, f"{name}: send outside window"
        assert s.to_s <= tenant.deadline_s + ABS_T, f"{name}: sends after its deadline"
        if tenant.overlap:
            assert s.from_s >= compress_from - ABS_T, f"{name}: sends before compressing"
        else:
            assert s.from_s >= ready - ABS_T, f"{name}: sends before preparation ends"
        sent += s.mb_per_s * (s.to_s - s.from_s)
        # Compressed bytes so far are concave in time from compress_from on, sends linear:
        # checking each send's end is enough.
        made = min(out_mb, max(0.0, s.to_s - compress_from) * tenant.compress_mb_per_s
                   / tenant.compression_ratio)
        assert sent <= made * (1 + REL) + 1e-9, f"{name}: sent ahead of compression at {s.to_s}"
    assert abs(sent - out_mb) <= REL * max(1.0, out_mb), f"{name}: sent {sent} of {out_mb} MB"


def _check_sharing(plan: Plan, fleet: Fleet) -> None:
    """Sweep every send start and end: link capacity and receiver streams."""
    events: list[tuple[float, int, str, float]] = []
    for slot in plan.slots:
        for s in slot.sends:
            # Round to a microsecond grid so an end and a start at "the same" time meet.
            events.append((round(s.from_s, 6), 1, slot.tenant.link, s.mb_per_s))
            events.append((round(s.to_s, 6), 0, slot.tenant.link, s.mb_per_s))
    events.sort(key=lambda e: (e[0], e[1]))
    load: dict[str, float] = defaultdict(float)
    streams = 0
    caps = {lk.name: lk.mbit_per_s / 8 for lk in fleet.links}
    for t, kind, link, rate in events:
        if kind == 1:
            load[link] += rate
            streams += 1
            assert load[link] <= caps[link] * (1 + REL), f"link {link} over capacity at {t}"
            assert streams <= fleet.max_streams, f"receiver streams over limit at {t}"
        else:
            load[link] -= rate
            streams -= 1
