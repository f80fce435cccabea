"""Per-table row counts and row checksums of MariaDB databases, in SQL.

What a dump records (drsync.sources.mariadb.dump, in the spec's ``tables``)
and a drill compares a reload with (drsync.drill, drsync.drill_mariadb):
``{"db.table": {"rows": n, "checksum": c}}``.

The checksum of a table is the sum over its rows of the first 60 bits of
the MD5 of the row: ``CAST(CONV(LEFT(MD5(CONCAT(p1, p2, ...)), 15), 16, 10)
AS UNSIGNED)``, the columns in their order, 0 for an empty table. A column
of a bounded type (numbers, dates and times, CHAR/VARCHAR/BINARY/VARBINARY,
ENUM, SET, BIT...: together under InnoDB's 64 KiB row limit) is the piece
``IFNULL(CONCAT(LENGTH(c), ':', CAST(c AS BINARY)), 'N')``; any other (BLOB,
TEXT, JSON, geometry...) is hashed on its own first, ``IFNULL(MD5(c),
'N')``, so a value of any size never makes the row longer than
``max_allowed_packet`` (which would turn it to NULL and drop the row from
the sum). The length prefix keeps ``('ab', 'c')`` from ``('a', 'bc')``,
``'N'`` (no digit) tells NULL from the empty string, and the binary cast
avoids any mix of collations.

* a sum does not depend on the order a reload inserts rows in, and is taken
  in the count's own scan; ``SUM`` of integers is an exact DECIMAL;
* a value is hashed as the server renders it as a string: the column's
  bytes for strings and BLOBs, the text for numbers, dates and FLOAT/DOUBLE,
  which is what mariadb-dump writes too (``--hex-blob`` only changes the
  spelling of binary values, not what is loaded back), so a reload on the
  same server version gives the same sum;
* the session runs with ``time_zone = '+00:00'`` (mariadb-dump's own), so
  TIMESTAMP columns read the same on any server.

One MD5 per row (plus one per long value) costs about as much as the scan
itself, after the dump.

``CHECKSUM TABLE`` is not used: it reads outside the snapshot and depends on
the row format. Like the PostgreSQL and SQLite checksums this is a check
that the rows came back, not a defence against tampering (the repository's
AEAD is).
"""

from __future__ import annotations

from drsync.sources.mariadb.conninfo import MariadbConnection
from drsync.sources.mariadb.tools import MariadbTools, quote_ident, quote_literal

__all__ = ["CANONICAL_SESSION", "Column", "Table", "list_tables", "parse_counts", "table_counts",
           "table_sql"]

CANONICAL_SESSION = "SET time_zone = '+00:00'"

Column = tuple[str, str]  # name, information_schema's data_type
Table = tuple[str, str, list[Column]]  # schema, table, its columns in order

# Types whose values are bounded (InnoDB keeps them under its 64 KiB row limit): put in
# the row as they are. Any other type is hashed on its own first.
_BOUNDED = frozenset((
    "tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "float", "double",
    "bit", "date", "datetime", "timestamp", "time", "year", "char", "varchar", "binary",
    "varbinary", "enum", "set", "inet4", "inet6", "uuid"))


def list_tables(tools: MariadbTools, conn: MariadbConnection,
                schemas: list[str]) -> list[Table]:
    """The base tables of ``schemas`` with their columns, ordered by schema and table."""
    if not schemas:
        return []
    inlist = ", ".join(quote_literal(s) for s in schemas)
    rows = tools.query(
        conn, "SELECT c.table_schema, c.table_name, c.column_name, "
        "c.data_type FROM information_schema.columns c JOIN information_schema.tables t ON "
        "t.table_schema = c.table_schema AND t.table_name = c.table_name WHERE "
        f"t.table_type = 'BASE TABLE' AND c.table_schema IN ({inlist}) "
        "ORDER BY c.table_schema, c.table_name, c.ordinal_position")
    tables: list[Table] = []
    for schema, table, column, data_type in rows:
        if not tables or tables[-1][:2] != (schema, table):
            tables.append((schema, table, []))
        tables[-1][2].append((column, data_type.lower()))
    return tables


def _piece(column: Column) -> str:
    name, data_type = quote_ident(column[0]), column[1]
    if data_type in _BOUNDED:
        return f"IFNULL(CONCAT(LENGTH({name}), ':', CAST({name} AS BINARY)), 'N')"
    return f"IFNULL(MD5({name}), 'N')"


def table_sql(schema: str, table: str, columns: list[Column], label: str) -> str:
    """One row: ``label``, the row count, the checksum (see the module docstring)."""
    row = ", ".join(_piece(c) for c in columns)
    hashed = f"CAST(CONV(LEFT(MD5(CONCAT({row})), 15), 16, 10) AS UNSIGNED)"
    return (f"SELECT {quote_literal(label)}, COUNT(*), COALESCE(SUM({hashed}), 0) "
            f"FROM {quote_ident(schema)}.{quote_ident(table)}")


def parse_counts(rows: list[list[str]]) -> dict[str, dict[str, int]]:
    return {label: {"rows": int(count), "checksum": int(checksum)}
            for label, count, checksum in rows}


def table_counts(tools: MariadbTools, conn: MariadbConnection, schemas: list[str], *,
                 rename: dict[str, str] | None = None) -> dict[str, dict[str, int]]:
    """Count and checksum every base table of ``schemas``, labelled ``db.table`` (``rename``
    maps a schema read to the name it is labelled with: a reload under another name)."""
    rename = rename or {}
    tables = list_tables(tools, conn, schemas)
    if not tables:
        return {}
    sql = [CANONICAL_SESSION] + [
        table_sql(s, t, cols, f"{rename.get(s, s)}.{t}") for s, t, cols in tables]
    return parse_counts(tools.query(conn, "; ".join(sql), timeout=24 * 3600))
