"""The fleet a planner works on: window, links, receiver and tenants.

Plain frozen dataclasses, already validated and in the planner's units:
megabytes (10^6 bytes), seconds from the window start, and MB/s for rates
(a link's Mbit/s divided by 8). Loading and checking a fleet file lives in
``fleetfile``; this module only says what a fleet is and what follows from
its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

__all__ = ["UNLIMITED_STREAMS", "Fleet", "Link", "Tenant", "Window", "clock_after", "clock_seconds"]

UNLIMITED_STREAMS = 1_000_000


@dataclass(frozen=True)
class Window:
    """The nightly window: a wall-clock start ("HH:MM") and a length."""

    start: str
    minutes: float

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    def clock(self, offset_s: float) -> str:
        """The time of day ``offset_s`` seconds after the window opens, "HH:MM:SS"."""
        return clock_after(self.start, offset_s)


def clock_seconds(clock: str) -> int:
    """Seconds after midnight of a validated "HH:MM" or "HH:MM:SS"."""
    h, m, s = (int(x) for x in [*clock.split(":"), "0"][:3])
    return h * 3600 + m * 60 + s


def clock_after(clock: str, offset_s: float) -> str:
    """The time of day ``offset_s`` seconds after ``clock``, "HH:MM:SS" (past midnight wraps)."""
    total = round(clock_seconds(clock) + offset_s) % 86400
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


@dataclass(frozen=True)
class Link:
    """A WAN link shared by every tenant routed over it."""

    name: str
    mbit_per_s: float
    stream_mbit_per_s: float | None = None  # optional cap on any single stream

    @property
    def mb_per_s(self) -> float:
        return self.mbit_per_s / 8.0

    @property
    def stream_mb_per_s(self) -> float:
        """The most one stream may carry: the per-stream cap, else the whole link."""
        if self.stream_mbit_per_s is None:
            return self.mb_per_s
        return min(self.mb_per_s, self.stream_mbit_per_s / 8.0)


@dataclass(frozen=True)
class Tenant:
    """One municipality's nightly job, in MB and seconds from the window start."""

    name: str
    daily_mb: float
    compress_mb_per_s: float
    compression_ratio: float
    overlap: bool
    setup_s: float
    link: str
    population: int
    priority: int
    earliest_s: float
    deadline_s: float
    full_mb: float | None = None
    full_every_days: int | None = None
    # Set on the night the periodic full is due (see ``cycle``); 0 otherwise.
    full_tonight_mb: float = field(default=0.0, compare=False)
    # Not the planner's: what the fleet view and the agent hold the newest good point to.
    rpo_hours: float = field(default=24.0, compare=False)
    # Not the planner's either: what `drsync dr` needs to bring the tenant back.
    rto_hours: float = field(default=24.0, compare=False)
    repo: str | None = field(default=None, compare=False)  # the repository URL
    key_file: str | None = field(default=None, compare=False)

    @property
    def input_mb(self) -> float:
        """What the host prepares tonight: the day's differential plus any full."""
        return self.daily_mb + self.full_tonight_mb

    @property
    def send_mb(self) -> float:
        """What crosses the link: the prepared volume after compression."""
        return self.input_mb / self.compression_ratio

    @property
    def compress_s(self) -> float:
        return self.input_mb / self.compress_mb_per_s

    @property
    def prep_s(self) -> float:
        """Setup plus compression on the tenant's own host."""
        return self.setup_s + self.compress_s

    @property
    def output_mb_per_s(self) -> float:
        """How fast compressed bytes appear while the host compresses."""
        return self.compress_mb_per_s / self.compression_ratio

    @property
    def compress_from_s(self) -> float:
        return self.earliest_s + self.setup_s

    @property
    def ready_s(self) -> float:
        """When the last compressed byte exists."""
        return self.earliest_s + self.prep_s

    def prepared_mb(self, t: float) -> float:
        """Compressed MB that exist at ``t``: all the host can have handed over."""
        if t >= self.ready_s:
            return self.send_mb
        if not self.overlap or t <= self.compress_from_s:
            return 0.0
        return min(self.send_mb, (t - self.compress_from_s) * self.output_mb_per_s)

    def with_full(self, full_mb: float) -> Tenant:
        return replace(self, full_tonight_mb=full_mb)


@dataclass(frozen=True)
class Fleet:
    """Everything ``drsync plan`` needs; ``source`` names the file for messages."""

    window: Window
    links: tuple[Link, ...]
    tenants: tuple[Tenant, ...]
    max_streams: int = UNLIMITED_STREAMS
    source: str = "<fleet>"
    escrow_key: str | None = None  # [keys] escrow_key: the operator's escrow private key
    restore_mbit_per_s: float | None = None  # [dr] restore_mbit_per_s

    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)

    def tenant(self, name: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        raise KeyError(name)

    def with_tenants(self, tenants: tuple[Tenant, ...]) -> Fleet:
        return replace(self, tenants=tenants)

    @property
    def streams_limited(self) -> bool:
        return self.max_streams < UNLIMITED_STREAMS and not math.isinf(self.max_streams)
