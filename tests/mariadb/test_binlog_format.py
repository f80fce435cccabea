"""Binlog names, files and retention, without a server."""

from __future__ import annotations

import io
import struct

import pytest

from drsync.repo.retention import expired_binlogs, expired_wal
from drsync.repo.wal import is_binlog_name, is_wal_name
from drsync.sources.mariadb.binlog import BINLOG_MAGIC, next_binlog, summarize_binlog
from drsync.sources.mariadb.conninfo import parse_dsn
from drsync.sources.mariadb.dump import PositionScanner


def _event(when: int, kind: int, body: bytes = b"") -> bytes:
    return struct.pack("<IBIIIH", when, kind, 1, 19 + len(body), 0, 0) + body


def test_binlog_names_are_archive_names_no_postgresql_name_has() -> None:
    for name in ("binlog.000001", "mariadb-bin.000042", "mysql_bin.1234567"):
        assert is_binlog_name(name) and is_wal_name(name)
    for name in ("000000010000000000000001", "00000002.history", "binlog.index",
                 "binlog.12", "../x.000001", "a.b.000001"):
        assert not is_binlog_name(name)
    assert next_binlog("binlog.000009") == "binlog.000010"
    assert next_binlog("binlog.999999") == "binlog.1000000"


def test_a_binlog_is_complete_only_when_it_ends_with_rotate_or_stop() -> None:
    head = BINLOG_MAGIC + _event(100, 15, b"x" * 40)  # format description
    rows = _event(105, 2, b"BEGIN") + _event(106, 30, b"row")  # query, write rows
    open_file = summarize_binlog(head + rows)
    assert not open_file.complete and open_file.end_time == 0
    assert (open_file.first_time, open_file.last_time) == (105, 106)
    rotated = summarize_binlog(head + rows + _event(110, 4, b"\0" * 8 + b"binlog.000002"))
    assert rotated.complete and rotated.ends_with == "rotate" and rotated.end_time == 110
    assert rotated.last_time == 106  # the rotate event is no change of data
    assert summarize_binlog(head + rows + _event(120, 3)).ends_with == "stop"
    cut = head + rows + _event(110, 4, b"\0" * 20)[:-3]  # the last event half-written
    assert not summarize_binlog(cut).complete
    with pytest.raises(ValueError, match="magic"):
        summarize_binlog(b"junk")


def test_binlogs_expire_before_the_earliest_kept_dump_and_never_with_wal() -> None:
    names = ["binlog.000001", "binlog.000002", "binlog.000003", "old-bin.000001",
             "000000010000000000000001"]
    assert expired_binlogs(["binlog.000003", "binlog.000002"], names) == ["binlog.000001"]
    assert expired_binlogs([], names) == []
    # WAL expiry never takes a binlog, whatever its name's length.
    long_name = "a-very-long-binlog-base-name.000001"
    assert expired_wal([("000000010000000000000005", 16 << 20)], [*names, long_name]) == [
        "000000010000000000000001"]


def test_the_scanner_finds_the_position_however_the_stream_is_cut() -> None:
    script = (b"-- MariaDB dump\n" + b"-- filler\n" * 300
              + b"-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000007', MASTER_LOG_POS=4242;\n"
              + b"INSERT INTO t VALUES (1);\n" * 5000
              + b"-- SET GLOBAL gtid_slave_pos='0-1-99';\n-- Dump completed on 2026-12-02\n")

    class Stream:
        def __init__(self, size: int) -> None:
            self.pos, self.size = 0, size

        def readinto(self, buffer: memoryview) -> int:
            chunk = script[self.pos:self.pos + min(self.size, len(buffer))]
            buffer[:len(chunk)] = chunk
            self.pos += len(chunk)
            return len(chunk)

    for size in (13, 4096, 1 << 20):
        scanner = PositionScanner(Stream(size))
        buffer = bytearray(1 << 16)
        while scanner.readinto(memoryview(buffer)):
            pass
        assert scanner.binlog == ("binlog.000007", 4242), size
        assert scanner.gtid == "0-1-99" and scanner.completed
    mysql = PositionScanner(io.BytesIO(
        b"-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000003', SOURCE_LOG_POS=157;\n"))
    while mysql.read(1 << 16):
        pass
    assert mysql.binlog == ("binlog.000003", 157) and not mysql.completed


def test_dsn_parsing_names_what_is_wrong_and_hides_the_password() -> None:
    dsn = parse_dsn("mariadb://u%40x:p%3Aw@db.example:3307/registry?socket=/run/m.sock")
    assert (dsn.user, dsn.password, dsn.host, dsn.port, dsn.database, dsn.socket) == (
        "u@x", "p:w", "db.example", 3307, "registry", "/run/m.sock")
    assert "p:w" not in dsn.shown and 'password="p:w"' in dsn.option_file_text()
    for bad, words in (("mariadb://h:port/db", "port is not a number"),
                       ("mariadb://h/a/b", "one database"),
                       ("mariadb://u:secret@h/db?sslmode=1", "unknown parameter"),
                       ("postgres://u:secret@h/db", "must be a URL like")):
        with pytest.raises(Exception, match=words) as caught:
            parse_dsn(bad)
        assert "secret" not in str(caught.value)
