"""Retry and throttle wrappers, on an honest in-memory store that fails on demand."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from drsync.errors import ObjectExists, ObjectNotFound, StoreError, StoreUnavailable, UsageError
from drsync.store import MemoryStore, ObjectInfo, Store
from drsync.store.retry import RetryPolicy, RetryStore
from drsync.store.throttle import ThrottledStore, TokenBucket, format_rate, parse_rate


class FlakyStore(Store):
    """Fails the next ``failures`` calls with StoreUnavailable; ``land`` makes a failing put
    store its bytes first (an answer lost after the write happened)."""

    def __init__(self, failures: int = 0, land: bool = False) -> None:
        self.inner = MemoryStore("memory://flaky")
        self.url = self.inner.url
        self.failures = failures
        self.land = land
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable(f"{self.url}: connection reset")

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        if self.failures > 0 and self.land:
            self.inner.put(key, data, if_absent=if_absent)
        self._maybe_fail()
        self.inner.put(key, data, if_absent=if_absent)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self._maybe_fail()
        return self.inner.get(key, offset, length)

    def stat(self, key: str) -> ObjectInfo:
        self._maybe_fail()
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._maybe_fail()
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._maybe_fail()
        self.inner.delete(key)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _retrying(inner: Store, deadline: float = 60.0) -> tuple[RetryStore, FakeClock]:
    clock = FakeClock()
    return RetryStore(inner, RetryPolicy(deadline=deadline, sleep=clock.sleep, clock=clock)), clock


def test_transient_failures_are_retried_with_growing_jittered_backoff() -> None:
    flaky = FlakyStore(failures=5)
    store, clock = _retrying(flaky)
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert store.retries == 5 and len(clock.slept) == 5
    caps = [min(store.policy.cap, store.policy.base * 2**n) for n in range(5)]
    assert all(0 <= s <= c for s, c in zip(clock.slept, caps, strict=True))


def test_a_failure_that_outlasts_the_deadline_is_one_final_line() -> None:
    flaky = FlakyStore(failures=10_000)
    store, clock = _retrying(flaky, deadline=30)
    with pytest.raises(StoreError) as info:
        store.get("data/aa/x")
    assert not isinstance(info.value, StoreUnavailable)  # final: nothing above retries again
    message = str(info.value)
    assert "\n" not in message and "connection reset" in message and "deadline is 30 s" in message
    assert clock.now <= 30


def test_the_last_attempt_is_made_at_the_deadline_not_before() -> None:
    flaky = FlakyStore(failures=10_000)
    store, clock = _retrying(flaky, deadline=8)
    # Every backoff would jump past the deadline (full jitter's draw is pinned: a random one
    # under 8 s, which min(cap, base) allows, would make a third attempt)
    store.policy.backoff = lambda attempt: 50.0  # type: ignore[method-assign]
    with pytest.raises(StoreError) as info:
        store.get("data/aa/x")
    assert clock.now == 8  # it kept trying until the deadline, and no longer
    assert flaky.calls == 2 and "after 2 attempts in 8 s" in str(info.value)


def test_a_hung_endpoint_is_given_up_near_the_deadline() -> None:
    from drsync.settings import Settings, store_options

    assert store_options(Settings(retry_deadline_s=8)).s3.read_timeout == 10
    assert store_options(Settings(retry_deadline_s=30)).s3.read_timeout == 30
    assert store_options(Settings()).s3.read_timeout == 60  # the 300 s default deadline


def test_permanent_failures_are_not_retried() -> None:
    flaky = FlakyStore()
    store, clock = _retrying(flaky)
    with pytest.raises(ObjectNotFound):
        store.get("missing")
    store.put("k", b"1", if_absent=True)
    with pytest.raises(ObjectExists):
        store.put("k", b"2", if_absent=True)
    assert clock.slept == [] and store.retries == 0


def test_put_if_absent_whose_answer_was_lost_is_success() -> None:
    # The first attempt stores the object, then the connection drops: the retry
    # finds the key taken, by our own bytes.
    flaky = FlakyStore(failures=1, land=True)
    store, _clock = _retrying(flaky)
    store.put("lock", b"mine", if_absent=True)
    assert flaky.inner.get("lock") == b"mine"
    # ...but another writer's object is still a conflict.
    flaky.failures, flaky.land = 1, False
    flaky.inner.put("lock2", b"theirs")
    with pytest.raises(ObjectExists):
        store.put("lock2", b"mine", if_absent=True)


@pytest.mark.parametrize(("text", "expected"), [
    ("20Mbit", 2.5e6), ("20Mbit/s", 2.5e6), ("2.5MB/s", 2.5e6), ("2.5MB", 2.5e6),
    ("800kbit", 1e5), ("1Gbit", 1.25e8), ("50Mbps", 6.25e6), ("1000", 1000.0),
    ("0", 0.0), ("none", 0.0),
])
def test_parse_rate_decimal_units(text: str, expected: float) -> None:
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["fast", "20 furlongs", "-5MB", "MB"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(UsageError, match="rate"):
        parse_rate(text)


def test_format_rate() -> None:
    assert format_rate(6.25e6) == "50 Mbit/s"


class Receiver(MemoryStore):
    """The far end of the link: records when each put arrives and how many bytes it had."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__("memory://receiver")
        self._clock = clock
        self._lock = threading.Lock()
        self.arrivals: list[tuple[float, int]] = []

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        with self._lock:
            self.arrivals.append((self._clock(), len(data)))
        super().put(key, data, if_absent=if_absent)


def _most_in_any_window(arrivals: list[tuple[float, int]], rate: float) -> float:
    """max over windows [a, b] of (bytes arriving in it) - rate x (b - a): what a link
    capped at ``rate`` must absorb beyond the rate, i.e. the burst actually used."""
    arrivals = sorted(arrivals)
    worst, run = 0.0, 0.0  # max-subarray over arrivals, with time costing rate per second
    for i, (t, n) in enumerate(arrivals):
        gap = t - arrivals[i - 1][0] if i else 0.0
        run = max(0.0, run - rate * gap) + n
        worst = max(worst, run)
    return worst


def test_throttle_holds_the_rate_at_the_receiving_end_over_a_simulated_minute() -> None:
    """What arrives, measured where it arrives: two stores share one bucket (as every
    transfer of a process does), and together they get the rate, never more than the
    burst above it in any window."""
    clock = FakeClock()
    rate = 6.25e6  # 50 Mbit/s
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    receiver = Receiver(clock)
    stores = [ThrottledStore(receiver, bucket, None) for _ in range(2)]
    block = b"x" * (64 * 1024)
    sent = int(60 * rate) // len(block)  # a minute's worth at the rate
    for i in range(sent):
        stores[i % 2].put(f"o{i}", block)
    received = sum(n for _t, n in receiver.arrivals)
    assert received == sent * len(block)
    last = max(t for t, _n in receiver.arrivals)
    assert received <= bucket.burst + rate * last
    assert last == pytest.approx(60, rel=0.01)
    assert _most_in_any_window(receiver.arrivals, rate) <= bucket.burst + len(block)


def test_throttle_is_shared_by_threads_without_losing_bytes_or_the_rate() -> None:
    """Eight threads put at once through one bucket. Virtual time advances to the latest
    wake-up asked for (threads sleep concurrently, not one after another), and the
    receiver's log shows every byte and no window above burst + rate."""
    lock = threading.Lock()
    now = [0.0]

    def clock() -> float:
        with lock:
            return now[0]

    def sleep(seconds: float) -> None:
        with lock:
            now[0] = max(now[0], wake[threading.get_ident()] + seconds)

    wake: dict[int, float] = {}

    def timed_clock() -> float:  # the bucket reads the clock just before it asks to sleep
        t = clock()
        wake[threading.get_ident()] = t
        return t

    rate = 6.25e6
    bucket = TokenBucket(rate, clock=timed_clock, sleep=sleep)
    receiver = Receiver(clock)
    store = ThrottledStore(receiver, bucket, None)
    block = b"y" * (64 * 1024)

    def worker(w: int) -> None:
        for i in range(200):
            store.put(f"{w}/{i}", block)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(n for _t, n in receiver.arrivals) == 8 * 200 * len(block)
    # A thread records its arrival when it next runs, so up to one block per thread can
    # be stamped later than it was granted.
    assert _most_in_any_window(receiver.arrivals, rate) <= bucket.burst + 8 * len(block)
    total = 8 * 200 * len(block)
    assert total <= bucket.burst + rate * now[0] + 8 * len(block)
    assert now[0] == pytest.approx(total / rate, rel=0.05)


def test_throttle_charges_whole_objects_on_stores_that_cannot_pace() -> None:
    clock = FakeClock()
    up = TokenBucket(1000.0, burst=1000, clock=clock, sleep=clock.sleep)
    down = TokenBucket(500.0, burst=500, clock=clock, sleep=clock.sleep)
    store = ThrottledStore(MemoryStore(), up, down)
    store.put("a", b"x" * 3000)
    assert clock.now == pytest.approx(2.0)  # 3000 bytes at 1000 B/s, less the 1000 burst
    assert store.get("a") == b"x" * 3000
    assert clock.now == pytest.approx(2.0 + 5.0)


def test_a_request_failing_for_seconds_is_said_once(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import drsync.store.retry as retry

    monkeypatch.setattr(retry, "_SAID", threading.Event())
    flaky = FlakyStore(failures=10_000)
    store, _clock = _retrying(flaky, deadline=30)
    with caplog.at_level(logging.WARNING, logger="drsync"), pytest.raises(StoreError):
        store.get("data/aa/x")
    with caplog.at_level(logging.WARNING, logger="drsync"), pytest.raises(StoreError):
        store.get("data/aa/y")  # the second request says nothing more
    [said] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert said.getMessage().startswith("reading data/aa/x: memory://flaky: connection reset; "
                                        "still retrying, for up to 30 s in all")
    # A blip shorter than that is ridden out in silence.
    monkeypatch.setattr(retry, "_SAID", threading.Event())
    caplog.clear()
    blip = FlakyStore(failures=1)
    blip.inner.put("k", b"v")
    store, _clock = _retrying(blip, deadline=30)
    with caplog.at_level(logging.WARNING, logger="drsync"):
        assert store.get("k") == b"v"
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_a_backup_on_a_dead_link_gives_up_after_one_deadline_not_two() -> None:
    """Once a pack upload had given up, releasing the lock rode out a whole retry deadline
    again on the same dead link: a backup took twice retry_deadline_s to exit (10 minutes
    at the default). Found by an edge hunt."""
    import io
    import os

    from drsync.backup import BackupRequest, run_backup
    from drsync.testing import make_repo

    class DiesAtTheFirstPack(FlakyStore):
        def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
            if key.startswith("data/"):
                self.failures = 10**9  # the link dies, for good, with the lock held
            super().put(key, data, if_absent=if_absent)

    flaky = DiesAtTheFirstPack()
    store, clock = _retrying(flaky, deadline=300.0)
    repo = make_repo(store, pack_size=1 << 20, chunk_avg=64 << 10, chunk_min=16 << 10,
                     chunk_max=256 << 10)
    started = clock.now
    with pytest.raises(StoreError, match="the retry deadline is 300 s"):
        run_backup(repo, BackupRequest(stdin_name="dump", stdin=io.BytesIO(os.urandom(1 << 20))))
    assert 300 <= clock.now - started <= 310
