"""Finding PostgreSQL's programs, asking the server small questions, WAL naming."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from drsync.errors import SourceError, UsageError
from drsync.sources.base import last_line
from drsync.sources.postgres.conninfo import PgConnection, conninfo_pairs, is_conninfo, redact

__all__ = ["PgConnection", "PgTools", "RecoveryTarget", "dsn_dbname", "dsn_with_dbname",
           "lsn_to_int", "quote_ident", "quote_literal", "redact", "segment_name"]


def lsn_to_int(lsn: str) -> int:
    high, _, low = lsn.partition("/")
    try:
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise UsageError(f"{lsn!r} is not an LSN (like 0/16B3748)") from None


def segment_name(timeline: int, lsn: int, segment_size: int = 16 << 20) -> str:
    """The WAL file holding byte ``lsn`` on ``timeline``."""
    segno = lsn // segment_size
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


_URI = re.compile(r"^postgres(?:ql)?://")


def dsn_dbname(dsn: str) -> str | None:
    """The database a DSN names (a URI, key=value pairs, or a bare name), if it names one."""
    if _URI.match(dsn):
        from urllib.parse import parse_qs, unquote, urlsplit

        parts = urlsplit(dsn)
        query = parse_qs(parts.query).get("dbname")
        return query[-1] if query else (unquote(parts.path.lstrip("/")) or None)
    if not is_conninfo(dsn):
        return dsn or None
    names = [value for key, value in conninfo_pairs(dsn) if key == "dbname"]
    return names[-1] if names else None


def dsn_with_dbname(dsn: str, dbname: str) -> str:
    """The same connection parameters, another database (libpq: the last dbname wins)."""
    if _URI.match(dsn):
        from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

        parts = urlsplit(dsn)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "dbname"])
        return urlunsplit(parts._replace(path="/" + quote(dbname, safe=""), query=query))
    quoted = "'" + dbname.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if "=" not in dsn:
        return f"dbname={quoted}"
    return f"{dsn} dbname={quoted}"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class RecoveryTarget:
    """Where replay stops: a time, an LSN, or the end of the archived WAL ("latest")."""

    time: str | None = None
    lsn: str | None = None

    def settings(self) -> dict[str, str]:
        if self.time:
            return {"recovery_target_time": self.time, "recovery_target_action": "promote"}
        if self.lsn:
            lsn_to_int(self.lsn)
            return {"recovery_target_lsn": self.lsn, "recovery_target_action": "promote"}
        return {}

    def describe(self) -> str:
        return self.time or self.lsn or "latest"


class PgTools:
    """PostgreSQL's programs: ``bindir`` (the resolved ``pg_bindir`` setting, from
    DRSYNC_PG_BINDIR or the config), then PATH, then Debian's newest version."""

    def __init__(self, bindir: str | None = None) -> None:
        self.bindir = bindir or None

    def path(self, name: str) -> str:
        if self.bindir:
            return os.path.join(self.bindir, name)
        found = shutil.which(name)
        if found:
            return found
        for cand in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                           key=lambda p: int(re.sub(r"\D", "", p.split("/")[4]) or 0),
                           reverse=True):
            return cand
        raise SourceError(f"{name} not found: install the PostgreSQL client programs or set "
                          "DRSYNC_PG_BINDIR (or pg_bindir in the config)")

    def psql_args(self, conn: PgConnection) -> list[str]:
        return [self.path("psql"), "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1", "-d", conn.dsn]

    def query(self, dsn: str, sql: str) -> list[list[str]]:
        """Rows of one query, each a list of text fields (psql unaligned, '|' separated)."""
        conn = PgConnection.of(dsn)
        try:
            done = subprocess.run([*self.psql_args(conn), "-F", "\x1f", "-c", sql],
                                  capture_output=True, text=True, timeout=120, env=conn.env())
        except OSError as err:
            raise SourceError(f"cannot run psql: {err.strerror}") from None
        if done.returncode != 0:
            raise SourceError(f"PostgreSQL ({conn.shown}): {last_line(done.stderr)}")
        return [line.split("\x1f") for line in done.stdout.splitlines() if line]

    def server_info(self, dsn: str) -> dict[str, object]:
        row = self.query(dsn, (
            "SELECT current_setting('server_version'), current_setting('server_version_num'),"
            " current_database(), (SELECT system_identifier FROM pg_control_system()),"
            " current_setting('wal_segment_size'), current_setting('data_checksums'),"
            " current_setting('block_size')"))[0]
        return {"server_version": row[0], "server_version_num": int(row[1]), "database": row[2],
                "system_identifier": row[3], "wal_segment_size": _size(row[4]),
                "data_checksums": row[5] == "on", "block_size": int(row[6])}


def _size(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*(kB|MB|GB)?", text.strip())
    if not match:
        return int(text)
    return int(match.group(1)) * {None: 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[
        match.group(2)]


