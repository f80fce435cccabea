"""The writer lock: exclusive, stale locks taken over, foreign fresh locks respected."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from drsync.errors import RepositoryLocked
from drsync.repo.lock import LOCK_KEY, STALE_AFTER, LockInfo, RepositoryLock, read_lock
from drsync.repo.objects import TYPE_LOCK, header
from drsync.store import MemoryStore


def _plant(store: MemoryStore, host: str, pid: int, age: float) -> None:
    doc = {"host": host, "pid": pid, "time": time.time() - age, "token": "t", "command": "x"}
    store.put(LOCK_KEY, header(TYPE_LOCK) + json.dumps(doc).encode())


def test_second_writer_is_refused_naming_the_holder() -> None:
    store = MemoryStore("memory://r")
    with RepositoryLock(store, "backup one"), pytest.raises(
            RepositoryLocked, match=r"locked by pid \d+ on .* \(backup one\)"):
        RepositoryLock(store, "backup two").acquire()
    assert read_lock(store) is None


def test_lock_of_a_dead_process_on_this_host_is_stale_and_taken_over() -> None:
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    store = MemoryStore()
    _plant(store, socket.gethostname(), int(dead.stdout), age=5)
    with RepositoryLock(store, "next backup"):
        info = read_lock(store)
        assert info is not None and info.command == "next backup"


def test_other_hosts_lock_is_respected_until_it_ages_out() -> None:
    store = MemoryStore()
    _plant(store, "other-host", 1, age=60)
    with pytest.raises(RepositoryLocked, match="other-host"):
        RepositoryLock(store, "b").acquire()
    _plant(store, "other-host", 1, age=STALE_AFTER + 60)
    with RepositoryLock(store, "b"):
        pass


def test_unreadable_lock_is_stale() -> None:
    store = MemoryStore()
    store.put(LOCK_KEY, b"garbage")
    info = read_lock(store)
    assert isinstance(info, LockInfo) and info.is_stale()
