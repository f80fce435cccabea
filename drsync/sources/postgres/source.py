"""The PostgreSQL sources as :class:`drsync.sources.base.Source`: a logical dump and a
physical base backup, each a thin shape around its streaming function."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from drsync.sources.base import SourceBase, SourceItem
from drsync.sources.postgres.direct import Reuse
from drsync.sources.postgres.dump import pg_dump_source
from drsync.sources.postgres.physical import base_backup_source
from drsync.sources.postgres.tools import PgTools, redact

__all__ = ["PgBaseSource", "PgDumpSource"]


class PgDumpSource(SourceBase):
    """``pg_dump -Fc -Z0`` (and ``pg_dumpall --globals-only`` when asked), consistent at
    the exported snapshot the spec records."""

    kind = "pg_dump"

    def __init__(self, dsn: str, *, with_globals: bool = False,
                 tools: PgTools | None = None) -> None:
        super().__init__()
        self._dsn = dsn
        self._with_globals = with_globals
        self._tools = tools

    def describe(self) -> str:
        return f"pg_dump:{redact(self._dsn)}"

    def items(self) -> Iterator[SourceItem]:
        yield from self._stack.enter_context(pg_dump_source(
            self._dsn, self._spec, with_globals=self._with_globals, tools=self._tools))


class PgBaseSource(SourceBase):
    """The data directory under ``pgdata/``: read directly when it is on this machine,
    else ``pg_basebackup``'s tar stream, member by member (``method``).

    ``previous`` is set by the backup service (it can read the repository, a source
    cannot): given the spec, which unchanged files may keep their previous chunks."""

    kind = "pg_base"

    def __init__(self, dsn: str, *, tools: PgTools | None = None, method: str = "auto") -> None:
        super().__init__()
        self._dsn = dsn
        self._tools = tools
        self._method = method
        self.previous: Callable[[dict[str, Any]], Reuse | None] | None = None

    def describe(self) -> str:
        return f"pg_base:{redact(self._dsn)}"

    def items(self) -> Iterator[SourceItem]:
        yield from self._stack.enter_context(base_backup_source(
            self._dsn, self._spec, tools=self._tools, method=self._method,
            previous=self.previous))
