"""The writer lock: one backup at a time per repository.

The lock is the object ``lock``, created with put-if-absent (atomic on every
backend), holding host, pid, time, a random token and, on Linux, the boot id
(``/proc/sys/kernel/random/boot_id``) and the process's start time (field 22
of ``/proc/<pid>/stat``, clock ticks since boot). A holder refreshes it every
``REFRESH_EVERY`` seconds.

Staleness (as restic does it, made exact on the same host):

- a lock not refreshed for ``STALE_AFTER`` seconds is stale, whatever its
  pid: a container's PID 1 or a reused pid never blocks backups for ever;
- on another host a younger lock is live (we cannot see its processes);
- on this host it is live only while the same process runs: another boot id
  means the process is gone; a pid that is gone, or alive with another start
  time (a reused pid), is stale. A lock written before boot id and start time
  were recorded is judged by its pid alone (and by its age).

Taking over a stale lock is a race between every process that found it.
The store has no compare-and-delete, so the right to delete one exact stale
lock is itself an object created if-absent: the *takeover claim*
``lock.takeover-<digest>-<n>``, where ``<digest>`` names the stale lock's
bytes (SHA-256) and ``n`` counts claims whose takers died. The protocol:

1. put ``lock`` if absent; on success go to 5;
2. read it; a live lock means RepositoryLocked, naming its holder;
3. put the claim ``lock.takeover-<digest>-0`` if absent. Taken by a live
   taker: wait a moment and retry from 1. Taken by a dead one (this host's
   exact check, or older than ``TAKEOVER_STALE``): try claim ``n + 1``;
4. holding the claim, re-read ``lock`` and delete it only if its bytes are
   still those judged stale (a holder that woke up and refreshed it, or
   another taker that already replaced it, is left alone); delete the claim
   (and earlier dead ones) and retry from 1;
5. read ``lock`` back: the lock is ours only if it holds our token.

Only one process can hold the claim for a given stale lock, so only one
deletes it, and nobody deletes the lock another taker put in its place: of
all the processes racing, exactly one takes the lock and every other gets
RepositoryLocked. ``drsync unlock`` removes a lock and leftover claims by
hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from drsync.errors import (
    DrsyncError,
    ObjectExists,
    ObjectNotFound,
    RepositoryLocked,
    StoreError,
)
from drsync.repo.objects import HEADER_SIZE, TYPE_LOCK, FormatError, check_header, header
from drsync.store.base import Store
from drsync.store.retry import brief

__all__ = ["LOCK_KEY", "TAKEOVER_PREFIX", "LockInfo", "RepositoryLock", "pid_alive", "read_lock",
           "remove_lock"]

log = logging.getLogger(__name__)

LOCK_KEY = "lock"
TAKEOVER_PREFIX = "lock.takeover-"
REFRESH_EVERY = 300.0
STALE_AFTER = 1800.0
# A takeover is a read and a delete: a claim this old belongs to a taker that died. Generous,
# because each request may ride out a dropped link for minutes in the retry wrapper.
TAKEOVER_STALE = 600.0
RELEASE_AFTER_FAILURE_S = 5.0  # retrying a lock's release once the store has failed
_ATTEMPTS = 6
_GENERATIONS = 8
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class LockInfo:
    host: str
    pid: int
    time: float
    token: str
    command: str
    boot_id: str | None = None
    start_time: int | None = None  # clock ticks since boot (/proc/<pid>/stat field 22)

    def describe(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self.time))
        return f"pid {self.pid} on {self.host} since {stamp} ({self.command})"

    def stale_reason(self, now: float | None = None, *,
                     max_age: float = STALE_AFTER) -> str | None:
        """Why the lock is stale, or None while its holder may still be running."""
        now = time.time() if now is None else now
        if now - self.time > max_age:
            return f"not refreshed for {(now - self.time) / 60:.0f} min"
        if self.host != socket.gethostname():
            return None
        if self.boot_id and boot_id() not in (None, self.boot_id):
            return "written before this host last booted"
        if not pid_alive(self.pid):
            return f"process {self.pid} is gone"
        started = process_start_time(self.pid)
        if self.start_time is not None and started is not None and started != self.start_time:
            return f"pid {self.pid} now belongs to another process"
        return None

    def is_stale(self, now: float | None = None, *, max_age: float = STALE_AFTER) -> bool:
        return self.stale_reason(now, max_age=max_age) is not None


def boot_id() -> str | None:
    """This boot's random id (Linux), or None where the kernel offers none."""
    try:
        with open(_BOOT_ID) as f:
            return f.read().strip() or None
    except OSError:
        return None


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot, or None if unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        # "pid (comm) state ..."; comm may hold spaces and parentheses, so split after the
        # last ")": the fields then start at field 3, and starttime is field 22.
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one of another user's counts)."""
    if pid <= 0:
        return False  # kill(0) would signal our own process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _encode(info: LockInfo) -> bytes:
    doc: dict[str, Any] = {
        "host": info.host, "pid": info.pid, "time": info.time,
        "token": info.token, "command": info.command,
    }
    if info.boot_id is not None:
        doc["boot_id"] = info.boot_id
    if info.start_time is not None:
        doc["start_time"] = info.start_time
    return header(TYPE_LOCK) + json.dumps(doc).encode()


def _decode(data: bytes) -> LockInfo:
    try:
        check_header(data, TYPE_LOCK)
        doc = json.loads(data[HEADER_SIZE:])
        boot = doc.get("boot_id")
        start = doc.get("start_time")
        return LockInfo(str(doc["host"]), int(doc["pid"]), float(doc["time"]),
                        str(doc["token"]), str(doc.get("command", "")),
                        None if boot is None else str(boot),
                        None if start is None else int(start))
    except (FormatError, ValueError, KeyError, TypeError, AttributeError, OverflowError,
            RecursionError):
        # An unreadable lock (torn by a crashed non-atomic store) blocks nobody forever.
        return LockInfo("?", 0, 0.0, "", "unreadable lock")


def _get(store: Store, key: str) -> bytes | None:
    try:
        return store.get(key)
    except ObjectNotFound:
        return None


def read_lock(store: Store) -> LockInfo | None:
    data = _get(store, LOCK_KEY)
    return None if data is None else _decode(data)


def remove_lock(store: Store) -> None:
    """Remove the lock and every takeover claim (``drsync unlock``)."""
    store.delete(LOCK_KEY)
    for info in list(store.list(TAKEOVER_PREFIX)):
        store.delete(info.key)


def this_process(command: str) -> LockInfo:
    pid = os.getpid()
    return LockInfo(socket.gethostname(), pid, time.time(), secrets.token_hex(8), command,
                    boot_id(), process_start_time(pid))


class RepositoryLock:
    """Context manager holding the writer lock, refreshed by a daemon thread."""

    def __init__(self, store: Store, command: str) -> None:
        self._store = store
        self._info = this_process(command)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        busy = "could not take the lock"
        for attempt in range(_ATTEMPTS):
            try:
                self._store.put(LOCK_KEY, _encode(self._info), if_absent=True)
            except ObjectExists:
                found = _get(self._store, LOCK_KEY)
                if found is None:
                    continue  # released in the meantime
                holder = _decode(found)
                reason = holder.stale_reason()
                if reason is None:
                    raise self._locked(holder) from None
                if not self._take_over(found):
                    busy = (f"another process is taking over the stale lock of "
                            f"{holder.describe()}")
                    time.sleep(random.uniform(0.02, 0.05) * 2 ** attempt)
                else:
                    log.info("removed the stale lock of %s: %s", holder.describe(), reason)
                continue
            self._confirm()
            self._thread = threading.Thread(target=self._refresh, name="lock-refresh",
                                            daemon=True)
            self._thread.start()
            return
        raise RepositoryLocked(f"repository {self._store.url}: {busy}")

    def _locked(self, holder: LockInfo) -> RepositoryLocked:
        return RepositoryLocked(f"repository {self._store.url} is locked by {holder.describe()}; "
                                "if that process is gone, run `drsync unlock`")

    def _confirm(self) -> None:
        """Read our lock back: a store that silently overwrote must not give two holders."""
        found = _get(self._store, LOCK_KEY)
        holder = None if found is None else _decode(found)
        if holder is None or holder.token != self._info.token:
            raise RepositoryLocked(f"repository {self._store.url}: the lock was replaced "
                                   "while being taken"
                                   + (f" (now held by {holder.describe()})" if holder else ""))

    def _take_over(self, stale: bytes) -> bool:
        """Delete the exact stale lock ``stale`` if we win its takeover claim (step 3-4)."""
        digest = hashlib.sha256(stale).hexdigest()[:32]
        claim = replace(self._info, time=time.time())
        for generation in range(_GENERATIONS):
            key = f"{TAKEOVER_PREFIX}{digest}-{generation}"
            try:
                self._store.put(key, _encode(claim), if_absent=True)
            except ObjectExists:
                other = _get(self._store, key)
                if other is not None and not _decode(other).is_stale(max_age=TAKEOVER_STALE):
                    return False
                continue
            claimed = time.monotonic()
            try:
                # Re-read under the claim: only the bytes judged stale may be deleted.
                if (_get(self._store, LOCK_KEY) == stale
                        and time.monotonic() - claimed < TAKEOVER_STALE / 2):
                    self._store.delete(LOCK_KEY)
            finally:
                for dead in range(generation + 1):
                    self._store.delete(f"{TAKEOVER_PREFIX}{digest}-{dead}")
            return True
        return False

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            try:
                current = read_lock(self._store)
                if current is None or current.token != self._info.token:
                    log.warning("the repository lock was removed by another process")
                    return  # confirm_held refuses the snapshot then
                self._info = replace(self._info, time=time.time())
                self._store.put(LOCK_KEY, _encode(self._info))
            except DrsyncError as err:
                # The store is unreachable for now: keep trying, a lock not refreshed for
                # STALE_AFTER goes stale whatever its pid.
                log.warning("cannot refresh the repository lock: %s", err)

    def confirm_held(self) -> None:
        """RepositoryLocked unless the lock is still ours: a writer about to make its work
        visible (a snapshot) must not do so after another took the lock from it (`unlock
        --force` on a live writer, a takeover after it went unrefreshed): a prune may have
        deleted what it references meanwhile."""
        current = read_lock(self._store)
        if current is None or current.token != self._info.token:
            now = f" (now held by {current.describe()})" if current is not None else ""
            raise RepositoryLocked(f"repository {self._store.url}: the writer lock was taken "
                                   f"from this {self._info.command} while it ran{now} (`drsync "
                                   "unlock --force`?): its work is not made visible; what it "
                                   "stored is reused by the next run")

    def release(self, *, wait_s: float | None = None) -> None:
        """Remove the lock if it is still ours. ``wait_s``: at most this long for a refresh
        in flight (a daemon thread; the store failed, so it may be riding out the same
        dead link)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)
        current = read_lock(self._store)
        if current is not None and current.token == self._info.token:
            self._store.delete(LOCK_KEY)

    def __enter__(self) -> RepositoryLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            self.release()
            return
        # Failing already (often because the store is unreachable): a lock that cannot be
        # removed goes stale; the original error is the one to report. When the store is
        # what failed, its retry deadline is spent already: one more short try, not a
        # second deadline (a backup on a dead link took twice retry_deadline_s to exit).
        if not isinstance(exc, StoreError):
            with contextlib.suppress(DrsyncError):
                self.release()
            return
        with contextlib.suppress(DrsyncError), brief(RELEASE_AFTER_FAILURE_S):
            self.release(wait_s=RELEASE_AFTER_FAILURE_S)
