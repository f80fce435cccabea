"""Bandwidth limits: one token bucket per direction, shared by every transfer of the process.

``parse_rate`` reads the units people use (decimal, as link speeds are sold):
``20Mbit`` = 20 x 10^6 bits/s, ``2.5MB/s`` = 2.5 x 10^6 bytes/s, ``800kbit``,
``1Gbit``, or a bare number of bytes per second.

``ThrottledStore`` wraps any store. When the store inside can pace its own
transfers block by block (S3: every 64 KiB sent or received), the throttle
installs the shared buckets there, so a 16 MiB pack flows at the limit
instead of in bursts; otherwise it charges whole objects.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator

from drsync.errors import UsageError
from drsync.store.base import ObjectInfo, Store
from drsync.store.capabilities import Paced, capability

__all__ = ["ThrottledStore", "TokenBucket", "format_rate", "parse_rate", "shared_bucket"]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(bit|bps|b|B|B/s|Bps|bit/s)?\s*$")
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_rate(text: str) -> float:
    """Bytes per second from ``20Mbit``, ``2.5MB/s``, ``500kB``, ``1e6``-style numbers.

    Units are decimal: MB = 10^6 bytes, Mbit = 10^6 bits. A bare number is
    bytes per second. ``0`` or ``none`` means no limit (returned as 0).
    """
    if text.strip().lower() in ("0", "none", "off", "unlimited", ""):
        return 0.0
    match = _RATE.match(text)
    if match is None:
        raise UsageError(f"cannot read the rate {text!r}: use e.g. 20Mbit, 2.5MB/s or 800kbit")
    number, prefix, unit = match.groups()
    value = float(number) * _SCALE[prefix.lower()]
    if unit in ("bit", "bps", "b", "bit/s"):
        value /= 8
    if value <= 0:
        return 0.0
    return value


def format_rate(bytes_per_s: float) -> str:
    bits = bytes_per_s * 8
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.3g} {unit}"
    return f"{bits:.0f} bit/s"


class TokenBucket:
    """Rate ``rate`` bytes/s with a burst of ``burst`` bytes, safe for many threads.

    ``take(n)`` reserves n bytes at once (the balance may go negative) and
    sleeps until the reservation is paid: concurrent takers queue in virtual
    time, so however many transfers share the bucket, the total over any
    interval is at most ``burst + rate x interval``.
    """

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self._burst = burst
        self.burst = float(burst if burst is not None else max(64 * 1024, rate / 20))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()
        self.taken = 0

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on (the agent does at each ``send`` segment boundary).

        Tokens earned so far are settled at the old rate first; ``0`` means no
        limit until the next change (bytes are still counted in ``taken``). A
        debt left at the old rate is repaid at the new one.
        """
        if rate < 0:
            raise ValueError("rate must not be negative")
        with self._lock:
            now = self._clock()
            if self.rate > 0:
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self.rate = float(rate)
            if rate > 0:
                self.burst = float(self._burst if self._burst is not None
                                   else max(64 * 1024, rate / 20))
                self._tokens = min(self._tokens, self.burst)
            else:
                self._tokens = self.burst

    def take(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self.taken += n
            if self.rate <= 0:
                return
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


_shared: dict[tuple[str, float], TokenBucket] = {}
_shared_lock = threading.Lock()


def shared_bucket(direction: str, rate: float) -> TokenBucket:
    """The process's one bucket for ``direction`` at ``rate``: every store opened with the
    same limit shares it, so the limit holds for all of an agent's transfers together."""
    with _shared_lock:
        bucket = _shared.get((direction, rate))
        if bucket is None:
            bucket = _shared[(direction, rate)] = TokenBucket(rate)
        return bucket


class ThrottledStore(Store):
    def __init__(self, inner: Store, upload: TokenBucket | None,
                 download: TokenBucket | None) -> None:
        self.inner = inner
        self.url = inner.url
        self.connections = inner.connections
        self.upload = upload
        self.download = download
        paced = capability(inner, Paced)
        self._paced = paced is not None
        if paced is not None:
            paced.set_pacing(upload.take if upload else None, download.take if download else None)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        if self.upload is not None and not self._paced:
            self.upload.take(len(data))
        self.inner.put(key, data, if_absent=if_absent)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.get(key, offset, length)
        if self.download is not None and not self._paced:
            self.download.take(len(data))
        return data

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()
