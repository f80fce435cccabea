"""The prefetch queue as wal-fetch's lean path reads it: a rename, nothing imported.

The layout and its rules are in :mod:`drsync.wal.prefetch` (which fills the
queue) and docs/FORMAT.md §11 rule 9. This module imports only ``os``,
``sys`` and ``fcntl``, so that ``drsync.entry`` can serve a queued segment
before click, the settings or any crypto binding is loaded.
"""

from __future__ import annotations

import fcntl
import os
import sys

__all__ = ["LOCK", "QUEUE_DIR", "TMP_PREFIX", "WANTED", "is_segment_name", "locked",
           "queue_for", "take_queued"]

QUEUE_DIR = ".drsync-prefetch"
LOCK = ".lock"
WANTED = ".wanted"
TMP_PREFIX = ".tmp-"
_HEX = frozenset("0123456789ABCDEF")


def is_segment_name(name: str) -> bool:
    """A WAL segment's name (TTTTTTTTXXXXXXXXYYYYYYYY), nothing else."""
    return len(name) == 24 and _HEX.issuperset(name)


def queue_for(dest: str | os.PathLike[str]) -> str | None:
    """The queue beside restore_command's ``%p``, or None where no prefetch happens: ``%p``
    not in a directory named ``pg_wal``, or this process not that directory's owner."""
    parent = os.path.dirname(os.path.abspath(dest))
    if os.path.basename(parent) != "pg_wal":
        return None
    try:
        if os.stat(parent).st_uid != os.geteuid():
            return None
    except OSError:
        return None
    return os.path.join(parent, QUEUE_DIR)


def locked(queue: str | os.PathLike[str]) -> bool:
    """Whether a live prefetcher holds the queue's lock."""
    try:
        fd = os.open(os.path.join(queue, LOCK), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the shared lock we may just have taken
    return False


def take_queued(name: str, dest: str) -> bool:
    """Rename the queued, verified segment ``name`` over ``dest``; drop older ones.

    False (and nothing changed) when there is no queue, no live prefetcher (what
    a killed one left is never served), or no such file in it: the caller then
    fetches ``name`` as usual.
    """
    if not is_segment_name(name):
        return False
    queue = queue_for(dest)
    if queue is None or not locked(queue):
        return False
    try:
        os.rename(os.path.join(queue, name), dest)
    except OSError:
        return False
    try:
        older = [n for n in os.listdir(queue) if is_segment_name(n) and n < name]
    except OSError:
        older = []
    for old in older:
        try:
            os.unlink(os.path.join(queue, old))
        except OSError:
            continue
    print(f"drsync: wal-fetch {name}: from the prefetch queue", file=sys.stderr, flush=True)
    return True
