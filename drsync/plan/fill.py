"""One tenant's transfer, sent as early as what is still free allows.

Given a ``Profile`` of what higher-priority tenants left free, a tenant
sends, at every moment from the first byte it has, as fast as the free link
capacity, its stream cap and its compressed backlog allow. A compress-then-
send tenant has all its bytes at ``ready_s`` and none before; an overlap
tenant spools its compressor's output and may send only what already exists
(its cumulative sent bytes never pass its cumulative compressed bytes).

The walk is exact for piecewise-constant capacity: inside a segment the
only events are the backlog running dry, compression ending, and the last
byte leaving, and each is solved for directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from drsync.plan.fleet import Tenant
from drsync.plan.profile import EPS_RATE, EPS_TIME, Piece, Profile

__all__ = ["Fill", "fill"]


@dataclass(frozen=True)
class Fill:
    """The sends found for a tenant by its deadline, and how much they carry."""

    pieces: tuple[Piece, ...]
    sent_mb: float
    complete: bool


def fill(
    profile: Profile, link: int, tenant: Tenant, stream_mb_per_s: float,
    *, ignore_streams: bool = False,
) -> Fill:
    """Send ``tenant`` as early as possible in what ``profile`` has free on ``link``."""
    total = tenant.send_mb
    eps_mb = 1e-9 * max(1.0, total)
    if total <= eps_mb:
        return Fill((), 0.0, True)
    produce = tenant.output_mb_per_s if tenant.overlap else 0.0
    first = tenant.compress_from_s if tenant.overlap else tenant.ready_s
    deadline = tenant.deadline_s
    t = profile.skip_full(link, first) if not ignore_streams else first
    pieces: list[Piece] = []
    sent = 0.0
    i = profile.segment_at(t)
    while t < deadline - EPS_TIME and sent < total - eps_mb and i < len(profile.streams):
        seg_end = min(profile.times[i + 1], deadline)
        has_stream = ignore_streams or profile.streams[i] > 0
        r_max = min(profile.free[link][i], stream_mb_per_s) if has_stream else 0.0
        while r_max > EPS_RATE and t < seg_end - EPS_TIME and sent < total - eps_mb:
            compressing = produce > 0 and t < tenant.ready_s
            p = produce if compressing else 0.0
            horizon = min(seg_end, tenant.ready_s) if compressing else seg_end
            backlog = tenant.prepared_mb(t) - sent
            if backlog > eps_mb:
                rate = r_max
                dt = horizon - t
                if rate > p:
                    dt = min(dt, backlog / (rate - p))
            elif p > 0:
                rate = min(r_max, p)
                dt = horizon - t
            else:
                break  # nothing to send before the segment ends
            end = t + dt
            if seg_end - end <= EPS_TIME:
                end = seg_end
            if end <= t:
                break
            sent += rate * (end - t)
            _append(pieces, t, end, rate)
            t = end
        t = max(t, seg_end)
        i += 1
    complete = sent >= total - eps_mb
    return Fill(tuple(pieces), total if complete else sent, complete)


def _append(pieces: list[Piece], start: float, end: float, rate: float) -> None:
    """Add a send, merging it into the previous one when it simply continues it."""
    if pieces:
        p_start, p_end, p_rate = pieces[-1]
        if abs(p_end - start) <= EPS_TIME and abs(p_rate - rate) <= 1e-12 * max(1.0, rate):
            pieces[-1] = (p_start, end, p_rate)
            return
    pieces.append((start, end, rate))
