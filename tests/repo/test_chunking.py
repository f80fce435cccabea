"""The zero-copy chunker cuts exactly where pyfastcdc's stream chunker does."""

from __future__ import annotations

import io
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from drsync.repo import chunking
from drsync.repo.chunking import cut_stream


class _Trickle(io.RawIOBase):
    """A reader that returns at most ``step`` bytes a call (a pipe, a slow dump)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


class _ReadOnly:
    """A reader with ``read`` only."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def read(self, n: int) -> bytes:
        return self._inner.read(n)


def _reference(chunker: FastCDC, data: bytes) -> list[bytes]:
    return [bytes(c.data) for c in chunker.cut_stream(io.BytesIO(data))]


def _sample(size: int, seed: int) -> bytes:
    """Text with repeats (cuts found) and random runs (cuts forced at max_size)."""
    rng = random.Random(seed)
    parts, total = [], 0
    while total < size:
        part = (rng.randbytes(rng.randrange(1, 9000)) if rng.random() < 0.3 else
                b"".join(b"%d,%s\n" % (rng.randrange(10**6), rng.choice([b"tax", b"koseki"]))
                         for _ in range(rng.randrange(1, 400))))
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:size]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 60_000), seed=st.integers(0, 2**16),
       block=st.sampled_from([1024, 4096, 5000, 65536]), step=st.sampled_from([1, 777, 10**9]))
def test_cuts_match_pyfastcdc_for_any_block_and_read_size(size: int, seed: int, block: int,
                                                          step: int) -> None:
    chunker = FastCDC(1024, min_size=256, max_size=4096, seed=seed)
    data = _sample(size, seed)
    got = [bytes(v) for v in cut_stream(chunker, _Trickle(data, step), block=block)]
    assert got == _reference(chunker, data)
    assert b"".join(got) == data


def test_cuts_match_at_the_default_sizes_across_blocks() -> None:
    chunker = FastCDC(1 << 20, min_size=256 << 10, max_size=4 << 20, seed=12345)
    data = _sample(9 << 20, 7) + os.urandom(10 << 20) + _sample(3 << 20, 8)
    got = [bytes(v) for v in cut_stream(chunker, io.BytesIO(data), block=5 << 20)]
    want = _reference(chunker, data)
    assert got == want
    assert len(want) > 10


def test_a_reader_with_read_only() -> None:
    chunker = FastCDC(1024, min_size=256, max_size=4096)
    data = _sample(50_000, 3)
    assert [bytes(v) for v in cut_stream(chunker, _ReadOnly(data), block=3000)] == (  # type: ignore[arg-type]
        _reference(chunker, data))


def test_views_are_read_only_and_a_block_in_use_is_not_refilled() -> None:
    """A chunk kept by a worker keeps its bytes while later blocks are read."""
    chunker = FastCDC(1024, min_size=256, max_size=4096)
    data = _sample(200_000, 5)
    kept = list(cut_stream(chunker, io.BytesIO(data), block=4096))  # every view kept alive
    assert b"".join(bytes(v) for v in kept) == data
    with pytest.raises(TypeError):
        kept[0][0] = 0


def test_blocks_are_reused_once_released(monkeypatch: pytest.MonkeyPatch) -> None:
    """Views dropped as they come (the writer's case): the pool's blocks are refilled,
    not a new block allocated each time."""
    allocated = []
    real = bytearray

    def counting(size: int) -> bytearray:
        allocated.append(size)
        return real(size)

    monkeypatch.setattr(chunking, "bytearray", counting, raising=False)
    chunker = FastCDC(1024, min_size=256, max_size=4096)
    data = _sample(400_000, 9)
    total = 0
    for view in cut_stream(chunker, io.BytesIO(data), block=8192):
        total += len(view)
        del view
    assert total == len(data)
    assert len(data) // 8192 > 40
    assert len(allocated) <= chunking.POOL + 1
