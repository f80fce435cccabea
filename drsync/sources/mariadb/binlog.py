"""Binary log files: what ``mariadb-binlog --raw`` writes, read just enough to trust it.

A binlog file is the magic ``\\xfebin`` and a sequence of events, each with a
19-byte header: timestamp (u32, seconds), type (u8), server id (u32), event
size (u32, the whole event including its header and checksum), next
position (u32), flags (u16), all little-endian. A file the server finished
ends with a ROTATE event (it went on to the next file) or a STOP event (it
shut down); the file still being written ends with neither.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from drsync.sources.mariadb.conninfo import MariadbConnection
from drsync.sources.mariadb.tools import MariadbTools

__all__ = ["BINLOG_MAGIC", "BinlogSummary", "next_binlog", "receiver_args", "server_binlogs",
           "summarize_binlog"]

BINLOG_MAGIC = b"\xfebin"
_HEADER = struct.Struct("<IBIIIH")
STOP_EVENT, ROTATE_EVENT, FORMAT_DESCRIPTION_EVENT = 3, 4, 15
# Events that record no change of data: their times say nothing about commits.
_BOOKKEEPING = {STOP_EVENT, ROTATE_EVENT, FORMAT_DESCRIPTION_EVENT, 27,  # heartbeat
                160, 161, 163, 164}  # annotate, binlog checkpoint, GTID list, encryption
_NAME = re.compile(r"^(.+)\.([0-9]+)$")


@dataclass(frozen=True)
class BinlogSummary:
    size: int
    events: int
    ends_with: str  # "rotate", "stop" or "" (still being written, or cut short)
    first_time: int  # seconds since the epoch of the first data event; 0: none
    last_time: int  # of the last data event; 0: none
    end_time: int  # of the closing ROTATE or STOP event: archived through then; 0: open

    @property
    def complete(self) -> bool:
        return self.ends_with in ("rotate", "stop")


def summarize_binlog(data: bytes) -> BinlogSummary:
    """Walk the events of one binlog file; ValueError when it is not one."""
    if data[:4] != BINLOG_MAGIC:
        raise ValueError("not a binary log (no \\xfebin magic)")
    pos, events, last_type, first, last, last_when = 4, 0, -1, 0, 0, 0
    while pos + _HEADER.size <= len(data):
        when, kind, _server, size, _next, _flags = _HEADER.unpack_from(data, pos)
        if size < _HEADER.size or pos + size > len(data):
            break  # the event being written: the file is not complete
        events += 1
        last_type, last_when = kind, when
        if kind not in _BOOKKEEPING and when:
            first = first or when
            last = when
        pos += size
    ends = ""
    if pos == len(data):
        ends = {ROTATE_EVENT: "rotate", STOP_EVENT: "stop"}.get(last_type, "")
    return BinlogSummary(len(data), events, ends, first, last, last_when if ends else 0)


def next_binlog(name: str) -> str:
    """The file the server writes after ``name`` (binlog.000009 -> binlog.000010)."""
    found = _NAME.match(name)
    if not found:
        raise ValueError(f"{name!r} is not a binlog file name")
    digits = found.group(2)
    return f"{found.group(1)}.{int(digits) + 1:0{len(digits)}d}"


def server_binlogs(tools: MariadbTools, conn: MariadbConnection) -> list[str]:
    """The binlog files the server still has, oldest first (SHOW BINARY LOGS)."""
    return [row[0] for row in tools.query(conn, "SHOW BINARY LOGS")]


def receiver_args(tools: MariadbTools, conn: MariadbConnection, first: str, staging: str,
                  server_id: int) -> list[str]:
    """mariadb-binlog copying every binlog from ``first`` on, byte for byte, into
    ``staging``, and waiting for more (as a replica with ``server_id`` would)."""
    return conn.args(tools.path("mariadb-binlog"), "--read-from-remote-server", "--raw",
                     "--stop-never", f"--stop-never-slave-server-id={server_id}",
                     f"--result-file={staging.rstrip('/')}/", first)
