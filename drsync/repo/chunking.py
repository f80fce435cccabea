"""Content-defined chunks of a stream, handed out without copying (FastCDC 2020).

pyfastcdc's own stream chunker hands out views into one buffer that the next
chunk overwrites, so the writer copied every chunk before a worker hashed and
compressed it: about 2.5% of a day-1 backup's CPU went to that ``memmove``.
Here the stream is read in blocks (``BLOCK`` bytes) and each block is cut with
``FastCDC.cut_buf``: every chunk is a view into its block, and only the chunk
that reaches the block's end, which the block's end may have cut short, is
copied to the front of the next block and cut again with what follows.

The cut points are those of ``FastCDC.cut_stream`` on the same stream, byte for
byte (tests/repo/test_chunking.py), so chunks made by either dedupe: FastCDC's
search only looks forward from a chunk's start, within ``max_size`` bytes, and
returns the first match, so a cut found before the block's end is where a longer
buffer would have put it; a cut that the search did not find is always at the
buffer's end or at ``max_size``, and the first of those is the one carried over.

A block is refilled only once no view into it is left: a ``bytearray`` with
exported buffers cannot be resized, which ``_unshared`` asks. A block still
shared (its last chunks are on the workers) is left alone and another one is
used, at most ``POOL`` of them kept, so that the memory they hold is faulted in
once, not once a block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

from pyfastcdc import FastCDC

__all__ = ["BLOCK", "POOL", "cut_stream"]

BLOCK = 16 << 20
POOL = 3


def _unshared(buf: bytearray) -> bool:
    """Whether no view into ``buf`` is alive (resizing a shared bytearray is refused)."""
    try:
        buf.append(0)
    except BufferError:
        return False
    buf.pop()
    return True


def _reader_into(reader: BinaryIO) -> Callable[[memoryview], int]:
    readinto = getattr(reader, "readinto", None)
    if readinto is not None:
        return lambda view: readinto(view) or 0

    def copy_into(view: memoryview) -> int:
        data = reader.read(len(view))
        view[: len(data)] = data
        return len(data)

    return copy_into


def cut_stream(chunker: FastCDC, reader: BinaryIO, block: int = BLOCK) -> Iterator[memoryview]:
    """The chunks of ``reader`` in order, each a read-only view into a block that is
    not refilled while the view lives."""
    read_into = _reader_into(reader)
    capacity = block + chunker.max_size  # a carried chunk is at most max_size bytes
    pool: list[bytearray] = []
    carried = b""
    eof = False
    while not eof:
        buf = next((b for b in pool if _unshared(b)), None)
        if buf is None:
            buf = bytearray(capacity)
            if len(pool) < POOL:
                pool.append(buf)
        view = memoryview(buf)
        view[: len(carried)] = carried
        filled = len(carried)
        while filled < capacity:
            n = read_into(view[filled:])
            if n <= 0:
                eof = True
                break
            filled += n
        if filled == 0:
            return
        data = view[:filled].toreadonly()
        del view
        start = 0
        for chunk in chunker.cut_buf(data):
            end = chunk.offset + chunk.length
            if end == filled and not eof:
                break  # maybe cut short by the block's end: cut again with more
            yield chunk.data
            start = end
        carried = bytes(data[start:filled])
        del data
