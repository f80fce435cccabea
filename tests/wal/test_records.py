"""The WAL record reader behind pitr-range's "latest", on a hand-built segment."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest

from drsync.wal.records import _EPOCH, last_commit

BLOCK = 8192
START = 0x3000000


def _record(rmid: int, info: int, prev: int, micros: int) -> bytes:
    main = struct.pack("<qI4x", micros, 0)
    body = bytes((255, len(main))) + main
    head = struct.pack("<IIQBBxxI", 24 + len(body), 7, prev, info, rmid, 0)
    record = head + body
    return record + bytes(-len(record) % 8)


def _segment(records: list[bytes], pages: int = 2) -> bytes:
    first = struct.pack("<HHIQI4xQII", 0xD110, 0x0002, 1, START, 0, 42, pages * BLOCK, BLOCK)
    data = bytearray(first + b"".join(records))
    data += bytes(pages * BLOCK - len(data))  # the second page is zeroed: not valid WAL
    return bytes(data)


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def test_last_commit_follows_the_back_links_and_stops_at_stale_records() -> None:
    t1 = datetime(2026, 11, 27, 3, 0, 0, 123456, tzinfo=UTC)
    t2 = datetime(2026, 11, 27, 3, 0, 5, tzinfo=UTC)
    stale = datetime(2027, 1, 1, tzinfo=UTC)
    a = _record(1, 0x00, 0x2FFFFD0, _micros(t1))  # commit
    lsn_a = START + 40
    b = _record(1, 0x20, lsn_a, _micros(t2))  # abort: a target time compares with it too
    lsn_b = lsn_a + len(a)
    c = _record(1, 0x00, 0x1234, _micros(stale))  # left over from a recycled segment
    end = last_commit(_segment([a, b, c]))
    assert end.commit_time == t2 and end.commit_lsn == lsn_b
    assert end.end_lsn == lsn_b + len(b)
    only_first = last_commit(_segment([a]))
    assert only_first.commit_time == t1


def test_a_segment_without_commits_and_garbage() -> None:
    insert = _record(10, 0x00, 0, 0)  # heap insert: no timestamp read
    assert last_commit(_segment([insert])).commit_time is None
    with pytest.raises(ValueError):
        last_commit(bytes(100))
    with pytest.raises(ValueError):
        last_commit(bytes(2 * BLOCK))
