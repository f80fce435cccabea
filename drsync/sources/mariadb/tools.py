"""Finding MariaDB's programs and asking a server small questions with ``mariadb``."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import ClassVar

from drsync.errors import SourceError
from drsync.sources.base import last_line
from drsync.sources.mariadb.conninfo import MariadbConnection

__all__ = ["MariadbTools", "Query", "quote_ident", "quote_literal"]


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MariadbTools:
    """MariaDB's client programs: in ``bindir`` when given, else on PATH (mariadb-* names
    first, then MySQL's mysql* names), else /usr/bin."""

    _MYSQL_NAMES: ClassVar[dict[str, str]] = {"mariadb": "mysql", "mariadb-dump": "mysqldump",
                    "mariadb-binlog": "mysqlbinlog"}

    def __init__(self, bindir: str | None = None) -> None:
        self.bindir = bindir

    def path(self, program: str) -> str:
        if self.bindir:
            return os.path.join(self.bindir, program)
        for name in (program, self._MYSQL_NAMES.get(program, program)):
            found = shutil.which(name)
            if found:
                return found
        return f"/usr/bin/{program}"

    def query(self, conn: MariadbConnection, sql: str, *,
              timeout: float = 600) -> list[list[str]]:
        """Rows of tab-separated answers (``NULL`` as the string ``NULL``)."""
        return self.start_query(conn, sql).rows(timeout)

    def start_query(self, conn: MariadbConnection, sql: str) -> Query:
        """``query`` running in the background: its rows from ``Query.rows``."""
        args = conn.args(self.path("mariadb"), "--batch", "--skip-column-names", "--raw",
                         "-e", sql)
        if conn.dsn.database:
            args.append(conn.dsn.database)
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        except OSError as err:
            raise SourceError(f"cannot run {args[0]}: {err.strerror}") from None
        return Query(proc, conn.dsn.shown)


class Query:
    """A ``mariadb -e`` run by ``MariadbTools.start_query``."""

    def __init__(self, proc: subprocess.Popen[str], shown: str) -> None:
        self._proc, self._shown = proc, shown
        self._finished = False

    def rows(self, timeout: float = 600) -> list[list[str]]:
        """Wait for the answer (SourceError for the server's error, or a timeout)."""
        try:
            out, err = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise SourceError(f"MariaDB ({self._shown}): no answer in {timeout:.0f} s") from None
        self._finished = True
        if self._proc.returncode != 0:
            raise SourceError(f"MariaDB ({self._shown}): {last_line(err)}")
        return [line.split("\t") for line in out.splitlines()]

    def cancel(self) -> None:
        """Stop it (its connection goes, and with it the statement and its transaction)."""
        if self._finished:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()
        self._finished = True
