"""SQLite databases, copied consistently with SQLite's online backup API.

The backup API copies every page inside one read transaction, so the copy
is a consistent database even while other processes write (in WAL mode they
keep writing; in rollback mode they wait for the copy). The copy goes to a
temporary file (SQLite's API writes a database, not a stream), is streamed
into the repository, and is removed.

The snapshot also records, per table of the copy, its row count, the sum
of its rowids and a checksum of its rows (``tables``): what a drill compares the restored database
with (drsync.drill). Counting reads the copy, not the live database, on a
thread of its own while the copy is backed up.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drsync.errors import SourceError
from drsync.sources.base import SourceBase, SourceItem
from drsync.sources.blocks import aligned_chunk
from drsync.tree import Entry

__all__ = ["SqliteCopy", "SqliteSource", "sqlite_consistent_copy", "table_counts"]


@dataclass(frozen=True)
class SqliteCopy:
    path: Path  # the consistent copy
    name: str  # the stream name in the snapshot
    info: dict[str, Any]  # what the snapshot records about the source


_DIGEST = operator.methodcaller("digest")
_BLAKE2B_64 = functools.partial(hashlib.blake2b, digest_size=8)


def _row_checksum(db: sqlite3.Connection, quoted: str) -> int:
    """Sum (mod 2**63) of a 64-bit BLAKE2b of each row's values (their ``repr``: type and
    value, the same for the same stored row on any platform): order-independent, so a
    restore that renumbers nothing but reorders pages agrees; a changed value in any
    column changes it. One pass over the table, in Python: SQLite has no hash function.
    Rows are tuples (the connections here have no row factory), and the per-row work is
    a chain of C calls (``int.from_bytes`` reads big-endian), not Python bytecode."""
    rows = db.execute(f"SELECT * FROM {quoted}")
    digests = map(_DIGEST, map(_BLAKE2B_64, map(str.encode, map(repr, rows))))
    return sum(map(int.from_bytes, digests)) % (1 << 63)


def table_counts(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Per table: ``rows``, ``checksum`` (_row_checksum) and, for rowid tables,
    ``rowid_sum`` (a row lost or renumbered changes it). Internal ``sqlite_`` tables are
    left out."""
    names = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%'"
        " ESCAPE '\\' ORDER BY name")]
    counts: dict[str, dict[str, int]] = {}
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            rows, rowid_sum = db.execute(f"SELECT count(*), sum(rowid) FROM {quoted}").fetchone()
            counts[name] = {"rows": rows, "rowid_sum": rowid_sum or 0}
        except sqlite3.OperationalError:  # WITHOUT ROWID, a virtual table, a sum overflow
            try:
                counts[name] = {"rows": db.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]}
            except sqlite3.OperationalError:
                continue  # a virtual table whose module this SQLite lacks: not checked
        counts[name]["checksum"] = _row_checksum(db, quoted)
    return counts


class _CountsBehind:
    """``table_counts`` of a consistent copy on a thread of its own, while the copy is
    backed up: counting is Python row by row (a 60 MiB database: 3 s, three times its
    backup), and over a WAN the upload hides it whole. ``result`` waits for it;
    ``cancel`` interrupts the query (a failed backup leaves nothing running)."""

    def __init__(self, path: Path, db_path: str) -> None:
        self._db_path = db_path
        # Queried on the thread only; interrupt() is the one call made from another.
        self._db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                                   check_same_thread=False)
        self._counts: dict[str, dict[str, int]] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._count, name="sqlite-counts", daemon=True)
        self._thread.start()

    def _count(self) -> None:
        try:
            self._counts = table_counts(self._db)
        except BaseException as err:
            self._error = err

    def result(self) -> dict[str, dict[str, int]]:
        self._thread.join()
        self._db.close()
        if isinstance(self._error, sqlite3.DatabaseError):
            raise SourceError(f"cannot back up SQLite database {self._db_path}: "
                              f"{self._error}") from None
        if self._error is not None:
            raise self._error
        assert self._counts is not None
        return self._counts

    def cancel(self) -> None:
        # interrupt() stops the statements running now, not the next table's (which
        # table_counts may even retry): interrupted until the thread has given up.
        while self._thread.is_alive():
            self._db.interrupt()
            self._thread.join(0.05)
        self._db.close()


@contextmanager
def sqlite_consistent_copy(db_path: str, tmp_dir: str | None = None, *,
                           counts: bool = True) -> Iterator[SqliteCopy]:
    """A consistent copy of the database, removed on leaving; its ``info`` holds the
    table counts unless ``counts`` is False (then the caller counts the copy)."""
    src_path = Path(db_path).absolute()
    if not src_path.is_file():
        raise SourceError(f"SQLite database {db_path} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=".drsync-sqlite-", suffix=".db", dir=tmp_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            src = sqlite3.connect(f"{src_path.as_uri()}?mode=ro", uri=True, timeout=60)
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)  # all pages in one step: one read transaction
                row = src.execute("PRAGMA user_version").fetchone()
                info = {
                    "path": str(src_path),
                    "sqlite_version": sqlite3.sqlite_version,
                    "page_size": src.execute("PRAGMA page_size").fetchone()[0],
                    "user_version": row[0],
                }
                if counts:
                    info["tables"] = table_counts(dst)
            finally:
                dst.close()
                src.close()
        except sqlite3.DatabaseError as err:
            raise SourceError(f"cannot back up SQLite database {db_path}: {err}") from None
        yield SqliteCopy(tmp, src_path.name, info)
    finally:
        tmp.unlink(missing_ok=True)


class SqliteSource(SourceBase):
    """One stream: a consistent copy of the database, made on entering, removed on leaving."""

    kind = "sqlite"

    def __init__(self, db_path: str) -> None:
        super().__init__()
        self._db_path = db_path

    def describe(self) -> str:
        return f"sqlite:{self._db_path}"

    def items(self) -> Iterator[SourceItem]:
        copy = self._stack.enter_context(sqlite_consistent_copy(self._db_path, counts=False))
        counting = _CountsBehind(copy.path, self._db_path)
        self._stack.callback(counting.cancel)  # before the copy is removed
        self._spec.update(copy.info)
        # Cut at page boundaries: a changed page changes one chunk (drsync.sources.blocks).
        self._spec["fixed_chunk"] = aligned_chunk(copy.info["page_size"])
        path = copy.path
        yield SourceItem(Entry(copy.name, "stream", 0o600, 0, path.stat().st_size),
                         lambda: open(path, "rb"),  # noqa: SIM115
                         fixed_chunk=self._spec["fixed_chunk"])
        self._spec["tables"] = counting.result()
