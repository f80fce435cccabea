"""Logical backups of MariaDB and MySQL: mariadb-dump, streamed; and the binlog position.

``mariadb-dump --single-transaction --master-data=2 --routines --triggers
--events --hex-blob`` writes one SQL script to standard output, streamed
into the repository as ``database.sql`` with no copy on disk. With
``--single-transaction`` every InnoDB table is read in one consistent
snapshot; ``--master-data=2`` writes, as a comment near the top, the binary
log file and position that snapshot is consistent with (MariaDB takes it
from ``binlog_snapshot_file``/``_position`` without locking the server).
The stream is scanned for that comment as it passes, and the position goes
into the snapshot's spec: the point a point-in-time restore replays the
archived binlogs from. The end of the stream must carry mariadb-dump's
``-- Dump completed`` line; the GTID position (``gtid_slave_pos``) written
just before it is recorded too.

Scope: one database (``database``: the DSN's, ``mariadb://.../registry``, or a
list of one, ``--mariadb-database registry``) is dumped without ``CREATE
DATABASE`` so it can be restored under another name; a list of several
(``databases``) or every database (``all``: neither) with ``--databases`` /
``--all-databases``. Snapshots written before a list of one counted as one
database hold scope ``databases`` with one name: :func:`single_database`
reads both as one database.

Non-transactional tables (MyISAM, Aria, MEMORY...) are not covered by the
snapshot: each is reported as a problem that does not fail the run (the
CLI prints it as a warning) and listed in the spec's ``non_transactional``.

Row counts and checksums: as the dump starts, another session takes
``START TRANSACTION WITH CONSISTENT SNAPSHOT`` and counts and checksums
every table (drsync.sources.mariadb.checksum) while the dump streams; when
its snapshot's binlog position is the dump's (no transaction committed
between the two snapshots' starts), they are the dump's exactly and go into
the spec's ``tables`` (``{"db.table": {"rows": n, "checksum": c}}``);
otherwise none are recorded. It costs one more scan of every table (and an
MD5 a row) on the server, beside the dump rather than after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from drsync.errors import SourceError, UsageError
from drsync.sources.base import SourceBase, SourceItem, SourceProblem
from drsync.sources.mariadb.checksum import (
    CANONICAL_SESSION,
    list_tables,
    parse_counts,
    table_sql,
)
from drsync.sources.mariadb.conninfo import MariadbConnection, parse_dsn
from drsync.sources.mariadb.tools import MariadbTools, Query, quote_literal
from drsync.sources.postgres.process import ProcessReader
from drsync.tree import Entry

__all__ = ["DUMP_FLAGS", "DUMP_NAME", "SYSTEM_SCHEMAS", "MariadbDumpSource", "PositionScanner",
           "single_database"]

DUMP_NAME = "database.sql"
DUMP_FLAGS = ("--single-transaction", "--master-data=2", "--routines", "--triggers",
              "--events", "--hex-blob")
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
TRANSACTIONAL_ENGINES = ("InnoDB", "XtraDB", "RocksDB", "TokuDB")

# MariaDB's comment, and MySQL 8's (CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE=...).
_CHANGE_MASTER = re.compile(
    rb"^-- CHANGE (?:MASTER|REPLICATION SOURCE) TO (?:MASTER|SOURCE)_LOG_FILE='([^']+)', "
    rb"(?:MASTER|SOURCE)_LOG_POS=(\d+);", re.M)
_GTID = re.compile(rb"^-- SET GLOBAL gtid_slave_pos='([^']*)';", re.M)
_COMPLETED = re.compile(rb"^-- Dump completed", re.M)
_HEAD = 64 << 10  # the position comment comes within the first few KiB
_TAIL = 16 << 10


def single_database(spec: dict[str, Any]) -> str | None:
    """The one database a dump's spec holds, or None for several or all. Scope
    ``databases`` with one name (written before a list of one was dumped as one
    database) is one database too: only its script still switches to it by name."""
    databases = spec.get("databases") or []
    if spec.get("scope") in ("database", "databases") and len(databases) == 1:
        return str(databases[0])
    return None


class PositionScanner:
    """Pass a dump through, noting the binlog position at its head and the GTID and
    completion line at its tail (a bounded window of each: memory stays flat)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._head = b""
        self._tail = b""
        self.binlog: tuple[str, int] | None = None

    def _note(self, data: bytes | memoryview) -> None:
        if self.binlog is None and len(self._head) < _HEAD:
            self._head += bytes(data[:_HEAD])
            found = _CHANGE_MASTER.search(self._head)
            if found:
                self.binlog = (found.group(1).decode(), int(found.group(2)))
        self._tail = (self._tail + bytes(data[-_TAIL:]))[-_TAIL:]

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._inner.read(size)
        self._note(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        n = int(self._inner.readinto(buffer))
        self._note(memoryview(buffer)[:n])  # no copy of the block: only its ends are kept
        return n

    @property
    def gtid(self) -> str | None:
        found = _GTID.search(self._tail)
        return found.group(1).decode() if found else None

    @property
    def completed(self) -> bool:
        return _COMPLETED.search(self._tail) is not None

    def __enter__(self) -> PositionScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


class MariadbDumpSource(SourceBase):
    """One stream, ``database.sql``; the spec records where the binlog stood."""

    kind = "mariadb_dump"

    def __init__(self, dsn: str, *, databases: list[str] | None = None,
                 defaults_file: str | None = None, tools: MariadbTools | None = None) -> None:
        super().__init__()
        self._dsn = parse_dsn(dsn, defaults_file)
        if databases and self._dsn.database:
            raise UsageError("name the databases either in the DSN or with --mariadb-database"
                             ", not both")
        self._databases = list(databases or [])
        self._tools = tools or MariadbTools()

    def describe(self) -> str:
        return f"mariadb_dump:{self._dsn.shown}"

    def items(self) -> Iterator[SourceItem]:
        conn = self._stack.enter_context(MariadbConnection(self._dsn))
        self._spec.update(self._server(conn))
        scope, targets = self._scope(conn)
        self._spec.update({"scope": scope, "databases": targets, "flags": list(DUMP_FLAGS)})
        self._warn_non_transactional(conn, targets)
        args = conn.args(self._tools.path("mariadb-dump"), *DUMP_FLAGS)
        if scope == "database":
            args += ["--", targets[0]]
        elif scope == "databases":
            args += ["--databases", "--", *targets]
        else:
            args.append("--all-databases")
        counts = self._start_counts(conn, targets)
        try:
            scanner = PositionScanner(ProcessReader(args, "mariadb-dump"))
            yield SourceItem(Entry(DUMP_NAME, "stream", 0o600),
                             lambda: scanner,  # type: ignore[arg-type,return-value]
                             "mariadb-dump")
            if scanner.binlog is None:
                raise SourceError("mariadb-dump wrote no binlog position (is log_bin on?)")
            if not scanner.completed:
                raise SourceError("mariadb-dump's output ends before '-- Dump completed'")
            self._spec.update({"binlog_file": scanner.binlog[0],
                               "binlog_position": scanner.binlog[1],
                               "gtid_position": scanner.gtid})
            self._spec["tables"] = self._counts(counts, scanner.binlog)
        finally:
            if counts is not None:
                counts.cancel()  # the dump failed: the scan is of no use (done: a no-op)

    def _server(self, conn: MariadbConnection) -> dict[str, Any]:
        row = self._tools.query(conn, "SELECT VERSION(), @@server_id, @@log_bin, "
                                "@@binlog_format, DATE_FORMAT(UTC_TIMESTAMP(6), "
                                "'%Y-%m-%dT%H:%i:%s.%fZ'), DATE_FORMAT(NOW(6), "
                                "'%Y-%m-%d %H:%i:%s'), @@system_time_zone, @@time_zone")[0]
        version, server_id, log_bin, binlog_format, at, local, system_tz, tz = row
        if log_bin != "1":
            raise SourceError(f"MariaDB ({self._dsn.shown}): binary logging is off (log_bin): "
                              "a dump without a binlog position cannot be rolled forward")
        return {"dsn": self._dsn.shown, "server_version": version, "server_id": int(server_id),
                "binlog_format": binlog_format, "consistent_at": at,
                "server_time": local, "time_zone": tz if tz != "SYSTEM" else system_tz}

    def _scope(self, conn: MariadbConnection) -> tuple[str, list[str]]:
        if self._dsn.database:
            return "database", [self._dsn.database]
        listed = list(dict.fromkeys(self._databases))  # a name given twice is one
        if len(listed) == 1:
            return "database", listed  # restorable under another name, like the DSN's
        if listed:
            return "databases", listed
        rows = self._tools.query(conn, "SELECT schema_name FROM information_schema.schemata "
                                 "ORDER BY schema_name")
        return "all", [r[0] for r in rows if r[0] not in SYSTEM_SCHEMAS[1:]]

    def _warn_non_transactional(self, conn: MariadbConnection, targets: list[str]) -> None:
        user = [t for t in targets if t not in SYSTEM_SCHEMAS]
        if not user:
            self._spec["non_transactional"] = []
            return
        rows = self._tools.query(
            conn, "SELECT table_schema, table_name, engine FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema IN ("
            + ", ".join(quote_literal(t) for t in user) + ") AND engine NOT IN ("
            + ", ".join(quote_literal(e) for e in TRANSACTIONAL_ENGINES)
            + ") ORDER BY 1, 2")
        found = []
        for schema, table, engine in rows:
            found.append(f"{schema}.{table}")
            self.problems.append(SourceProblem(
                f"{schema}.{table}", f"{engine} table is not transactional: the dump is not "
                "consistent for it (convert it to InnoDB)", partial=False))
        self._spec["non_transactional"] = found

    def _start_counts(self, conn: MariadbConnection, targets: list[str]) -> Query | None:
        """Every table's rows counted and checksummed, in a snapshot of its own started
        beside the dump's (one scan a table on the server while drsync compresses the
        dump, not after it)."""
        user = [t for t in targets if t not in SYSTEM_SCHEMAS]
        tables = list_tables(self._tools, conn, user)
        if not tables:
            return None
        sql = [CANONICAL_SESSION, "START TRANSACTION WITH CONSISTENT SNAPSHOT",
               "SHOW STATUS LIKE 'binlog_snapshot_%'"]
        sql += [table_sql(s, t, columns, f"{s}.{t}") for s, t, columns in tables]
        return self._tools.start_query(conn, "; ".join([*sql, "COMMIT"]))

    def _counts(self, counts: Query | None,
                position: tuple[str, int]) -> dict[str, dict[str, int]]:
        """The counts, if their snapshot is the dump's: both at the same binlog position
        (no transaction committed between the two snapshots' starts); else none."""
        if counts is None:
            return {}
        rows = counts.rows(timeout=24 * 3600)
        status = {r[0]: r[1] for r in rows[:2]}
        if (status.get("Binlog_snapshot_file"), status.get("Binlog_snapshot_position")) != (
                position[0], str(position[1])):
            return {}  # a commit came between the two snapshots: not the dump's counts
        return parse_counts(rows[2:])
