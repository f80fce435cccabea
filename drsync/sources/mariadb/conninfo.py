"""Where a MariaDB (or MySQL) server is, and how its programs are told so without a
password on their command line.

A DSN is a URL, ``mariadb://user[:password]@host[:port][/database]`` (or
``mysql://``), with ``?socket=/path`` for a unix socket, or empty when an
option file (``--defaults-file``) says it all. The programs (mariadb,
mariadb-dump, mariadb-binlog) are given one private option file, mode 0600
in a private temporary directory, written for the duration of a
:class:`MariadbConnection` and removed after: it ``!include``s the
operator's option file, if any, then sets what the URL gives. A password
therefore reaches them through a file only this user can read, never
through ``argv`` (visible to every user in ``ps``) or ``MYSQL_PWD``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

from drsync.errors import UsageError

__all__ = ["MariadbConnection", "MariadbDsn", "parse_dsn"]

_SCHEMES = ("mariadb", "mysql")


@dataclass(frozen=True)
class MariadbDsn:
    user: str = ""
    password: str | None = None
    host: str = ""
    port: int | None = None
    socket: str = ""
    database: str = ""
    defaults_file: str = ""  # the operator's option file, included first

    @property
    def shown(self) -> str:
        """The DSN for messages and the snapshot: never the password."""
        where = self.socket or (f"{self.host}:{self.port}" if self.port else self.host)
        user = f"{self.user}@" if self.user else ""
        text = f"mariadb://{user}{where}/{self.database}" if where or user else (
            f"mariadb:///{self.database}")
        return text + (f" (options {self.defaults_file})" if self.defaults_file else "")

    def with_database(self, database: str) -> MariadbDsn:
        return MariadbDsn(self.user, self.password, self.host, self.port, self.socket,
                          database, self.defaults_file)

    def option_file_text(self) -> str:
        lines = []
        if self.defaults_file:
            lines.append(f"!include {Path(self.defaults_file).absolute()}")
        lines.append("[client]")
        for key, value in (("user", self.user), ("host", self.host), ("socket", self.socket)):
            if value:
                lines.append(f"{key}={_quoted(value)}")
        if self.port:
            lines.append(f"port={self.port}")
        if self.password is not None:
            lines.append(f"password={_quoted(self.password)}")
        return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise UsageError("a MariaDB DSN value holds a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_dsn(dsn: str, defaults_file: str | None = None) -> MariadbDsn:
    """A DSN from its URL (or nothing, with an option file); UsageError naming what is wrong."""
    if defaults_file and not os.path.isfile(defaults_file):
        raise UsageError(f"--defaults-file {defaults_file}: no such file")
    if not dsn:
        if not defaults_file:
            raise UsageError("give a MariaDB DSN (mariadb://user@host:port/db) or "
                             "--defaults-file FILE")
        return MariadbDsn(defaults_file=defaults_file)
    parts = urlsplit(dsn)
    if parts.scheme not in _SCHEMES:
        raise UsageError(f"MariaDB DSN {_redacted(dsn)!r} must be a URL like "
                         "mariadb://user@host:3306/database")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"MariaDB DSN {_redacted(dsn)!r}: the port is not a number") from None
    database = unquote(parts.path.lstrip("/"))
    if "/" in database:
        raise UsageError(f"MariaDB DSN {_redacted(dsn)!r}: one database after the host")
    query = parse_qs(parts.query)
    unknown = set(query) - {"socket"}
    if unknown:
        raise UsageError(f"MariaDB DSN {_redacted(dsn)!r}: unknown parameter "
                         f"{sorted(unknown)[0]!r} (only socket=PATH)")
    return MariadbDsn(
        user=unquote(parts.username or ""),
        password=unquote(parts.password) if parts.password is not None else None,
        host=parts.hostname or "", port=port, socket=query.get("socket", [""])[-1],
        database=database, defaults_file=defaults_file or "")


def _redacted(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    return dsn.replace(f":{parts.password}@", ":***@", 1)


class MariadbConnection:
    """The DSN's private option file, for as long as the connection is open."""

    def __init__(self, dsn: MariadbDsn) -> None:
        self.dsn = dsn
        self._dir = tempfile.mkdtemp(prefix="drsync-mariadb-")  # 0700
        self.option_file = os.path.join(self._dir, "client.cnf")
        fd = os.open(self.option_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(dsn.option_file_text())

    def args(self, program: str, *args: str) -> list[str]:
        """``program`` with the option file first (the programs insist), then ``args``."""
        return [program, f"--defaults-file={self.option_file}", *args]

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> MariadbConnection:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
