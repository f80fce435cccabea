"""Row-for-row comparison of two sample databases (a source and its restore)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from drsync.sample.generate import Row

__all__ = ["compare"]

def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _connect_read_only(path: Path) -> sqlite3.Connection:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _schema(db: sqlite3.Connection) -> dict[tuple[str, str], str | None]:
    rows = db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    return {(str(kind), str(name)): sql for kind, name, sql in rows}


def _sort_key(value: object) -> tuple[int, Any]:
    """SQLite's own ordering of mixed types: NULL < numbers < text < blobs."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _table_rows(
    db: sqlite3.Connection, table: str, key_columns: Sequence[str]
) -> Iterator[tuple[tuple[tuple[int, Any], ...], Row]]:
    order = ", ".join(_quote(c) for c in key_columns)
    selected = ", ".join(_quote(c) for c in key_columns)
    cursor = db.execute(f"SELECT {selected}, * FROM {_quote(table)} ORDER BY {order}")
    width = len(key_columns)
    for row in cursor:
        yield tuple(_sort_key(v) for v in row[:width]), tuple(row[width:])


def _key_columns(db: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    info = db.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
    columns = [str(row[1]) for row in info]
    keys = [str(row[1]) for row in sorted((row for row in info if row[5]), key=lambda r: r[5])]
    return columns, keys or ["rowid"]


def _compare_table(a: sqlite3.Connection, b: sqlite3.Connection, table: str) -> Iterator[str]:
    columns, keys = _key_columns(a, table)
    end = object()
    rows_a, rows_b = _table_rows(a, table, keys), _table_rows(b, table, keys)
    row_a: Any = next(rows_a, end)
    row_b: Any = next(rows_b, end)

    def where(sort_key: tuple[tuple[int, Any], ...]) -> str:
        return " ".join(f"{k}={v[1]!r}" for k, v in zip(keys, sort_key, strict=True))

    while row_a is not end or row_b is not end:
        if row_b is end or (row_a is not end and row_a[0] < row_b[0]):
            yield f"{table} {where(row_a[0])}: only in a"
            row_a = next(rows_a, end)
        elif row_a is end or row_b[0] < row_a[0]:
            yield f"{table} {where(row_b[0])}: only in b"
            row_b = next(rows_b, end)
        else:
            if row_a[1] != row_b[1]:
                changes = "; ".join(
                    f"{col} {_short(x)} -> {_short(y)}"
                    for col, x, y in zip(columns, row_a[1], row_b[1], strict=True)
                    if x != y
                )
                yield f"{table} {where(row_a[0])}: {changes}"
            row_a, row_b = next(rows_a, end), next(rows_b, end)


def compare(a: Path, b: Path, limit: int | None = None) -> list[str]:
    """Return the differences between two sample databases, an empty list when they match.

    Checks that both files pass SQLite's quick_check, that their schemas are equal, and
    then every table row by row in primary-key order, one line per differing row. With
    *limit*, at most that many differences are listed, then one line counting the rest.
    Missing files raise ``FileNotFoundError``.
    """
    found: list[str] = []
    with (
        contextlib.closing(_connect_read_only(a)) as db_a,
        contextlib.closing(_connect_read_only(b)) as db_b,
    ):
        for label, db in (("a", db_a), ("b", db_b)):
            try:
                verdict = [str(row[0]) for row in db.execute("PRAGMA quick_check")]
            except sqlite3.DatabaseError as error:
                verdict = [f"unreadable: {error}"]
            if verdict != ["ok"]:
                found.append(f"{label}: quick_check failed: {'; '.join(verdict[:5])}")
        if found:
            return found
        schema_a, schema_b = _schema(db_a), _schema(db_b)
        for kind, name in sorted(schema_a.keys() | schema_b.keys()):
            sql_a, sql_b = schema_a.get((kind, name)), schema_b.get((kind, name))
            if (kind, name) not in schema_b:
                found.append(f"schema: {kind} {name} only in a")
            elif (kind, name) not in schema_a:
                found.append(f"schema: {kind} {name} only in b")
            elif sql_a != sql_b:
                found.append(f"schema: {kind} {name} differs: {_short(sql_a)} -> {_short(sql_b)}")
        tables = [
            name for kind, name in sorted(schema_a.keys() & schema_b.keys()) if kind == "table"
        ]
        extra = 0
        for table in tables:
            if schema_a[("table", table)] != schema_b[("table", table)]:
                continue  # already reported; rows of different shapes do not line up
            for difference in _compare_table(db_a, db_b, table):
                if limit is None or len(found) < limit:
                    found.append(difference)
                else:
                    extra += 1
        if extra:
            found.append(f"... and {extra} more differences")
    return found

