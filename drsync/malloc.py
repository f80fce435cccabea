"""Memory handed back to the OS: large buffers served by their own mappings.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB),
after which the 16 MiB packs (and the largest chunks) come from the threads' heap
arenas and their memory stays with the process. Measured on a 1 GB backup (peak
RSS, wall time): threshold left dynamic 165-179 MiB, 3.5 s; fixed at 16 MiB
134-138 MiB, 3.6 s; at 4 MiB 120-124 MiB, 3.3-3.6 s; at 1 MiB 114-116 MiB but
3.8-5.1 s, every average-sized chunk then paying for a fresh mapping's page
faults. 4 MiB, the chunker's maximum, keeps chunks on the heap and packs off it.

glibc also gives every thread that allocates its own arena (up to eight per
core), and a block freed in one arena serves only that arena: a restore's
32 KiB blobs, allocated by fetch threads and freed by the writer, left 15-45
MiB free but resident across them. Two arenas (``MAX_ARENAS``; the reader now
also sets the threshold): restore of a 393 MB data directory 127 -> 115 MiB
peak RSS, of a 1 GB file 131-147 -> 101 MiB, same CPU (1.6 s); a base backup
is unchanged (66 MiB with 1, 2 or 8 arenas), its packs are files now.

Setting the threshold also fixes glibc's trim threshold at its 128 KiB default:
each time the top of a heap was freed (the chunks of a backup come and go
there) it went back to the OS, and the next chunks faulted it in again,
40,000-150,000 page faults a 1 GB backup. ``TRIM_THRESHOLD`` keeps 32 MiB:
about 20,000 faults, 0.1-0.3 s less system time and 5-9 MiB more peak RSS
(92-97 -> 98-101 MiB), wall 0-5% less on this 2-core machine.

The pipelines that move data (the writer, the reader, prune) call
``return_large_buffers_to_the_os`` once before they start their threads;
importing ctypes costs a few milliseconds, so commands that move no data never
pay it.

The cyclic garbage collector waits for start-up. Importing the CLI, and for an
S3 repository botocore and its service model, creates a few hundred thousand
objects, and the collector walked them again and again as they came (15% of the
samples of a small restore from S3). ``defer_cyclic_gc`` (the console entry
point, before click) turns it off; ``resume_cyclic_gc`` (``open_store``, once
the store's client exists) freezes what start-up made, so that later collections
skip it, and turns it back on; so does a timer after ``GC_DEFERRAL`` seconds
whatever the command does, and a forked child (the resident pusher, the WAL
prefetcher) at once. Measured 2026-12-02, medians of 9: a 1 MiB restore from S3
(moto) 0.408 -> 0.352 s, a tiny local backup 0.21 -> 0.19 s.
"""

from __future__ import annotations

import os
import sys

__all__ = ["GC_DEFERRAL", "MAX_ARENAS", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "defer_cyclic_gc",
           "resume_cyclic_gc", "return_large_buffers_to_the_os"]

MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 32 << 20
MAX_ARENAS = 2
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_done = False
GC_DEFERRAL = 1.0  # seconds: the longest a process runs without the cyclic collector
_gc_deferred = False


def defer_cyclic_gc(seconds: float = GC_DEFERRAL) -> None:
    """Turn the cyclic collector off while the process starts (see the module's text).
    For the console entry point only: a library caller's process is not ours to tune."""
    import gc
    import threading

    global _gc_deferred
    if not gc.isenabled():
        return
    gc.disable()
    _gc_deferred = True
    os.register_at_fork(after_in_child=resume_cyclic_gc)  # the timer does not survive a fork
    timer = threading.Timer(seconds, resume_cyclic_gc)
    timer.daemon = True
    timer.start()


def resume_cyclic_gc() -> None:
    """Freeze the objects start-up made and turn the collector back on, once; a no-op
    when it was not deferred."""
    global _gc_deferred
    if not _gc_deferred:
        return
    _gc_deferred = False
    import gc

    gc.freeze()
    gc.enable()


def return_large_buffers_to_the_os() -> None:
    """Serve every allocation of ``MMAP_THRESHOLD`` or more with its own mmap, unmapped
    when freed (setting the threshold also turns glibc's dynamic adjustment off), and
    share ``MAX_ARENAS`` arenas among all threads, and keep ``TRIM_THRESHOLD`` bytes
    freed at a heap's top; an explicit ``MALLOC_ARENA_MAX`` or ``MALLOC_TRIM_THRESHOLD_``
    in the environment wins. Once per process, before the threads start; nothing to
    do elsewhere than Linux (musl's mallopt is a no-op)."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return
    _done = True
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the interpreter's own libc; no library search
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(_M_ARENA_MAX, MAX_ARENAS)
