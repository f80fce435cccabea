"""The writer lock: one backup at a time per repository.

The lock is the object ``lock``, created with put-if-absent (atomic on every
backend), holding host, pid, time and a random token. A holder refreshes it
every few minutes. A lock is stale when its process is gone (same host) or
it has not been refreshed for ``STALE_AFTER`` seconds (another host); a
stale lock is removed and acquisition retried. ``drsync unlock`` removes a
lock by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from drsync.errors import DrsyncError, ObjectExists, ObjectNotFound, RepositoryLocked
from drsync.repo.objects import HEADER_SIZE, TYPE_LOCK, FormatError, check_header, header
from drsync.store.base import Store

__all__ = ["LOCK_KEY", "LockInfo", "RepositoryLock", "read_lock"]

LOCK_KEY = "lock"
REFRESH_EVERY = 300.0
STALE_AFTER = 1800.0


@dataclass(frozen=True)
class LockInfo:
    host: str
    pid: int
    time: float
    token: str
    command: str

    def describe(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self.time))
        return f"pid {self.pid} on {self.host} since {stamp} ({self.command})"

    def is_stale(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if self.host == socket.gethostname():
            return not _pid_alive(self.pid)
        return now - self.time > STALE_AFTER


def _pid_alive(pid: int) -> bool:
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
    return header(TYPE_LOCK) + json.dumps(doc).encode()


def read_lock(store: Store) -> LockInfo | None:
    try:
        data = store.get(LOCK_KEY)
    except ObjectNotFound:
        return None
    try:
        check_header(data, TYPE_LOCK)
        doc = json.loads(data[HEADER_SIZE:])
        return LockInfo(str(doc["host"]), int(doc["pid"]), float(doc["time"]),
                        str(doc["token"]), str(doc.get("command", "")))
    except (FormatError, ValueError, KeyError, TypeError, OverflowError, RecursionError):
        # An unreadable lock (torn by a crashed non-atomic store) blocks nobody forever.
        return LockInfo("?", 0, 0.0, "", "unreadable lock")


class RepositoryLock:
    """Context manager holding the writer lock, refreshed by a daemon thread."""

    def __init__(self, store: Store, command: str) -> None:
        self._store = store
        self._info = LockInfo(socket.gethostname(), os.getpid(), time.time(),
                              secrets.token_hex(8), command)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        for _attempt in range(3):
            try:
                self._store.put(LOCK_KEY, _encode(self._info), if_absent=True)
                break
            except ObjectExists:
                holder = read_lock(self._store)
                if holder is not None and not holder.is_stale():
                    raise RepositoryLocked(
                        f"repository {self._store.url} is locked by {holder.describe()}; "
                        "if that process is gone, run `drsync unlock`"
                    ) from None
                self._store.delete(LOCK_KEY)
        else:
            raise RepositoryLocked(f"repository {self._store.url}: could not take the lock")
        self._thread = threading.Thread(target=self._refresh, name="lock-refresh", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            current = read_lock(self._store)
            if current is None or current.token != self._info.token:
                return  # someone removed our lock; the snapshot write will still be safe
            self._info = LockInfo(self._info.host, self._info.pid, time.time(),
                                  self._info.token, self._info.command)
            self._store.put(LOCK_KEY, _encode(self._info))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
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
        # removed goes stale; the original error is the one to report.
        with contextlib.suppress(DrsyncError):
            self.release()
