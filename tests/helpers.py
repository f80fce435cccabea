"""Helpers shared by tests that need something from the machine."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine that lacks it; fail under CI, where everything runs."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


@contextmanager
def mounted(options: list[str], target: Path, what: str) -> Iterator[Path]:
    """``mount OPTIONS TARGET`` for the duration (needs root)."""
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        unavailable(f"cannot mount {what} (needs root): {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def resident_bytes(path: Path) -> int:
    """How many bytes of ``path`` are in the page cache (Linux ``mincore`` on a private
    mapping the test never touches)."""
    import ctypes
    import mmap

    size = path.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        view = ctypes.c_char.from_buffer(mm)
        try:
            if libc.mincore(ctypes.c_void_p(ctypes.addressof(view)), size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del view
    return sum(v & 1 for v in vec) * mmap.PAGESIZE


def can_drop_cached_pages(directory: Path) -> bool:
    """Whether the file system of ``directory`` lets clean pages leave the page cache
    (tmpfs keeps them: they are the file)."""
    probe = directory / ".drop-probe"
    with open(probe, "wb") as fh:
        fh.write(b"\0" * (1 << 20))
        fh.flush()
        os.fsync(fh.fileno())
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    try:
        return resident_bytes(probe) < (1 << 19)
    finally:
        probe.unlink()
