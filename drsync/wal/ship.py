"""wal-ship and wal-fetch: the spool to the store, and a WAL file back for recovery.

``fetch_verified`` is the one verified read of a WAL object (FORMAT §11) that
both ``wal-fetch`` and its prefetcher (``drsync.wal.prefetch``) use.

Shipping verifies each spooled object (authenticated decryption, content
hash) before storing it with put-if-absent, and deletes the spooled copy
only after the store confirmed the put (or holds identical content). A name
already stored with different content is reported and kept in the spool.

``ship_continuously`` is ``wal-ship --continuous``: a store error (the store is
down, slow, refusing) ends a pass, not the shipper; it says so in one line and
tries again after a growing pause (BACKOFF_FIRST_S doubling to BACKOFF_MAX_S),
since the spool keeps every file until the store confirmed it. Anything that
is no store error (a wrong key, a damaged spooled file, a conflict) still ends it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drsync.errors import (
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    RestoreTargetError,
    StaleKey,
    StoreError,
    WalConflict,
    WalNotFound,
)
from drsync.repo.crypto import MasterKey
from drsync.repo.objects import FormatError
from drsync.repo.wal import (
    HEADER_MAX,
    OlderKey,
    WalHeader,
    open_wal,
    parse_wal_header,
    wal_key,
)
from drsync.store.base import Store
from drsync.wal.spool import Spool

if TYPE_CHECKING:
    from drsync.settings import Settings

__all__ = ["BACKOFF_FIRST_S", "BACKOFF_MAX_S", "ShipResult", "fetch_file", "fetch_for_recovery",
           "fetch_verified", "ship_continuously", "ship_spool"]

# The pause after a failed pass of ship_continuously, doubled after each further failure:
# soon enough that a short outage costs seconds of RPO, sparse enough that a long one does
# not fill the log (one line per attempt).
BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 300.0


@dataclass
class ShipResult:
    shipped: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # identical copy was in the store
    conflicts: list[str] = field(default_factory=list)
    bytes: int = 0  # as sealed: what crossed the link
    raw_bytes: int = 0  # the WAL files' own size
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"shipped": len(self.shipped), "already_stored": len(self.already),
                "conflicts": self.conflicts, "bytes": self.bytes,
                "raw_bytes": self.raw_bytes,
                "duration_s": round(self.duration_s, 6),
                "last": max([*self.already, *self.shipped], default=None)}


def ship_spool(spool: Spool, store: Store, key: MasterKey, *,
               progress: Callable[[int], None] | None = None,
               stop: Callable[[], bool] | None = None) -> ShipResult:
    """Ship every spooled object, oldest name first; never delete before the store confirmed.

    Bandwidth is the store's business: a store opened with ``--limit-upload`` is
    throttled by the process-wide token bucket every transfer shares. ``stop``,
    asked before each file, ends the pass early (what is left stays spooled).
    """
    result = ShipResult()
    started = time.monotonic()
    for name in spool.names():
        if stop is not None and stop():
            break
        try:
            data = spool.read(name)
        except FileNotFoundError:
            continue  # shipped by a concurrent wal-ship
        try:
            head, _ = open_wal(key, data, name)
        except FormatError as err:
            raise IntegrityError(f"spool {spool.dir}: {name}: {err}") from None
        try:
            store.put(wal_key(name), data, if_absent=True)
            result.shipped.append(name)
        except ObjectExists:
            try:
                stored = parse_wal_header(store.get(wal_key(name), 0, HEADER_MAX))
            except FormatError as err:
                raise IntegrityError(f"{store.url}: object {wal_key(name)}: {err}") from None
            if stored.content_id != parse_wal_header(data).content_id:
                result.conflicts.append(name)
                continue
            result.already.append(name)
        spool.remove(name)
        result.bytes += len(data)
        result.raw_bytes += head.size
        if progress is not None:
            progress(len(data))
    result.duration_s = time.monotonic() - started
    if result.conflicts:
        raise WalConflict(
            f"{len(result.conflicts)} WAL file(s) differ from the copy already in the store "
            f"and were kept in spool {spool.dir}: {', '.join(result.conflicts[:5])}"
        )
    return result


def ship_continuously(spool: Spool, connect: Callable[[], tuple[Store, MasterKey]], *,
                      interval_s: float, stop: Callable[[], bool],
                      on_pass: Callable[[ShipResult, str], None],
                      log: Callable[[str], None],
                      backoff_s: tuple[float, float] = (BACKOFF_FIRST_S, BACKOFF_MAX_S),
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> None:
    """Ship the spool every ``interval_s`` until ``stop()``; ride out store outages.

    ``connect`` opens the store and the key (again after a failure to open it);
    ``on_pass`` gets every pass's result and the store URL; ``log`` gets one line
    per failed attempt and one when the store is back. A StoreError (and only
    that: the store's failures, transient or not) is retried with a pause growing
    from ``backoff_s[0]`` to ``backoff_s[1]``; every other error is raised.
    """
    first, cap = backoff_s
    store: Store | None = None
    key: MasterKey | None = None
    failing_since: float | None = None
    failures = 0
    delay = first
    while not stop():
        try:
            if store is None or key is None:
                store, key = connect()
            result = ship_spool(spool, store, key, stop=stop)
        except StoreError as err:
            if failing_since is None:
                failing_since, delay = clock(), first
            failures += 1
            waiting = ""
            with contextlib.suppress(StoreError):
                waiting = f" ({len(spool.names())} file(s) wait in spool {spool.dir})"
            log(f"warning: {err}{waiting}; shipping again in {delay:.0f} s (until SIGTERM)")
            _pause(delay, stop, clock, sleep)
            delay = min(delay * 2, cap)
            continue
        if failing_since is not None:
            log(f"{store.url} works again after {clock() - failing_since:.0f} s and "
                f"{failures} failed attempt(s): shipped what waited in spool {spool.dir}")
            failing_since, failures = None, 0
        on_pass(result, store.url)
        _pause(interval_s, stop, clock, sleep)


def _pause(seconds: float, stop: Callable[[], bool], clock: Callable[[], float],
           sleep: Callable[[float], None]) -> None:
    """Wait ``seconds``, in short naps so that a SIGTERM ends the wait at once."""
    until = clock() + seconds
    while not stop() and (left := until - clock()) > 0:
        sleep(min(left, 0.2))


def fetch_verified(name: str, key: MasterKey, *, spool: Spool | None,
                   store: Store | None) -> tuple[WalHeader, bytes]:
    """Find ``name`` in the spool or the store and return it verified (FORMAT §11): the
    header names it, it authenticates, and its plaintext has the declared size and id.

    WalNotFound when it is in neither; IntegrityError naming the object when it fails.
    """
    data = None
    where = ""
    if spool is not None:
        with contextlib.suppress(FileNotFoundError):
            data, where = spool.read(name), f"spool {spool.dir}: {name}"
    if data is None and store is not None:
        with contextlib.suppress(ObjectNotFound):
            data, where = store.get(wal_key(name)), f"{store.url}: object {wal_key(name)}"
    if data is None:
        raise WalNotFound(f"WAL file {name} is in neither the spool nor the store")
    try:
        return open_wal(key, data, name)
    except OlderKey as err:
        raise StaleKey(f"{where}: {err}") from None
    except FormatError as err:
        raise IntegrityError(f"{where}: {err}") from None


def fetch_file(name: str, dest: str | Path, key: MasterKey, *, spool: Spool | None,
               store: Store | None) -> WalHeader:
    """Find ``name`` in the spool or the store, verify it, write it to ``dest``."""
    head, plain = fetch_verified(name, key, spool=spool, store=store)
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.drsync-tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(plain)
        os.replace(tmp, dest)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise RestoreTargetError(f"cannot write {dest}: {err.strerror}") from None
    return head


def fetch_for_recovery(name: str, dest: str, settings: Settings,
                       open_repo: Callable[[Store], MasterKey]) -> WalHeader:
    """wal-fetch as a whole (restore_command): find the key and the sources the settings
    name, write ``name`` verified to ``dest``, then start or re-aim the prefetcher.

    The one service both front doors call (the click command and the click-free
    path in ``drsync.entry``). WalNotFound when the name is archived nowhere; any
    other DrsyncError is fatal for recovery (exit 126). The spool is read when it
    exists and never created. ``open_repo`` opens the key without a key file.
    """
    from drsync.settings import store_for
    from drsync.wal.push import spool_key

    spool = None
    if settings.spool or settings.key_file or settings.repo:
        spool = Spool.if_present(settings.wal_spool())
    store = store_for(settings)

    def wrapping(kf: Any) -> bytes:
        from drsync.wal.push import fetch_wrapping

        return fetch_wrapping(store, kf, settings.key_file)

    key = spool_key(spool, settings.key_file, wrapping, lambda: open_repo(store), cache=False)
    try:
        head = fetch_file(name, dest, key, spool=spool, store=store)
    except StaleKey:
        if not settings.key_file:
            raise  # a passphrase opens the repository whole already: nothing newer to read
        # The spool's cached wrapping predates a rotation (key rotate --reencrypt rewrote
        # this WAL at the new generation): the repository's own keys hold every generation.
        key = open_repo(store)
        head = fetch_file(name, dest, key, spool=spool, store=store)
    if settings.wal_prefetch:
        from drsync.wal.prefetch import FETCH_DEADLINE_S, start_prefetcher

        def sources() -> tuple[Spool | None, Store]:
            # Opened again in the prefetcher: no connection is shared across the fork.
            deadline = FETCH_DEADLINE_S if settings.retry_deadline_s is None else min(
                settings.retry_deadline_s, FETCH_DEADLINE_S)
            return (Spool.if_present(spool.dir) if spool is not None else None,
                    store_for(settings.override(retry_deadline_s=deadline)))

        start_prefetcher(name, dest, settings.wal_prefetch, head.size, key, sources)
    return head
