"""What is still free on the links and at the receiver, over the night.

A ``Profile`` is piecewise constant: breakpoints ``times[0] = 0 < ... <
times[-1] = window``, and for each segment ``[times[i], times[i+1])`` the
free capacity of every link (MB/s) and the number of free receiver streams.
Placing a tenant subtracts its sends; nothing is ever given back, which is
what makes the "known full" hints below safe to keep forever.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

__all__ = ["EPS_RATE", "EPS_TIME", "Piece", "Profile"]

EPS_TIME = 1e-9  # seconds: breakpoints closer than this are the same moment
EPS_RATE = 1e-9  # MB/s: free capacity below this is none

# (from_s, to_s, mb_per_s): a constant-rate send
Piece = tuple[float, float, float]


class Profile:
    """Free link capacity and receiver streams over ``[0, window_s)``."""

    def __init__(self, window_s: float, link_mb_per_s: Sequence[float], streams: int) -> None:
        self.times: list[float] = [0.0, window_s]
        self.free: list[list[float]] = [[rate] for rate in link_mb_per_s]
        self.streams: list[int] = [streams]
        # Per link: sorted, disjoint intervals where that link can take nothing more.
        self._full_from: list[list[float]] = [[] for _ in link_mb_per_s]
        self._full_to: list[list[float]] = [[] for _ in link_mb_per_s]

    @property
    def window_s(self) -> float:
        return self.times[-1]

    def segment_at(self, t: float) -> int:
        """Index of the segment holding ``t`` (the last one for ``t`` at the window end)."""
        return min(bisect_right(self.times, t) - 1, len(self.streams) - 1)

    def usable(self, link: int, i: int) -> bool:
        return self.streams[i] > 0 and self.free[link][i] > EPS_RATE

    def skip_full(self, link: int, t: float) -> float:
        """The first moment at or after ``t`` that is not known to be full on ``link``."""
        starts, ends = self._full_from[link], self._full_to[link]
        k = bisect_right(starts, t) - 1
        if k >= 0 and t < ends[k]:
            return ends[k]
        return t

    def take(self, link: int, pieces: Iterable[Piece]) -> None:
        """Subtract sends on ``link``; each piece also holds one receiver stream."""
        for start, end, rate in pieces:
            first, last = self._split(start), self._split(end)
            for i in range(first, last):
                self.free[link][i] -= rate
                self.streams[i] -= 1

    def note_full(self, link: int, t: float) -> None:
        """Remember that ``link`` is full from ``t`` up to its next usable segment."""
        i = self.segment_at(self.skip_full(link, t))
        while i < len(self.streams) and not self.usable(link, i):
            i += 1
        end = self.times[i]
        if end > t:
            self._add_full(link, t, end)

    def _add_full(self, link: int, start: float, end: float) -> None:
        starts, ends = self._full_from[link], self._full_to[link]
        k = bisect_left(starts, start)
        # Merge with every interval that touches [start, end].
        lo = k - 1 if k > 0 and ends[k - 1] >= start else k
        hi = k
        while hi < len(starts) and starts[hi] <= end:
            hi += 1
        if lo < hi:
            start = min(start, starts[lo])
            end = max(end, ends[hi - 1])
        starts[lo:hi] = [start]
        ends[lo:hi] = [end]

    def _split(self, t: float) -> int:
        """Make ``t`` a breakpoint (or find one within EPS_TIME); return its index."""
        k = bisect_left(self.times, t)
        if k < len(self.times) and self.times[k] - t <= EPS_TIME:
            return k
        if k > 0 and t - self.times[k - 1] <= EPS_TIME:
            return k - 1
        # Segment k-1 becomes [times[k-1], t) and [t, times[k]) with the same values.
        self.times.insert(k, t)
        self.streams.insert(k, self.streams[k - 1])
        for free in self.free:
            free.insert(k, free[k - 1])
        return k
