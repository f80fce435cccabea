"""wal-fetch's prefetch queue: the next segments, verified ahead of PostgreSQL's requests.

PostgreSQL runs restore_command once per segment and waits for each; a
``wal-fetch`` that fetches, authenticates and decompresses synchronously
makes replay wait on every one. So, as pgBackRest's asynchronous
archive-get does, a ``wal-fetch`` of segment X that had to fetch X itself
also starts (once, detached, without delaying its own exit) a *prefetcher*
that keeps the next N segments (``[restore] wal_prefetch``, default 8; 0
disables) verified and decompressed in a private queue directory, and the
next ``wal-fetch`` of a queued name just renames that file over ``%p``
(:func:`drsync.wal.queue.take_queued`, imported before anything else: no
crypto, no settings).

Where: ``<pg_wal>/.drsync-prefetch/`` beside ``%p``, so the rename never
crosses a file system. Only when ``%p`` is in a directory named ``pg_wal``
(PostgreSQL's ``pg_wal/RECOVERYXLOG``; a manual ``wal-fetch NAME FILE``
never prefetches) and this process runs as that directory's owner (as
restore_command does), so the queue belongs to the data directory's owner
(mode 0700). PostgreSQL never archives it (only segments marked ready in
``archive_status`` are) and base backups never copy it (``pg_basebackup``,
and so ``drsync backup --pg-base``, skips what is in ``pg_wal``).

The queue holds, under their own names, only segment files (24 hex digits:
never ``.history``, which can appear later, nor ``.partial`` or ``.backup``)
that were verified exactly as ``wal-fetch`` verifies (FORMAT §11: header
name, authentication, size, content id), written as ``.tmp-*`` and renamed: a
name in the queue is that object's whole content (not fsynced: only a live
prefetcher's files are served, so after a crash none is). Other files:
``.lock`` (the live prefetcher holds an exclusive flock on it, and its pid
is in it) and ``.wanted`` (the last name a ``wal-fetch`` had to fetch
itself, which re-aims a running prefetcher). ``take_queued`` serves a
file only while a prefetcher holds the lock: what a killed prefetcher left
is never used, and the next prefetcher empties the queue before it starts.

Names older than the one requested are removed (by the ``wal-fetch`` that
took one, and by the prefetcher when re-aimed, with every other timeline's);
the prefetcher exits on its own after ``IDLE_S`` seconds in which nothing
was taken, fetched or requested (recovery ended, or paused), or at once when
its directory is gone, and removes the whole queue directory as it goes; its
store requests give up after ``FETCH_DEADLINE_S``. A segment the prefetcher cannot verify is
not queued and nothing after it is fetched: PostgreSQL's own ``wal-fetch``
of it then fails with exit 126, exactly as without prefetch. Exit codes
never depend on the prefetcher.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from drsync import atomic
from drsync.wal.queue import LOCK, TMP_PREFIX, WANTED, is_segment_name, locked, queue_for

if TYPE_CHECKING:
    from drsync.repo.crypto import MasterKey
    from drsync.store.base import Store
    from drsync.wal.spool import Spool

__all__ = ["DEFAULT_PREFETCH", "FETCH_DEADLINE_S", "IDLE_S", "Prefetcher", "start_prefetcher",
           "stop_prefetcher", "successor"]

DEFAULT_PREFETCH = 8
IDLE_S = 30.0
# The prefetcher's store requests give up after this long (the settings' own deadline
# when shorter): it only saves time, and must not outlive recovery by minutes.
FETCH_DEADLINE_S = 15.0
_POLL_S = 0.02
_NOT_YET_S = 0.5  # a segment not archived yet: ask again this often


def successor(name: str, segment_size: int) -> str:
    """The segment after ``name`` on its timeline, for segments of ``segment_size`` bytes."""
    per_log = 0x1_0000_0000 // segment_size
    log, seg = int(name[8:16], 16), int(name[16:24], 16) + 1
    if seg >= per_log:
        log, seg = log + 1, 0
    return f"{name[:8]}{log:08X}{seg:08X}"


def _lock(queue: Path) -> int | None:
    """The queue's lock, held exclusively, or None when a live prefetcher holds it."""
    import fcntl

    for _ in range(5):
        with contextlib.suppress(FileExistsError):
            os.mkdir(queue, 0o700)
        try:
            fd = os.open(queue / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o600)
        except FileNotFoundError:
            continue  # an exiting prefetcher removed the directory just now
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(queue / LOCK).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # we locked a lock file an exiting prefetcher had already unlinked
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    """``data`` under ``path``'s name only once it is all written (a temporary, renamed).

    Not fsynced: a file is served only while its prefetcher lives (the lock), so
    after a crash or power loss nothing in the queue is ever used, whatever the
    disk kept of it; while it lives, readers see the page cache."""
    atomic.write_atomic(path, data, durable=False,
                        tmp=path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}"))


def _read_wanted(queue: Path) -> str | None:
    try:
        with open(queue / WANTED, "rb") as fh:
            name = fh.read(64).decode("ascii", "replace").strip()
    except OSError:
        return None
    return name if is_segment_name(name) else None


class Prefetcher:
    """The loop that keeps ``depth`` verified segments after the wanted one in ``queue``.

    ``fetch(name)`` returns the verified plaintext, None when the name is archived
    nowhere (yet), and raises for anything else (the segment is then left to
    wal-fetch). ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, queue: Path, wanted: str, segment_size: int, depth: int,
                 fetch: Callable[[str], bytes | None], *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, idle_s: float = IDLE_S) -> None:
        self.queue = queue
        self.wanted = wanted
        self.segment_size = segment_size
        self.depth = depth
        self.fetch = fetch
        self.clock = clock
        self.sleep = sleep
        self.idle_s = idle_s
        self.next = successor(wanted, segment_size)
        self.blocked: str | None = None  # a segment that failed verification
        self.fetched = 0

    def _queued(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.queue) if is_segment_name(n))
        except FileNotFoundError:
            return []

    def _drop(self, keep: Callable[[str], bool]) -> None:
        for name in self._queued():
            if not keep(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.queue / name)

    def _reaim(self, wanted: str) -> None:
        """A wal-fetch had to fetch ``wanted`` itself: follow it, drop what it passed."""
        self.wanted = wanted
        self._drop(lambda n: n[:8] == wanted[:8] and n > wanted)
        if self.next[:8] != wanted[:8] or self.next <= wanted:
            self.next = successor(wanted, self.segment_size)
        if self.blocked is not None and (self.blocked[:8] != wanted[:8]
                                         or self.blocked <= wanted):
            self.blocked = None

    def run(self) -> None:
        last_activity = self.clock()
        taken_from = set(self._queued())
        not_yet_until = 0.0
        while True:
            if not self.queue.is_dir():
                return  # removed under it (a new restore, a cleanup): nothing to serve
            now = self.clock()
            wanted = _read_wanted(self.queue)
            if wanted is not None and wanted != self.wanted:
                self._reaim(wanted)
                last_activity = now
            queued = self._queued()
            if taken_from - set(queued):
                last_activity = now  # PostgreSQL took some
            taken_from = set(queued)
            if (len(queued) < self.depth and self.blocked is None and now >= not_yet_until):
                name = self.next
                try:
                    plain = self.fetch(name)
                except Exception:
                    self.blocked = name
                    continue
                if plain is None:
                    not_yet_until = now + _NOT_YET_S
                elif len(plain) != self.segment_size:
                    self.blocked = name  # not a segment of this cluster: leave it to wal-fetch
                else:
                    _write_atomic(self.queue / name, plain)
                    self.fetched += 1
                    taken_from.add(name)
                    self.next = successor(name, self.segment_size)
                    last_activity = self.clock()
                    continue
            if self.clock() - last_activity > self.idle_s:
                return
            self.sleep(_POLL_S)


def _clear(queue: Path, *, remove: bool) -> None:
    """Remove every file of the queue but the lock (and with ``remove``, it and the
    directory too)."""
    try:
        names = os.listdir(queue)
    except FileNotFoundError:
        return
    for name in names:
        if name != LOCK or remove:
            with contextlib.suppress(OSError):
                os.unlink(queue / name)
    if remove:
        with contextlib.suppress(OSError):
            os.rmdir(queue)


def start_prefetcher(name: str, dest: str, depth: int, segment_size: int, key: MasterKey,
                     open_sources: Callable[[], tuple[Spool | None, Store | None]]) -> None:
    """After wal-fetch fetched segment ``name`` itself: aim the live prefetcher at it, or
    start one (detached; this returns at once). Never raises: prefetch only saves time.
    """
    if depth <= 0 or not is_segment_name(name):
        return
    if segment_size < 1 << 20 or segment_size > 1 << 30 or segment_size & (segment_size - 1):
        return  # not a power of two from 1 MiB to 1 GiB: not a segment size PostgreSQL uses
    where = queue_for(dest)
    if where is None:
        return
    with contextlib.suppress(OSError):
        _start(Path(where), name, depth, segment_size, key, open_sources)


def _start(queue: Path, name: str, depth: int, segment_size: int, key: MasterKey,
           open_sources: Callable[[], tuple[Spool | None, Store | None]]) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(queue, 0o700)
    _write_atomic(queue / WANTED, name.encode())
    fd = _lock(queue)
    if fd is None:
        return  # a live prefetcher: it reads .wanted
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(fd)  # the grandchild holds the lock now
        os.waitpid(pid, 0)
        return
    # The child: a new session, then a grandchild nobody waits for (PostgreSQL waits
    # for restore_command's own process only, and must not see this one's output).
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(devnull, std)
        os.close(devnull)
        _prefetch(queue, fd, name, depth, segment_size, key, open_sources)
    finally:
        os._exit(0)


def _prefetch(queue: Path, fd: int, name: str, depth: int, segment_size: int,
              key: MasterKey,
              open_sources: Callable[[], tuple[Spool | None, Store | None]]) -> None:
    import signal

    from drsync.errors import WalNotFound
    from drsync.wal.ship import fetch_verified

    # SIGTERM (stop_prefetcher, a shutdown) still removes the queue on the way out.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(0))
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _clear(queue, remove=False)  # what an earlier (killed) prefetcher left
    _write_atomic(queue / WANTED, name.encode())
    spool, store = open_sources()

    def fetch(wal: str) -> bytes | None:
        try:
            return fetch_verified(wal, key, spool=spool, store=store)[1]
        except WalNotFound:
            return None

    try:
        Prefetcher(queue, name, segment_size, depth, fetch).run()
    finally:
        _clear(queue, remove=True)
        os.close(fd)


def _lock_pid(queue: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((queue / LOCK).read_text().strip() or 0) or None
    return None


def stop_prefetcher(queue: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """End the prefetcher of ``queue`` (SIGTERM to the pid in its lock) and remove the
    queue; True when one was running. For operators and benchmarks."""
    import signal

    queue = Path(queue)
    deadline = time.monotonic() + timeout
    running = locked(queue)
    pid = _lock_pid(queue)
    # A prefetcher takes the lock first and writes its pid just after: one caught in
    # between is waited for, not left running while its queue is removed under it.
    while running and pid is None and time.monotonic() < deadline:
        time.sleep(0.005)
        running, pid = locked(queue), _lock_pid(queue)
    if running and pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        while locked(queue) and time.monotonic() < deadline:
            time.sleep(0.02)
    _clear(queue, remove=True)
    return running
