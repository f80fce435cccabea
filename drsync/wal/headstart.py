"""wal-push's head start: read and compress the WAL file while the rest of drsync imports.

A wal-push run spends about as long importing the AES and BLAKE3 bindings,
the key file code and the settings as zstd spends compressing a 16 MiB
segment at level 3, and the two need different things: zstd releases the
GIL, imports mostly hold it. So ``drsync.entry`` starts a :class:`HeadStart`
first (this module imports only ``zstandard``), then imports the rest and
opens the key on the main thread, and ``drsync.wal.push.push_file`` takes
the bytes and the compressed payload from it. Nothing here writes anything:
whether and where the segment is sealed is still decided by ``push_file``.
"""

from __future__ import annotations

import os
import threading

from drsync.repo.codec import compress

__all__ = ["HeadStart"]


class HeadStart:
    """The file at ``path``, read and compressed at ``level`` in a background thread."""

    def __init__(self, path: str, level: int) -> None:
        self.path = path
        self.level = level
        self._read = threading.Event()
        self._data: bytearray | None = None
        self._packed: tuple[int, bytes] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="wal-push-headstart",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._data = _read_whole(self.path)
        except BaseException as err:  # handed to the caller, who names the file
            self._error = err
            self._read.set()
            return
        self._read.set()
        try:
            self._packed = compress(self._data, self.level)
        except BaseException as err:
            self._error = err

    def data(self) -> bytearray:
        """The file's bytes, once read (the OSError of reading it is raised here)."""
        self._read.wait()
        if self._data is None:
            assert self._error is not None
            raise self._error
        return self._data

    def wait(self) -> None:
        """Until the thread has finished (a fork must not copy a running thread)."""
        self._thread.join()

    def compressed(self) -> tuple[int, bytes]:
        """(codec, payload) as ``drsync.repo.codec.compress`` returns them."""
        self._thread.join()
        if self._packed is None:
            assert self._error is not None
            raise self._error
        return self._packed


def _read_whole(path: str) -> bytearray:
    """One read into a buffer of the file's size: no growing, no second copy."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = os.readv(fd, [view[got:]])
            if n == 0:
                break  # the file shrank while we read: take what is there, as read() would
            got += n
        view.release()
        if got < size:
            del buf[got:]
        else:
            # It may also have grown; read() would have returned the rest too.
            rest = os.read(fd, 1 << 20)
            while rest:
                buf += rest
                rest = os.read(fd, 1 << 20)
        return buf
    finally:
        os.close(fd)
