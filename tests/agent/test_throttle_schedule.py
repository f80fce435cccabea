"""TokenBucket.set_rate on a virtual clock: each send segment's rate, measured."""

from __future__ import annotations

from drsync.agent.config import Send, TenantSlot
from drsync.agent.policy import boundaries, bytes_per_s, rate_at
from drsync.store.throttle import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_rate_changes_at_each_segment_boundary_within_ten_percent() -> None:
    slot = TenantSlot("t", "22:00", 3600.0, 0.0, 30.0, 60.0, 16.0,
                      (Send(0.0, 10.0, 16.0), Send(10.0, 20.0, 4.0), Send(20.0, 30.0, 8.0)))
    clock = Clock()
    bucket = TokenBucket(1.0, clock=clock, sleep=clock.sleep)
    changes = boundaries(slot)
    sent_at: list[tuple[float, int]] = []  # (time a block was paid for, bytes)
    bucket.set_rate(bytes_per_s(rate_at(slot, 0.0), 0))
    i = 0
    while clock.now < 30.0:
        while i < len(changes) and clock.now >= changes[i]:
            bucket.set_rate(bytes_per_s(rate_at(slot, changes[i]), 0))
            i += 1
        bucket.take(64 * 1024)
        sent_at.append((clock.now, 64 * 1024))
    for send in slot.sends:
        got = sum(n for t, n in sent_at if send.from_s < t <= send.to_s)
        planned = send.mbit_per_s * 1e6 / 8 * (send.to_s - send.from_s)
        assert abs(got - planned) / planned < 0.10, (send, got, planned)


def test_zero_means_unlimited_but_counted() -> None:
    clock = Clock()
    bucket = TokenBucket(1000.0, clock=clock, sleep=clock.sleep)
    bucket.set_rate(0)
    bucket.take(10**9)
    assert clock.now == 0.0 and bucket.taken == 10**9
    bucket.set_rate(1e6)
    bucket.take(2 * 10**6)
    assert 1.9 < clock.now < 2.1
