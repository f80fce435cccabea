"""Whole-or-nothing local files: the one way drsync replaces a small file of its own.

A temporary in the same directory (``.<name>.<pid>.tmp`` unless told), written whole,
fsynced, renamed over the file, then the directory fsynced: a reader sees the old
file or the new one, never part of one, and after a power loss the rename is on disk
once this returns. The temporary is created with ``mode`` (0600 unless told: state,
records and quarantined packs are nobody else's) and removed if anything fails.

Used for the agent's state and metrics, the run-record outbox, the ``dr restore``
state file, quarantined packs, the fleet page and the WAL prefetch queue. The
repository's own objects go through the stores (``drsync.store.local``), which add
their own naming and listing rules.

This module imports nothing of drsync's, so every layer can use it. Errors are
``OSError``; the caller says what the file was for.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["owner_for", "temporary_name", "write_atomic"]


def owner_for(directory: str | Path) -> tuple[int, int] | None:
    """Whom the files root makes in ``directory`` belong to: the directory's owner when it
    is another user's (a restore or check run as root in the postgres user's repository
    or catalog directory), or that user's own runs would meet root-owned 0600 files they
    cannot write or read. None: keep the writer's own (not root, a root-owned or missing
    directory)."""
    if os.geteuid() != 0:
        return None
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return None if st.st_uid == 0 else (st.st_uid, st.st_gid)


def temporary_name(path: Path, pid: int | None = None) -> Path:
    """Where ``write_atomic`` writes ``path`` before the rename."""
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.tmp")


def write_atomic(path: str | Path, data: bytes | str, *, mode: int = 0o600,
                 durable: bool = True, tmp: Path | None = None,
                 owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` whole. ``durable=False`` skips both fsyncs (a file
    that is worthless after a crash anyway); ``tmp``: the temporary's path, when its
    directory's readers must recognise temporaries by a name of their own; ``owner``:
    (uid, gid) to give the new file (a file another user's process must go on reading,
    rewritten by root)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = tmp or temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 mode)
    try:
        try:
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                os.fchown(fd, *owner)
            if mode & 0o077:  # the umask may have taken bits the caller asked for
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
