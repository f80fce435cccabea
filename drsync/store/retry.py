"""Retries around any store: transient failures again, with backoff, until a deadline.

Only ``StoreUnavailable`` (a reset, a timeout, a 5xx, throttling, a
truncated or corrupted transfer) is retried; everything else (access
denied, no such bucket, not found, already exists) is final and passes
through at once. Each request has its own deadline, so a long backup rides
out a link that drops for a few minutes without restarting, and fails with
one line when the link stays down longer.

Backoff is exponential with full jitter (AWS's recommendation): attempt n
sleeps a uniform random time in [0, min(cap, base x 2^n)], cut short so that the
last attempt is made at the deadline rather than given up before it. A request
still failing after a few seconds is one ``drsync: warning:`` line per process,
so that an endpoint that is down does not mean minutes of silence.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from drsync.errors import ObjectExists, ObjectNotFound, StoreError, StoreUnavailable
from drsync.store.base import ObjectInfo, Store

__all__ = ["RetryPolicy", "RetryStore"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_SAY_AFTER_S = 5.0  # a request failing this long is said once per process, as a warning
_SAID = threading.Event()
_BRIEF = threading.local()  # brief(): a shorter deadline for this thread's requests


@contextlib.contextmanager
def brief(seconds: float) -> Iterator[None]:
    """This thread's requests retry for at most ``seconds`` meanwhile: for clean-up after
    the store has already failed (a lock to release once a pack upload gave up), which
    must not wait a whole retry deadline again for the same dead link."""
    before = getattr(_BRIEF, "deadline", None)
    _BRIEF.deadline = seconds if before is None else min(before, seconds)
    try:
        yield
    finally:
        _BRIEF.deadline = before


class RetryPolicy:
    def __init__(self, deadline: float = 300.0, base: float = 0.2, cap: float = 20.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline = deadline
        self.base = base
        self.cap = cap
        self.sleep = sleep
        self.clock = clock

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * (2 ** attempt)))


class RetryStore(Store):
    def __init__(self, inner: Store, policy: RetryPolicy | None = None) -> None:
        self.inner = inner
        self.url = inner.url
        self.connections = inner.connections
        self.policy = policy or RetryPolicy()
        self.retries = 0  # transient failures ridden out, for reports and tests

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        policy = self.policy
        short = getattr(_BRIEF, "deadline", None)
        deadline = policy.deadline if short is None else min(policy.deadline, short)
        start = policy.clock()
        attempt = 0
        while True:
            try:
                return fn()
            except StoreUnavailable as err:
                elapsed = policy.clock() - start
                # A backoff that would end past the deadline is cut to it, for one last
                # attempt there: the deadline is how long a request keeps trying.
                remaining = deadline - elapsed
                if remaining <= 0:
                    raise StoreError(
                        f"{err} (gave up {what} after {attempt + 1} "
                        f"attempt{'s' if attempt else ''} in {elapsed:.0f} s; "
                        f"the retry deadline is {deadline:g} s)"
                    ) from None
                delay = min(policy.backoff(attempt), remaining)
                attempt += 1
                self.retries += 1
                log.info("%s: %s; retry %d in %.1f s", what, err, attempt, delay)
                if elapsed >= _SAY_AFTER_S and not _SAID.is_set():
                    # An endpoint that is down would otherwise mean minutes of silence.
                    _SAID.set()
                    log.warning("%s: %s; still retrying, for up to %g s in all (the retry "
                                "deadline, [store] retry_deadline_s)", what, err,
                                policy.deadline)
                policy.sleep(delay)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        failed_before = False

        def attempt() -> None:
            nonlocal failed_before
            try:
                self.inner.put(key, data, if_absent=if_absent)
            except StoreUnavailable:
                failed_before = True
                raise

        try:
            self._call(f"writing {key}", attempt)
        except ObjectExists:
            # A put-if-absent whose earlier attempt landed but whose answer was lost
            # finds its own object: that is success, not a conflict.
            if failed_before and self._holds(key, data):
                return
            raise

    def _holds(self, key: str, data: bytes) -> bool:
        try:
            return self._call(f"reading {key}", lambda: self.inner.get(key)) == data
        except ObjectNotFound:
            return False

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._call(f"reading {key}", lambda: self.inner.get(key, offset, length))

    def stat(self, key: str) -> ObjectInfo:
        return self._call(f"stat {key}", lambda: self.inner.stat(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Listing is retried whole: a half-listed prefix is never returned.
        items = self._call(f"listing {prefix or '/'}", lambda: list(self.inner.list(prefix)))
        yield from items

    def delete(self, key: str) -> None:
        self._call(f"deleting {key}", lambda: self.inner.delete(key))

    def close(self) -> None:
        self.inner.close()
