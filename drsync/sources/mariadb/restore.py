"""Loading a dump into a server, and replaying binlogs into it, with the server's programs.

``mariadb`` reads the script (a restored ``database.sql``, or what
``mariadb-binlog`` makes of one binlog file) on standard input; any error
stops it (no ``--force``), and its last error line becomes the SourceError.

A ``--databases`` dump of one database (scope ``databases`` with one name,
written before a list of one was dumped as one database) creates and
switches to that database by name; :func:`without_database_switch` drops
those lines from the stream so it loads into the database ``mariadb`` is
given, as a one-database dump does.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from drsync.errors import SourceError, UsageError
from drsync.sources.base import last_line
from drsync.sources.mariadb.conninfo import MariadbConnection
from drsync.sources.mariadb.dump import SYSTEM_SCHEMAS
from drsync.sources.mariadb.tools import MariadbTools, quote_ident, quote_literal

__all__ = ["ReplayRange", "load_script", "prepare_databases", "replay_binlog",
           "without_database_switch"]

_COPY = 1 << 20
_HOLD = 4096  # a line start held back to the next block while it may be one to drop
_SWITCH_STARTS = (b"CREATE DATABASE ", b"USE ")


def _text(err: IO[bytes]) -> str:
    err.seek(0)
    return err.read().decode(errors="replace")


def _objects(tools: MariadbTools, conn: MariadbConnection, database: str) -> int | None:
    """How many tables, views, routines and events ``database`` holds; None if it does not
    exist."""
    lit = quote_literal(database)
    rows = tools.query(conn, f"SELECT COUNT(*) FROM information_schema.schemata WHERE "
                       f"schema_name = {lit}; SELECT (SELECT COUNT(*) FROM "
                       f"information_schema.tables WHERE table_schema = {lit}) + (SELECT "
                       f"COUNT(*) FROM information_schema.routines WHERE routine_schema = "
                       f"{lit}) + (SELECT COUNT(*) FROM information_schema.events WHERE "
                       f"event_schema = {lit})")
    return None if rows[0][0] == "0" else int(rows[1][0])


def prepare_databases(tools: MariadbTools, conn: MariadbConnection, databases: list[str], *,
                      create: bool, clean: bool) -> list[str]:
    """Make each database ready to load: missing ones are created when ``create`` (a
    one-database dump has no CREATE DATABASE); an existing one must be empty unless
    ``clean``, which drops and recreates it. Returns the databases created. Every
    database is checked before any is touched."""
    state: dict[str, int | None] = {db: _objects(tools, conn, db) for db in databases
                                    if db not in SYSTEM_SCHEMAS}
    busy = {db: n for db, n in state.items() if n}
    if busy and not clean:
        db, n = next(iter(busy.items()))
        raise UsageError(f"database {db!r} already exists and is not empty ({n} objects): "
                         "restore into a new database, or add --clean to drop and recreate it")
    created = []
    for db, objects in state.items():
        if objects is not None and clean:
            tools.query(conn, f"DROP DATABASE {quote_ident(db)}")
            objects = None
        if objects is None and create:
            tools.query(conn, f"CREATE DATABASE {quote_ident(db)}")
            created.append(db)
    return created


def without_database_switch(blocks: Iterable[bytes], database: str) -> Iterator[bytes]:
    """The script without mariadb-dump's ``CREATE DATABASE ... `database` ...;`` and
    ``USE `database`;`` lines (whole lines only, however the blocks cut them; every
    other byte passes as it came)."""
    ident = re.escape(quote_ident(database).encode())
    switch = re.compile(rb"^(?:CREATE DATABASE /\*!32312 IF NOT EXISTS\*/ " + ident
                        + rb"[ ;][^\n]*|USE " + ident + rb";)\n", re.M)
    held = b""
    at_line_start = True  # the next block's first byte starts a line
    for block in blocks:
        data = held + block if held else block
        held = b""
        tail = data[data.rfind(b"\n") + 1:]
        tail_starts_line = at_line_start or len(tail) < len(data)
        if tail_starts_line and len(tail) < _HOLD and any(
                s.startswith(tail[:len(s)]) for s in _SWITCH_STARTS):
            held, data = tail, data[:len(data) - len(tail)]  # may be a switch: wait for more
        pos = 0
        for found in switch.finditer(data):
            if found.start() == 0 and not at_line_start:
                continue  # the rest of a line the previous block began
            if found.start() > pos:
                yield data[pos:found.start()]
            pos = found.end()
        if pos < len(data):
            yield data[pos:] if pos else data
        if data:
            at_line_start = data.endswith(b"\n")
    if held:
        yield held  # the last line, without a newline: not a switch


def load_script(tools: MariadbTools, conn: MariadbConnection, blocks: Iterable[bytes], *,
                database: str = "") -> None:
    """Feed an SQL script to ``mariadb`` (into ``database``, when given); SourceError with
    mariadb's own message when a statement fails."""
    args = conn.args(tools.path("mariadb"), "--binary-mode", "--batch")
    if database:
        args.append(database)
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=err)
        except OSError as exc:
            raise SourceError(f"cannot run {args[0]}: {exc.strerror}") from None
        assert proc.stdin is not None
        try:
            try:
                for block in blocks:
                    proc.stdin.write(block)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # mariadb stopped at an error: its exit code and stderr say which
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code != 0:
            raise SourceError(f"mariadb failed (exit {code}): {last_line(_text(err))}")


@dataclass(frozen=True)
class ReplayRange:
    """What of one binlog file to replay (mariadb-binlog's own options)."""

    start_position: int | None = None  # the first file: the dump's recorded position
    stop_position: int | None = None  # --target-position, on its file
    stop_datetime: str | None = None  # 'YYYY-MM-DD HH:MM:SS' in UTC (TZ=UTC for mariadb-binlog)
    database: str = ""  # only this database's events (a one-database dump)
    rewrite_to: str = ""  # ... applied to this database instead


def replay_binlog(tools: MariadbTools, conn: MariadbConnection, binlog: Path,
                  span: ReplayRange) -> None:
    """``mariadb-binlog [range] FILE | mariadb``; SourceError naming whichever failed."""
    decode = [tools.path("mariadb-binlog"), "--no-defaults"]
    if span.start_position is not None:
        decode.append(f"--start-position={span.start_position}")
    if span.stop_position is not None:
        decode.append(f"--stop-position={span.stop_position}")
    if span.stop_datetime is not None:
        decode.append(f"--stop-datetime={span.stop_datetime}")
    if span.database:
        decode.append(f"--database={span.database}")
        if span.rewrite_to and span.rewrite_to != span.database:
            if "->" in span.database or "->" in span.rewrite_to:
                raise UsageError("a database name holding '->' cannot be renamed in a replay")
            decode.append(f"--rewrite-db={span.database}->{span.rewrite_to}")
    decode.append(str(binlog))
    apply = conn.args(tools.path("mariadb"), "--binary-mode", "--batch")
    with tempfile.TemporaryFile() as decode_err, tempfile.TemporaryFile() as apply_err:
        try:
            reader = subprocess.Popen(decode, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=decode_err, env={**os.environ, "TZ": "UTC"})
        except OSError as exc:
            raise SourceError(f"cannot run {decode[0]}: {exc.strerror}") from None
        assert reader.stdout is not None
        try:
            writer = subprocess.Popen(apply, stdin=reader.stdout, stdout=subprocess.DEVNULL,
                                      stderr=apply_err)
        except OSError as exc:
            reader.kill()
            reader.wait()
            raise SourceError(f"cannot run {apply[0]}: {exc.strerror}") from None
        reader.stdout.close()  # the writer holds it now
        applied = writer.wait()
        decoded = reader.wait()
        if decoded != 0:
            raise SourceError(f"mariadb-binlog {binlog.name} failed (exit {decoded}): "
                              f"{last_line(_text(decode_err))}")
        if applied != 0:
            raise SourceError(f"replaying {binlog.name} failed (exit {applied}): "
                              f"{last_line(_text(apply_err))}")
