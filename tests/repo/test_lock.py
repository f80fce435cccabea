"""The writer lock: exclusive, stale locks taken over, foreign fresh locks respected."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drsync.errors import RepositoryLocked
from drsync.repo.lock import (
    LOCK_KEY,
    STALE_AFTER,
    TAKEOVER_PREFIX,
    LockInfo,
    RepositoryLock,
    boot_id,
    process_start_time,
    read_lock,
)
from drsync.repo.objects import TYPE_LOCK, header
from drsync.store import LocalStore, MemoryStore
from drsync.store.base import ObjectInfo, Store


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


# -- exact same-host staleness: boot id, start time, age -----------------------------------


def _plant_doc(store: Store, **fields: object) -> None:
    doc: dict[str, object] = {"host": socket.gethostname(), "pid": os.getpid(),
                              "time": time.time() - 5, "token": "t", "command": "x",
                              "boot_id": boot_id(), "start_time": process_start_time(os.getpid())}
    doc.update(fields)
    store.put(LOCK_KEY, header(TYPE_LOCK) + json.dumps(doc).encode())


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _takes_over(store: Store) -> bool:
    try:
        with RepositoryLock(store, "next backup"):
            info = read_lock(store)
            assert info is not None and info.command == "next backup"
    except RepositoryLocked:
        return False
    assert read_lock(store) is None
    return True


def test_lock_records_boot_id_and_start_time_and_is_live_for_its_process() -> None:
    store = MemoryStore()
    with RepositoryLock(store, "backup one"):
        info = read_lock(store)
        assert info is not None
        assert info.boot_id == boot_id() and info.boot_id
        assert info.start_time == process_start_time(os.getpid()) and info.start_time
        assert info.stale_reason() is None
        with pytest.raises(RepositoryLocked, match="backup one"):
            RepositoryLock(store, "backup two").acquire()


@pytest.mark.parametrize("pid", [1, os.getppid()], ids=["pid-1", "parent"])
def test_a_reused_pid_is_stale(pid: int) -> None:
    started = process_start_time(pid)
    assert started is not None  # a live process whose start time we can read
    store = MemoryStore()
    _plant_doc(store, pid=pid, start_time=started)
    assert not _takes_over(store)  # the very process that wrote it: live
    _plant_doc(store, pid=pid, start_time=started + 1)
    assert _takes_over(store)
    _plant_doc(store, pid=pid, start_time=started + 1)
    assert read_lock(store).stale_reason() == f"pid {pid} now belongs to another process"  # type: ignore[union-attr]


def test_a_lock_from_another_boot_is_stale() -> None:
    store = MemoryStore()
    _plant_doc(store, boot_id="00000000-0000-0000-0000-000000000000")
    assert _takes_over(store)
    _plant_doc(store, boot_id="00000000-0000-0000-0000-000000000000")
    assert read_lock(store).stale_reason() == "written before this host last booted"  # type: ignore[union-attr]


def test_a_lock_not_refreshed_for_30_minutes_is_stale_even_with_a_live_pid() -> None:
    store = MemoryStore()
    _plant_doc(store, time=time.time() - STALE_AFTER - 60)
    assert _takes_over(store)
    _plant_doc(store, time=time.time() - STALE_AFTER - 60)
    assert read_lock(store).stale_reason() == "not refreshed for 31 min"  # type: ignore[union-attr]


def test_old_format_lock_is_judged_by_pid_and_age() -> None:
    store = MemoryStore()
    old = {"host": socket.gethostname(), "pid": 1, "time": time.time() - 5, "token": "t",
           "command": "x"}
    store.put(LOCK_KEY, header(TYPE_LOCK) + json.dumps(old).encode())
    assert not _takes_over(store)  # pid 1 is alive and nothing says it was reused
    old["time"] = time.time() - STALE_AFTER - 1
    store.put(LOCK_KEY, header(TYPE_LOCK) + json.dumps(old).encode())
    assert _takes_over(store)


# -- the takeover race ----------------------------------------------------------------------


class _Jittery(Store):
    """A store whose every request takes a random few hundred microseconds, as a network's
    would, so that racing threads interleave between a read and the delete that follows."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url

    def _wait(self) -> None:
        time.sleep(random.uniform(0, 0.002))

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        self._wait()
        self.inner.put(key, data, if_absent=if_absent)
        self._wait()

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self._wait()
        data = self.inner.get(key, offset, length)
        self._wait()
        return data

    def stat(self, key: str) -> ObjectInfo:
        self._wait()
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._wait()
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._wait()
        self.inner.delete(key)
        self._wait()


def _race(store: Store, inner: Store, racers: int) -> list[str]:
    """``racers`` threads take the lock at once; the winner holds it until all have tried."""
    start = threading.Barrier(racers)
    done = threading.Barrier(racers)
    outcomes: list[str] = []

    def race(n: int) -> None:
        lock = RepositoryLock(store, f"racer {n}")
        start.wait()
        try:
            lock.acquire()
        except RepositoryLocked:
            outcomes.append("locked")
            done.wait()
            return
        outcomes.append("won")
        done.wait()  # hold the lock until every racer has tried
        holder = read_lock(inner)
        outcomes.append("held" if holder and holder.command == f"racer {n}" else "lost")
        lock.release()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


@pytest.mark.parametrize("backend", ["memory", "local"])
def test_racing_takers_of_one_stale_lock_exactly_one_wins(backend: str, tmp_path: Path) -> None:
    inner: Store = MemoryStore() if backend == "memory" else LocalStore(tmp_path / "repo")
    store = _Jittery(inner)
    dead = _dead_pid()
    for iteration in range(60):
        _plant_doc(inner, pid=dead, start_time=None, token=f"stale{iteration}")
        outcomes = _race(store, inner, racers=3)
        assert outcomes == ["held", "locked", "locked", "won"], (iteration, outcomes)
        assert read_lock(inner) is None
        assert list(inner.list(TAKEOVER_PREFIX)) == []  # no claim left behind
