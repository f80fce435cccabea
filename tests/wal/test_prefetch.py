"""wal-fetch's prefetch queue without a server: what is queued, what is served, what never is.

Segments are 1 MiB (PostgreSQL's smallest --wal-segsize), pushed and shipped by the
installed executable; ``wal-fetch`` writes into a directory named ``pg_wal``, as
restore_command does, so the prefetcher runs for real (forked, detached).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drsync.entry import _UseClick, _wal_fetch_shape
from drsync.testing import make_repository
from drsync.wal.prefetch import Prefetcher, stop_prefetcher, successor
from drsync.wal.queue import LOCK, QUEUE_DIR, WANTED, locked, take_queued

SEG = 1 << 20


def name(n: int, timeline: int = 1) -> str:
    return f"{timeline:08X}{n // 4096:08X}{n % 4096:08X}"  # 4096 segments of 1 MiB a log


def wait_for(what: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


class Archive:
    """A repository holding segments 1..count (distinct content), and a pg_wal to fetch into."""

    def __init__(self, exe: str, base: Path, count: int, depth: int) -> None:
        self.exe = exe
        self.base = base
        make_repository(str(base / "repo"), "pw", base / "agent.key")
        (base / "drsync.toml").write_text(f"[restore]\nwal_prefetch = {depth}\n")
        self.env = {**os.environ, "DRSYNC_REPO": str(base / "repo"),
                    "DRSYNC_KEY_FILE": str(base / "agent.key"),
                    "DRSYNC_SPOOL": str(base / "spool"),
                    "DRSYNC_CONFIG": str(base / "drsync.toml")}
        self.pg_wal = base / "data" / "pg_wal"
        self.pg_wal.mkdir(parents=True)
        self.queue = self.pg_wal / QUEUE_DIR
        self.content: dict[str, bytes] = {}
        src = base / "src"
        src.mkdir()
        for n in range(1, count + 1):
            data = (n.to_bytes(4, "little") * (SEG // 8)) + os.urandom(SEG // 2)
            (src / name(n)).write_bytes(data)
            self.content[name(n)] = data
            assert self.run("wal-push", str(src / name(n))).returncode == 0
        assert self.run("wal-ship").returncode == 0

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.exe, *args], env=self.env, capture_output=True, text=True,
                              timeout=120, cwd=self.base / "data")

    def fetch(self, wal: str) -> subprocess.CompletedProcess[str]:
        return self.run("wal-fetch", wal, "pg_wal/RECOVERYXLOG")

    def fetched(self) -> bytes:
        return (self.pg_wal / "RECOVERYXLOG").read_bytes()

    def queued(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.queue) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def prefetcher_pid(self) -> int:
        """The live prefetcher's pid, once it has written it: it takes the lock first and
        writes its pid into the lock file just after, so a test that saw the lock held
        can still find the file empty (CI did once)."""
        wait_for(lambda: (self.queue / LOCK).read_text().strip() != "")
        return int((self.queue / LOCK).read_text().strip())


@pytest.fixture
def archive(drsync_bin: str, tmp_path: Path) -> Iterator[Callable[..., Archive]]:
    made: list[Archive] = []

    def make(count: int = 10, depth: int = 3) -> Archive:
        made.append(Archive(drsync_bin, tmp_path, count, depth))
        return made[-1]

    yield make
    for a in made:
        stop_prefetcher(a.queue)


def test_segments_come_from_the_queue_byte_for_byte_and_the_queue_goes_away(
        archive: Callable[..., Archive]) -> None:
    a = archive(count=10, depth=3)
    first = a.fetch(name(1))
    assert first.returncode == 0 and a.fetched() == a.content[name(1)]
    assert "prefetch queue" not in first.stderr
    hits = 0
    for n in range(2, 11):
        wait_for(lambda n=n: name(n) in a.queued())  # type: ignore[misc]
        assert len(a.queued()) <= 3
        done = a.fetch(name(n))
        assert done.returncode == 0, done.stderr
        assert a.fetched() == a.content[name(n)]
        hits += f"wal-fetch {name(n)}: from the prefetch queue" in done.stderr
        assert all(q > name(n) for q in a.queued())  # nothing older is kept
    assert hits == 9
    # The end of the archive: exit 1, silently, as without prefetch.
    end = a.fetch(name(11))
    assert (end.returncode, end.stderr) == (1, "")
    assert locked(a.queue)
    assert stop_prefetcher(a.queue) is True
    assert not a.queue.exists()


def test_a_corrupted_object_is_refused_with_126_and_never_queued(
        archive: Callable[..., Archive]) -> None:
    a = archive(count=7, depth=8)
    obj = a.base / "repo" / "wal" / name(4)
    damaged = bytearray(obj.read_bytes())
    damaged[len(damaged) // 2] ^= 0x40
    obj.write_bytes(bytes(damaged))
    assert a.fetch(name(1)).returncode == 0
    wait_for(lambda: a.queued() == [name(2), name(3)])
    for n in (2, 3):
        done = a.fetch(name(n))
        assert done.returncode == 0 and "prefetch queue" in done.stderr
    before = a.fetched()
    bad = a.fetch(name(4))
    assert bad.returncode == 126
    line, = bad.stderr.strip().splitlines()
    assert f"wal/{name(4)}" in line and "authentication failed" in line
    assert a.fetched() == before  # %p untouched
    assert a.queued() == []  # neither it nor anything after it was queued
    assert locked(a.queue)


def test_what_a_killed_prefetcher_left_is_never_served(
        archive: Callable[..., Archive]) -> None:
    a = archive(count=8, depth=3)
    assert a.fetch(name(1)).returncode == 0
    wait_for(lambda: a.queued() == [name(2), name(3), name(4)])
    os.kill(a.prefetcher_pid(), signal.SIGKILL)
    wait_for(lambda: not locked(a.queue))
    # Complete, verified files are there, but no live prefetcher vouches for them.
    assert take_queued(name(2), str(a.pg_wal / "RECOVERYXLOG")) is False
    assert (a.queue / name(2)).exists()
    done = a.fetch(name(2))
    assert done.returncode == 0 and "prefetch queue" not in done.stderr
    assert a.fetched() == a.content[name(2)]
    # The new prefetcher started from scratch after 2 and fills the queue again.
    wait_for(lambda: a.queued() == [name(3), name(4), name(5)])
    assert locked(a.queue)
    done = a.fetch(name(3))
    assert done.returncode == 0 and "prefetch queue" in done.stderr
    assert a.fetched() == a.content[name(3)]


def test_prefetch_zero_fetches_nothing_ahead(archive: Callable[..., Archive]) -> None:
    a = archive(count=3, depth=0)
    assert a.fetch(name(1)).returncode == 0
    assert not a.queue.exists()


def test_a_destination_outside_pg_wal_never_prefetches(archive: Callable[..., Archive]
                                                       ) -> None:
    a = archive(count=3, depth=3)
    done = a.run("wal-fetch", name(1), str(a.base / "manual-copy"))
    assert done.returncode == 0
    assert (a.base / "manual-copy").read_bytes() == a.content[name(1)]
    assert not (a.base / QUEUE_DIR).exists() and not a.queue.exists()


# -- the loop, on a virtual clock ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_the_prefetcher_follows_a_new_timeline_and_exits_when_idle(tmp_path: Path) -> None:
    queue = tmp_path / "pg_wal" / QUEUE_DIR
    queue.mkdir(parents=True)
    clock = Clock()
    asked: list[str] = []
    archived = {name(n) for n in range(1, 6)} | {name(n, 2) for n in range(3, 9)}

    def fetch(wal: str) -> bytes | None:
        asked.append(wal)
        return bytes(SEG) if wal in archived else None

    p = Prefetcher(queue, name(1), SEG, 2, fetch, clock=clock, sleep=clock.sleep, idle_s=5)
    p.run()
    assert asked == [name(2), name(3)]  # two deep, then idle until it gave up
    assert sorted(os.listdir(queue)) == [name(2), name(3)]
    # PostgreSQL switched to timeline 2: the wal-fetch of 000000020000000000000003 had
    # to fetch it itself and re-aims the prefetcher through .wanted.
    (queue / WANTED).write_text(name(3, 2))
    clock.now = 0.0
    asked.clear()
    p.run()
    assert asked[:2] == [name(4, 2), name(5, 2)]
    assert sorted(os.listdir(queue)) == sorted([WANTED, name(4, 2), name(5, 2)])
    assert clock.now > 5  # it left on its own once nothing was taken


def test_the_prefetcher_stops_at_a_segment_it_cannot_verify(tmp_path: Path) -> None:
    queue = tmp_path / "pg_wal" / QUEUE_DIR
    queue.mkdir(parents=True)
    clock = Clock()
    asked: list[str] = []

    def fetch(wal: str) -> bytes | None:
        asked.append(wal)
        if wal == name(3):
            raise ValueError("damaged")
        return bytes(SEG)

    Prefetcher(queue, name(1), SEG, 8, fetch, clock=clock, sleep=clock.sleep,
               idle_s=1).run()
    assert asked == [name(2), name(3)]
    assert os.listdir(queue) == [name(2)]


def test_successor_crosses_the_log_boundary() -> None:
    assert successor("0000000100000000000000FE", 16 << 20) == "0000000100000000000000FF"
    assert successor("0000000100000000000000FF", 16 << 20) == "000000010000000100000000"
    assert successor("000000020000000300000003", 1 << 30) == "000000020000000400000000"


def test_the_click_free_path_takes_only_the_plain_restore_command_shape() -> None:
    dest = "pg_wal/RECOVERYXLOG"
    assert _wal_fetch_shape(["--config", "/c", "--repo=/r", "-r", "/r2", "--key-file", "/k",
                             "wal-fetch", "--spool", "/s", name(1), dest]) == (
        {"repo": "/r2", "key_file": "/k"}, "/c", "/s", name(1), dest)
    # The subcommand's --config wins over the global one, as in click.
    assert _wal_fetch_shape(["--config", "/g", "wal-fetch", "--config=/c", name(1), dest])[1] \
        == "/c"
    for args in (["--help", "wal-fetch", name(1), dest],
                 ["--repo", "wal-fetch", name(1), dest],
                 ["wal-fetch", name(1)],
                 ["wal-fetch", "--json", name(1), dest],
                 ["--repo", "-x", "wal-fetch", name(1), dest]):
        with pytest.raises(_UseClick):
            _wal_fetch_shape(args)


def test_both_front_doors_answer_alike(archive: Callable[..., Archive]) -> None:
    import sys

    a = archive(count=3, depth=0)
    obj = a.base / "repo" / "wal" / name(3)
    damaged = bytearray(obj.read_bytes())
    damaged[-40] ^= 1
    obj.write_bytes(bytes(damaged))
    click = [sys.executable, "-c", "import sys; from drsync.cli import main; sys.exit(main())"]
    for wal, code in ((name(1), 0), (name(9), 1), ("00000002.history", 1), (name(3), 126)):
        fast = a.fetch(wal)
        slow = subprocess.run([*click, "wal-fetch", wal, "pg_wal/RECOVERYXLOG"], env=a.env,
                              capture_output=True, text=True, timeout=120,
                              cwd=a.base / "data")
        assert (fast.returncode, fast.stderr) == (slow.returncode, slow.stderr) \
            == (code, fast.stderr), (wal, fast.stderr, slow.stderr)
        assert (code == 126) == bool(fast.stderr)
        # main() exits with the code itself, for callers that ignore its return (-m drsync).
        bare = subprocess.run([sys.executable, "-c", "from drsync.entry import main; main()",
                               "wal-fetch", wal, "pg_wal/RECOVERYXLOG"], env=a.env,
                              capture_output=True, text=True, timeout=120, cwd=a.base / "data")
        assert (bare.returncode, bare.stderr) == (code, fast.stderr)


def test_only_a_complete_file_under_its_own_name_is_served(tmp_path: Path) -> None:
    from drsync.wal.prefetch import _lock

    pg_wal = tmp_path / "pg_wal"
    queue = pg_wal / QUEUE_DIR
    pg_wal.mkdir()
    fd = _lock(queue)  # this test plays the live prefetcher
    assert fd is not None
    try:
        dest = str(pg_wal / "RECOVERYXLOG")
        (queue / f".tmp-{name(5)}-123").write_bytes(b"half")  # a write cut short
        assert take_queued(name(5), dest) is False
        (queue / "00000002.history").write_bytes(b"1\t0/3000000\tno recovery target\n")
        assert take_queued("00000002.history", dest) is False
        (queue / name(5)).write_bytes(b"whole")
        (queue / name(4)).write_bytes(b"older")
        assert take_queued(name(5), dest) is True
        assert Path(dest).read_bytes() == b"whole"
        assert not (queue / name(4)).exists()  # older than the one asked for: dropped
    finally:
        os.close(fd)
    assert take_queued(name(6), dest) is False


def test_the_prefetcher_leaves_when_its_directory_is_removed(tmp_path: Path) -> None:
    import shutil

    queue = tmp_path / "pg_wal" / QUEUE_DIR
    queue.mkdir(parents=True)
    clock = Clock()

    def fetch(wal: str) -> bytes | None:
        shutil.rmtree(queue)  # a cleanup, or a new restore into this directory
        return None

    Prefetcher(queue, name(1), SEG, 2, fetch, clock=clock, sleep=clock.sleep,
               idle_s=3600).run()
    assert clock.now < 1


def test_test_cleanup_finds_a_prefetcher_by_its_data_directory(
        archive: Callable[..., Archive]) -> None:
    """PostgreSQL runs ``wal-fetch %f pg_wal/RECOVERYXLOG`` in the data directory, so a
    prefetcher's command line and environment need not name that directory; the cleanup
    every test and throwaway cluster runs (drsync.testing.stop_leftover_processes) finds
    it by its working directory, so no prefetcher outlives its test."""
    from drsync.testing import stop_leftover_processes

    a = archive(count=4, depth=2)
    data = str(a.base / "data")
    assert data not in " ".join(a.env.values())  # only the working directory names it
    done = a.fetch(name(1))
    assert done.returncode == 0, done.stderr
    wait_for(lambda: locked(a.queue))
    pid = a.prefetcher_pid()
    stop_leftover_processes(data)
    wait_for(lambda: _gone(pid), timeout=10)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_stop_waits_for_the_pid_of_a_prefetcher_caught_between_lock_and_pid(
        tmp_path: Path) -> None:
    """A prefetcher takes its lock and writes its pid just after; stop_prefetcher called
    in between must still end it, not remove the queue under a live process."""
    queue = tmp_path / "pg_wal" / QUEUE_DIR
    queue.mkdir(parents=True)
    late = ("import fcntl, os, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
            f"fd = os.open({str(queue / LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "time.sleep(0.4)\n"
            "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
            "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", late])
    try:
        wait_for(lambda: locked(queue))
        assert (queue / LOCK).read_text() == ""  # caught in the window
        assert stop_prefetcher(queue, timeout=10) is True
        assert child.wait(timeout=5) == 0  # ended by its SIGTERM, not left running
        assert not queue.exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
