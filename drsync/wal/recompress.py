"""Day-time recompression of the spool: WAL sealed at zstd by wal-push, resealed with LZMA.

wal-push is on PostgreSQL's critical path, so it seals with fast zstd. On
a link-bound night the bytes on the wire decide how many towns fit, and on
measured municipal WAL LZMA (xz preset 6) gives 6.1:1 where zstd-3 gives
4.2:1: 31% fewer bytes to ship. LZMA is slow (about 2 MB/s, some 9 CPU-s
per 16 MiB segment), so it runs during the day, in the background, on
what waits in the spool for the night's wal-ship:

* at idle priority (nice 19 and the idle I/O class, ``lower_priority``),
  and within a CPU budget (``CpuBudget``: at most a fraction of one core,
  averaged over the run), so the database keeps the machine;
* durably: the new object is written to a temporary file, fsynced, and
  renamed over the old one (then the directory fsynced), so at every
  moment the segment is in the spool whole in one form or the other; a
  segment wal-ship took away meanwhile is not brought back;
* one at a time: a run holds ``<spool>/.recompress.lock`` (flock, released
  by the kernel when the process dies) and first removes the temporaries a
  killed run left;
* invisibly to readers: the clear header (name, content id, size, push
  time) is kept byte for byte, only the sealed payload changes
  (docs/FORMAT.md §11), so wal-push's "same file again" check, wal-ship's
  comparison with the store, wal-fetch, pitr-range and check read both.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from drsync.errors import IntegrityError, RepositoryLocked, StoreError
from drsync.repo.crypto import MasterKey
from drsync.repo.objects import FormatError
from drsync.repo.wal import recompress_wal
from drsync.store.local import describe_os_error, fsync_dir
from drsync.wal.spool import Spool

__all__ = ["DEFAULT_PRESET", "CpuBudget", "RecompressResult", "lower_priority",
           "recompress_spool", "replace_durably"]

# bench/wal_recompress_bench.py: preset 6 has nearly all of preset 9's ratio on WAL at
# less memory (9 MiB dictionary, segments are 16 MiB) and about the same speed.
DEFAULT_PRESET = 6


@dataclass
class RecompressResult:
    recompressed: list[str] = field(default_factory=list)
    already: int = 0  # LZMA already, or LZMA would not shrink it
    gone: int = 0  # shipped by wal-ship while we worked
    bytes_before: int = 0
    bytes_after: int = 0
    cpu_s: float = 0.0
    waited_s: float = 0.0
    duration_s: float = 0.0
    priority: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"recompressed": len(self.recompressed), "already": self.already,
                "gone": self.gone, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after,
                "saved_bytes": self.bytes_before - self.bytes_after,
                "cpu_s": round(self.cpu_s, 3), "waited_s": round(self.waited_s, 3),
                "duration_s": round(self.duration_s, 3), "priority": self.priority}


class CpuBudget:
    """At most ``fraction`` of one core on average since ``start``: ``pace()`` sleeps for
    as long as the CPU spent so far is ahead of what the wall time allows."""

    def __init__(self, fraction: float, *, cpu: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not 0 < fraction <= 1:
            raise ValueError("the CPU budget is a fraction of one core, above 0 and at most 1")
        self.fraction = fraction
        self._cpu, self._clock, self._sleep = cpu, clock, sleep
        self._cpu0, self._t0 = cpu(), clock()
        self.waited = 0.0

    def pace(self) -> None:
        used = self._cpu() - self._cpu0
        wait = used / self.fraction - (self._clock() - self._t0)
        if wait > 0:
            self._sleep(wait)
            self.waited += wait


def lower_priority() -> dict[str, Any]:
    """nice 19 and the idle I/O class for this process; what was applied."""
    applied: dict[str, Any] = {}
    try:
        os.nice(19 - os.nice(0))
        applied["nice"] = os.nice(0)
    except OSError:
        applied["nice"] = None
    ionice = shutil.which("ionice")
    if ionice is not None:
        done = subprocess.run([ionice, "-c", "3", "-p", str(os.getpid())],
                              capture_output=True, timeout=10)
        applied["io_class"] = "idle" if done.returncode == 0 else None
    else:
        applied["io_class"] = None
    return applied


def replace_durably(spool: Spool, name: str, data: bytes) -> bool:
    """Put ``data`` in place of the spooled ``name``: temporary file, fsync, rename, dir
    fsync. False (nothing left behind) when ``name`` is no longer there."""
    tmp = spool.path(f".tmp-recompress-{secrets.token_hex(8)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if not spool.exists(name):
            tmp.unlink()
            return False
        os.replace(tmp, spool.path(name))
        fsync_dir(spool.dir)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"spool {spool.dir}: replacing {name}: "
                         f"{describe_os_error(err)}") from None
    return True


def recompress_spool(spool: Spool, key: MasterKey, *, preset: int = DEFAULT_PRESET,
                     budget: CpuBudget | None = None,
                     progress: Callable[[str, int], None] | None = None) -> RecompressResult:
    """Reseal every spooled WAL object not yet LZMA, oldest name first. A spool that does
    not exist has nothing to recompress (it is never created here)."""
    result = RecompressResult()
    if not spool.dir.is_dir():
        return result
    with _exclusive(spool):
        _recompress(spool, key, preset, budget, progress, result)
    return result


@contextlib.contextmanager
def _exclusive(spool: Spool) -> Iterator[None]:
    try:
        fd = os.open(spool.path(".recompress.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                     0o600)
    except OSError as err:
        raise StoreError(f"spool {spool.dir}: .recompress.lock: "
                         f"{describe_os_error(err)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RepositoryLocked(f"spool {spool.dir}: another wal-recompress is running "
                                   f"(it holds .recompress.lock)") from None
        for stale in spool.dir.glob(".tmp-recompress-*"):
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


def _recompress(spool: Spool, key: MasterKey, preset: int, budget: CpuBudget | None,
                progress: Callable[[str, int], None] | None,
                result: RecompressResult) -> None:
    started, cpu0 = time.monotonic(), time.process_time()
    for name in spool.names():
        try:
            data = spool.read(name)
        except FileNotFoundError:
            result.gone += 1
            continue
        try:
            new = recompress_wal(key, data, name, preset)
        except FormatError as err:
            raise IntegrityError(f"spool {spool.dir}: {name}: {err}") from None
        if new is None:
            result.already += 1
        elif replace_durably(spool, name, new):
            result.recompressed.append(name)
            result.bytes_before += len(data)
            result.bytes_after += len(new)
        else:
            result.gone += 1
        if progress is not None:
            progress(name, len(data))
        if budget is not None:
            budget.pace()
    result.cpu_s = time.process_time() - cpu0
    result.waited_s = budget.waited if budget is not None else 0.0
    result.duration_s = time.monotonic() - started
