"""Finding MariaDB's programs and asking a server small questions with ``mariadb``."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import ClassVar

from drsync.errors import SourceError
from drsync.sources.base import last_line
from drsync.sources.mariadb.conninfo import MariadbConnection

__all__ = ["MariadbTools", "quote_ident", "quote_literal"]


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
        args = conn.args(self.path("mariadb"), "--batch", "--skip-column-names", "--raw",
                         "-e", sql)
        if conn.dsn.database:
            args.append(conn.dsn.database)
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except OSError as err:
            raise SourceError(f"cannot run {args[0]}: {err.strerror}") from None
        if done.returncode != 0:
            raise SourceError(f"MariaDB ({conn.dsn.shown}): {last_line(done.stderr)}")
        return [line.split("\t") for line in done.stdout.splitlines()]
