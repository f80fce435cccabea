"""The MariaDB/MySQL settings and grants binlog shipping depends on, each judged with one
line of advice (the same findings as ``doctor --pg``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from drsync.sources.mariadb.conninfo import MariadbConnection, parse_dsn
from drsync.sources.mariadb.tools import MariadbTools
from drsync.sources.postgres.doctor import Finding

__all__ = ["NEEDED_PRIVILEGES", "check_mariadb", "global_privileges", "judge_mariadb"]

VARIABLES = ("log_bin", "binlog_format", "server_id", "binlog_row_image", "expire_logs_days",
             "binlog_expire_logs_seconds", "max_binlog_size", "version")
MAX_BINLOG_SIZE = 256 << 20  # each binlog is sealed whole, in memory, once complete
# privilege -> the names a server may show it under (MariaDB renamed some in 10.5)
NEEDED_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "REPLICATION SLAVE": ("REPLICATION SLAVE", "REPLICATION REPLICA"),
    "REPLICATION CLIENT": ("REPLICATION CLIENT", "BINLOG MONITOR"),
    "SELECT": ("SELECT",), "SHOW VIEW": ("SHOW VIEW",), "TRIGGER": ("TRIGGER",),
    "EVENT": ("EVENT",), "LOCK TABLES": ("LOCK TABLES",), "RELOAD": ("RELOAD",),
}
_GLOBAL_GRANT = re.compile(r"^GRANT (.+?) ON \*\.\* TO ", re.I)


def global_privileges(grants: Iterable[str]) -> set[str]:
    """The privileges granted ON *.* in SHOW GRANTS lines (upper case)."""
    out: set[str] = set()
    for line in grants:
        found = _GLOBAL_GRANT.match(line.strip())
        if found:
            out |= {p.strip().upper() for p in found.group(1).split(",")}
    return out


def _retention_s(values: dict[str, str]) -> float:
    """How long the server keeps binlogs; 0: forever."""
    seconds = float(values.get("binlog_expire_logs_seconds") or 0)
    return seconds or float(values.get("expire_logs_days") or 0) * 86400


def judge_mariadb(values: dict[str, str], privileges: set[str],
                  ship_interval_s: float) -> list[Finding]:
    """Pure: variables and global privileges in, findings out."""
    out = []

    def add(name: str, value: str, ok: bool, good: str, bad: str) -> None:
        out.append(Finding(name, value, ok, good if ok else bad))

    add("log_bin", values.get("log_bin", "?"), values.get("log_bin") in ("1", "ON"),
        "changes are written to binary logs",
        "set log_bin = mariadb-bin in [mariadbd] (restart): without binlogs no change after "
        "the nightly dump can be restored")
    add("binlog_format", values.get("binlog_format", "?"), values.get("binlog_format") == "ROW",
        "row events replay exactly",
        "set binlog_format = ROW: statement events can replay differently on another host")
    add("server_id", values.get("server_id", "?"), values.get("server_id", "0") not in ("0", ""),
        "set", "set server_id to a number unique among your servers (not 0)")
    add("binlog_row_image", values.get("binlog_row_image", "?"),
        values.get("binlog_row_image", "FULL") == "FULL", "whole rows are logged",
        "set binlog_row_image = FULL: MINIMAL rows replay only onto an identical copy")
    retention = _retention_s(values)
    shown = (f"binlog_expire_logs_seconds={values.get('binlog_expire_logs_seconds', '?')} "
             f"expire_logs_days={values.get('expire_logs_days', '?')}")
    add("binlog_expire_logs_seconds", shown, retention == 0 or retention >= 2 * ship_interval_s,
        "binlogs outlive two shipping intervals" if retention else
        "binlogs are never expired (watch the disk)",
        f"set binlog_expire_logs_seconds >= {int(2 * ship_interval_s)}: the server deletes "
        f"binlogs after {int(retention)} s, sooner than two shipping intervals "
        f"({int(ship_interval_s)} s each): an outage of the receiver loses changes")
    size = int(values.get("max_binlog_size") or 0)
    add("max_binlog_size", values.get("max_binlog_size", "?"), 0 < size <= MAX_BINLOG_SIZE,
        "each binlog is sealed and shipped soon enough, in bounded memory",
        "set max_binlog_size = 64M: a binlog is sealed only once complete, whole and in "
        "memory; the 1G default holds changes back longer and needs that much memory")
    if "ALL PRIVILEGES" in privileges:
        missing: list[str] = []
    else:
        missing = [p for p, names in NEEDED_PRIVILEGES.items()
                   if not any(n in privileges for n in names)]
    add("grants", ", ".join(sorted(privileges)) or "none", not missing,
        "enough for mariadb-dump and binlog-receive",
        f"GRANT {', '.join(missing)} ON *.* TO the backup user: binlog-receive needs "
        "REPLICATION SLAVE and REPLICATION CLIENT, mariadb-dump the others")
    return out


def check_mariadb(dsn: str, *, defaults_file: str | None = None, ship_interval_s: float = 86400,
                  tools: MariadbTools | None = None) -> list[Finding]:
    tools = tools or MariadbTools()
    parsed = parse_dsn(dsn, defaults_file)
    with MariadbConnection(parsed.with_database("")) as conn:
        names = ", ".join(f"'{n}'" for n in VARIABLES)
        rows = tools.query(conn, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
        values = {row[0]: row[1] for row in rows if len(row) >= 2}
        grants = [row[0] for row in tools.query(conn, "SHOW GRANTS")]
    return judge_mariadb(values, global_privileges(grants), ship_interval_s)
