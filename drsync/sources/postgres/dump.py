"""Logical backups: pg_dump in custom format, uncompressed, streamed; pg_restore back.

Why custom format with ``-Z0``: it streams to standard output (the
directory format needs a whole copy on disk first), it is pg_restore's own
format (selective and parallel restore), and left uncompressed its table
data is byte-identical night after night where rows did not change, so
drsync's content-defined chunks deduplicate it and zstd compresses it once.
A compressed dump would change everywhere after the first changed row.
Parallel restore (``--jobs``) needs a seekable file: the dump is restored
to a temporary file first only when more than one job is asked for.

Consistency: drsync opens its own session, starts a repeatable-read
transaction, exports its snapshot and records ``now()`` and the WAL
position in it; pg_dump runs with ``--snapshot``, so the dump is exactly
the database as of that recorded moment.

Validation data: in that same transaction, while pg_dump runs, the session
counts the rows of every table it may read and sums a hash of their text
(``tables`` in the snapshot's spec, ``"schema.table": {"rows": n,
"checksum": s}``; see TABLE_COUNTS_SQL), so they are those of the dump
exactly; a drill (drsync.drill) compares a restore with them. It costs one
scan per table (and an md5 per row), concurrent with the dump.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from drsync.errors import SourceError, UsageError
from drsync.sources.base import SourceItem, last_line
from drsync.sources.postgres.process import ProcessReader, spawn, stderr_text
from drsync.sources.postgres.tools import (
    PgConnection,
    PgTools,
    dsn_dbname,
    dsn_with_dbname,
    quote_ident,
    quote_literal,
    redact,
)
from drsync.tree import Entry

__all__ = ["GLOBALS_NAME", "LOGICAL_DUMP_NAME", "TABLE_COUNTS_SQL", "count_tables",
           "parse_table_counts",
           "pg_dump_source", "pg_restore_stream", "prepare_database"]

LOGICAL_DUMP_NAME = "database.dump"
GLOBALS_NAME = "globals.sql"

_SNAPSHOT_SQL = (
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"
    "SELECT pg_export_snapshot(), to_char(now() AT TIME ZONE 'UTC',"
    " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,"
    " current_setting('server_version'), current_setting('server_version_num'),"
    " current_database(), (SELECT system_identifier FROM pg_control_system());\n"
)

# Row text is rendered the same way whatever the session's or server's defaults, so the
# checksum of the dump's session and of a drill's session on another server agree.
_CANONICAL_SESSION = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';"
    " SET extra_float_digits = 1; SET bytea_output = 'hex';\n"
)
# One row per table the session may read: marker, "schema.table", row count, checksum;
# then an end marker, so the reader knows where the answer stops. The checksum is the sum
# of the first 60 bits of md5(row text) over the rows: order-independent (a restore
# loads rows in any order, and a sum does not care), one scan (the count's own),
# md5 is the same function on every server version (hashtext is internal and has
# changed), and a row lost, added or changed in any column changes it. Not a defence
# against tampering (the repository's AEAD is): a check that the rows came back.
TABLE_COUNTS_SQL = _CANONICAL_SESSION + (
    "SELECT 'drsync-table', n.nspname || '.' || c.relname, x.c, x.s"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
    " LATERAL (SELECT (xpath('/row/c/text()', r))[1]::text AS c,"
    " (xpath('/row/s/text()', r))[1]::text AS s FROM query_to_xml(format("
    "'SELECT count(*) AS c, coalesce(sum((''x'' || left(md5(t::text), 15))::bit(60)"
    "::bigint), 0) AS s FROM %I.%I t', n.nspname, c.relname), false, true, '') r) x"
    " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
    " AND has_table_privilege(c.oid, 'SELECT') ORDER BY 2;\n"
    "SELECT 'drsync-end';\n"
)


def parse_table_counts(lines: Iterable[str]) -> dict[str, dict[str, int]]:
    """The ``tables`` of a spec from the lines psql printed for TABLE_COUNTS_SQL:
    ``{"schema.table": {"rows": n, "checksum": s}}``."""
    counts: dict[str, dict[str, int]] = {}
    for line in lines:
        line = line.rstrip("\n")
        if line == "drsync-end":
            break
        marker, _, rest = line.partition("|")
        fields = rest.rsplit("|", 2)
        if marker == "drsync-table" and len(fields) == 3 and fields[0] \
                and fields[1].isdigit() and fields[2].lstrip("-").isdigit():
            counts[fields[0]] = {"rows": int(fields[1]), "checksum": int(fields[2])}
    return counts


def count_tables(dsn: str, tools: PgTools | None = None) -> dict[str, dict[str, int]]:
    """TABLE_COUNTS_SQL in a session of its own on ``dsn`` (a drill's restored database):
    the same counts and checksums a dump records."""
    tools = tools or PgTools()
    conn = PgConnection.of(dsn)
    try:
        done = subprocess.run(tools.psql_args(conn), input=TABLE_COUNTS_SQL,
                              capture_output=True, text=True, timeout=3600, env=conn.env())
    except OSError as err:
        raise SourceError(f"cannot run psql: {err.strerror}") from None
    if done.returncode != 0:
        raise SourceError(f"PostgreSQL ({conn.shown}): {last_line(done.stderr)}")
    return parse_table_counts(done.stdout.splitlines())


@contextmanager
def pg_dump_source(dsn: str, spec: dict[str, Any], *, with_globals: bool = False,
                   tools: PgTools | None = None) -> Iterator[Iterator[SourceItem]]:
    """Items: ``globals.sql`` (roles, tablespaces) when asked, then ``database.dump``.

    ``spec`` receives what the snapshot records: server version, database,
    and the moment (and LSN) the dump is consistent at.
    """
    tools = tools or PgTools()
    conn = PgConnection.of(dsn)
    session = subprocess.Popen(tools.psql_args(conn), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=conn.env())
    assert session.stdin is not None and session.stdout is not None
    try:
        session.stdin.write(_SNAPSHOT_SQL)
        session.stdin.flush()
        line = session.stdout.readline().rstrip("\n")
        if not line:
            session.stdin.close()
            err = session.stderr.read() if session.stderr else ""
            raise SourceError(f"PostgreSQL ({conn.shown}): {last_line(err)}")
        snap, at, lsn, version, version_num, database, sysid = line.split("|")
        spec.update({"dsn": conn.shown, "format": "custom", "compression": 0,
                     "server_version": version, "server_version_num": int(version_num),
                     "database": database, "system_identifier": sysid,
                     "consistent_at": at, "consistent_lsn": lsn,
                     "globals": with_globals})
        session.stdin.write(TABLE_COUNTS_SQL)
        session.stdin.flush()
        yield _counted_items(_items(tools, conn, snap, with_globals), session.stdout, spec)
    finally:
        try:
            if not session.stdin.closed:
                session.stdin.write("COMMIT;\n")
                session.stdin.close()
            session.wait(timeout=30)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            session.kill()
            session.wait()


def _counted_items(items: Iterator[SourceItem], answer: IO[str],
                   spec: dict[str, Any]) -> Iterator[SourceItem]:
    """The items, then (once the dump was read) the table counts into ``spec``."""
    yield from items
    spec["tables"] = parse_table_counts(iter(answer.readline, ""))


def _items(tools: PgTools, conn: PgConnection, snapshot: str,
           with_globals: bool) -> Iterator[SourceItem]:
    if with_globals:
        args = [tools.path("pg_dumpall"), "--globals-only", "-d", conn.dsn]
        yield SourceItem(Entry(GLOBALS_NAME, "stream", 0o600),
                         lambda: ProcessReader(args, "pg_dumpall --globals-only", conn.env()),  # type: ignore[arg-type,return-value]
                         "pg_dumpall --globals-only")
    args = [tools.path("pg_dump"), "-Fc", "-Z0", f"--snapshot={snapshot}", "-d", conn.dsn]
    yield SourceItem(Entry(LOGICAL_DUMP_NAME, "stream", 0o600),
                     lambda: ProcessReader(args, "pg_dump", conn.env()),  # type: ignore[arg-type,return-value]
                     "pg_dump")


MAINTENANCE_DATABASES = ("postgres", "template1")

# What a database holds beyond what CREATE DATABASE from template0 gives it.
_USER_OBJECTS_SQL = """
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%')
     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
     + (SELECT count(*) FROM pg_namespace
        WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public')
          AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%')
     + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
"""


def prepare_database(dsn: str, *, clean: bool = False,
                     tools: PgTools | None = None) -> dict[str, Any]:
    """Make the database ``dsn`` names ready for a restore: create it if it does not exist.

    Created from template0 (nothing a dump could collide with) by the DSN's
    own user, who therefore owns it, over a connection to a maintenance
    database (``postgres``, else ``template1``) on the same server with the
    DSN's other parameters. An existing database must hold no user objects,
    unless ``clean`` (pg_restore then drops the dump's objects first).
    """
    tools = tools or PgTools()
    dbname = dsn_dbname(dsn)
    if not dbname:
        raise UsageError(f"the DSN {redact(dsn)!r} names no database (add dbname=...)")
    exists, maintenance, error = None, None, ""
    for candidate in MAINTENANCE_DATABASES:
        other = dsn_with_dbname(dsn, candidate)
        try:
            rows = tools.query(other, "SELECT count(*) FROM pg_database WHERE datname = "
                               + quote_literal(dbname))
        except SourceError as err:
            error = str(err)
            continue
        exists, maintenance = rows[0][0] != "0", other
        break
    if exists is False:
        assert maintenance is not None
        tools.query(maintenance, f"CREATE DATABASE {quote_ident(dbname)} TEMPLATE template0")
        return {"database": dbname, "created": True}
    try:
        # Exists (or the maintenance databases are closed to this user: try it directly).
        objects = int(tools.query(dsn, _USER_OBJECTS_SQL)[0][0])
    except SourceError:
        if exists is None:
            raise SourceError(error) from None
        raise
    if objects and not clean:
        raise UsageError(f"database {dbname!r} already exists and is not empty ({objects} "
                         "objects): restore into a new database, or add --clean to drop "
                         "and recreate the dump's objects")
    return {"database": dbname, "created": False}


def pg_restore_stream(dsn: str, blocks: Iterable[bytes], *, jobs: int = 1,
                      no_owner: bool = False, clean: bool = False,
                      work_dir: str | None = None, tools: PgTools | None = None) -> str:
    """Feed a custom-format dump to pg_restore; return its stderr (warnings)."""
    tools = tools or PgTools()
    conn = PgConnection.of(dsn)
    args = [tools.path("pg_restore"), "--exit-on-error", "-d", conn.dsn]
    if no_owner:
        args += ["--no-owner", "--no-privileges"]
    if clean:
        args += ["--clean", "--if-exists"]
    if jobs > 1:
        # Parallel restore seeks in the archive: it must be a file.
        fd, path = tempfile.mkstemp(prefix=".drsync-restore-", suffix=".dump", dir=work_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                for block in blocks:
                    fh.write(block)
            return _run_restore([*args, "-j", str(jobs), path], None, conn)
        finally:
            os.unlink(path)
    return _run_restore(args, blocks, conn)


def _run_restore(args: list[str], blocks: Iterable[bytes] | None, conn: PgConnection) -> str:
    proc, err = spawn(args, stdin=subprocess.PIPE if blocks is not None else subprocess.DEVNULL,
                      env=conn.env())
    try:
        if blocks is not None:
            assert proc.stdin is not None
            try:
                for block in blocks:
                    proc.stdin.write(block)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # pg_restore stopped early: its exit code and stderr say why
        assert proc.stdout is not None
        proc.stdout.read()
        code = proc.wait()
        text = stderr_text(err)
        if code != 0:
            raise SourceError(f"pg_restore failed (exit {code}): {last_line(text)}")
        return text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()


def apply_globals(dsn: str, blocks: Iterable[bytes], tools: PgTools | None = None) -> int:
    """Run a globals script with psql; return how many statements failed (e.g. the
    roles that already exist on the new server)."""
    tools = tools or PgTools()
    script = b"".join(blocks)
    conn = PgConnection.of(dsn)
    done = subprocess.run([tools.path("psql"), "-X", "-q", "-d", conn.dsn], input=script,
                          capture_output=True, timeout=600, env=conn.env())
    return done.stderr.count(b"ERROR:")
