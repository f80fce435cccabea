"""The last commit in a WAL segment: what recovery_target_time can actually reach.

A pure reader of PostgreSQL's WAL page and record headers (the layout of
``access/xlog_internal.h`` and ``access/xlogrecord.h``, unchanged since
PostgreSQL 10): it walks the records of one segment from its first page,
follows each record's ``xl_prev`` back-link to know where valid WAL ends
(a recycled segment holds stale pages after a ``pg_switch_wal``), and
remembers the newest transaction commit or abort timestamp, the
timestamps ``recovery_target_time`` is compared against. Nothing else of
a record is decoded, and records are not CRC-checked: this answers a
question for a report (``pitr-range``), restores never depend on it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["SegmentEnd", "last_commit"]

_PAGE = struct.Struct("<HHIQI")  # magic, info, timeline, page address, remaining length
_LONG = struct.Struct("<QII")  # system id, segment size, block size (after _PAGE + pad)
_RECORD = struct.Struct("<IIQBB")  # total length, xid, prev, info, resource manager
SHORT_HEADER = 24
LONG_HEADER = 40
RECORD_HEADER = 24
XLP_FIRST_IS_CONTRECORD = 0x0001
XLP_LONG_HEADER = 0x0002
RM_XLOG_ID = 0
RM_XACT_ID = 1
XLOG_SWITCH = 0x40
XACT_OPMASK = 0x70
XACT_ENDS = {0x00: "commit", 0x20: "abort", 0x30: "commit prepared", 0x40: "abort prepared"}
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's TimestampTz epoch


@dataclass(frozen=True)
class SegmentEnd:
    commit_time: datetime | None  # the newest commit/abort timestamp, if any
    commit_lsn: int | None
    end_lsn: int  # where the valid WAL read from this segment ends


def _align(n: int) -> int:
    return (n + 7) & ~7


def _payload(data: bytes) -> tuple[bytes, int, int, int, int]:
    """Record bytes of the segment's valid pages, page headers removed (all header sizes
    and page payloads are multiples of 8, so alignment carries over)."""
    if len(data) < LONG_HEADER:
        raise ValueError("too short for a WAL segment")
    magic, info, _tli, start, rem = _PAGE.unpack_from(data, 0)
    if not info & XLP_LONG_HEADER:
        raise ValueError("no long page header: not the start of a WAL segment")
    _sysid, _seg_size, block = _LONG.unpack_from(data, SHORT_HEADER)
    if block < 1024 or block & (block - 1) or len(data) % block:
        raise ValueError("implausible WAL page header")
    parts = [data[LONG_HEADER:block]]
    for page in range(1, len(data) // block):
        offset = page * block
        p_magic, _info, _t, addr, _rem = _PAGE.unpack_from(data, offset)
        if p_magic != magic or addr != start + offset:
            break  # stale or zeroed page: the valid WAL ended before it
        parts.append(data[offset + SHORT_HEADER:offset + block])
    skip = _align(rem) if info & XLP_FIRST_IS_CONTRECORD else 0
    return b"".join(parts), start, block, skip, rem


def last_commit(data: bytes) -> SegmentEnd:
    """The newest commit (or abort) timestamp in one WAL segment and where its WAL ends."""
    payload, start, block, pos, _rem = _payload(data)
    first = block - LONG_HEADER
    rest = block - SHORT_HEADER

    def lsn(p: int) -> int:
        if p < first:
            return start + LONG_HEADER + p
        page, within = divmod(p - first, rest)
        return start + (page + 1) * block + SHORT_HEADER + within

    prev: int | None = None
    commit_time = commit_lsn = None
    end = lsn(pos)
    unpack = _RECORD.unpack_from
    while pos + RECORD_HEADER <= len(payload):
        total, _xid, xl_prev, info, rmid = unpack(payload, pos)
        if total < RECORD_HEADER or (prev is not None and xl_prev != prev):
            break
        if pos + total > len(payload):
            break  # continues in the next segment
        here = lsn(pos)
        if rmid == RM_XACT_ID and (info & XACT_OPMASK) in XACT_ENDS:
            at = _main_data_time(payload, pos + RECORD_HEADER, pos + total)
            if at is not None:
                commit_time, commit_lsn = at, here
        prev = here
        pos += _align(total)
        end = lsn(min(pos, len(payload)))
        if rmid == RM_XLOG_ID and info & 0xF0 == XLOG_SWITCH:
            break
    return SegmentEnd(commit_time, commit_lsn, end)


def _main_data_time(payload: bytes, pos: int, end: int) -> datetime | None:
    """xact_time, the first field of a commit/abort record's main data (no block refs)."""
    while pos < end:
        block_id = payload[pos]
        if block_id == 255:  # XLR_BLOCK_ID_DATA_SHORT
            pos += 2
            break
        if block_id == 254:  # XLR_BLOCK_ID_DATA_LONG
            pos += 5
            break
        if block_id == 253:  # XLR_BLOCK_ID_ORIGIN
            pos += 3
        elif block_id == 252:  # XLR_BLOCK_ID_TOPLEVEL_XID
            pos += 5
        else:
            return None  # a block reference: not a plain commit record
    if pos + 8 > end:
        return None
    (micros,) = struct.unpack_from("<q", payload, pos)
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return None
