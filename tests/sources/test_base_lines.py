"""last_line: what a tool's stderr says went wrong, in the one line drsync shows."""

from __future__ import annotations

from drsync.sources.base import last_line


def test_the_error_line_not_the_context_after_it() -> None:
    """pg_restore's last line was "Command was: ALTER TABLE ... OWNER TO app;", hiding
    "role app does not exist"; psql's was "Is the server running locally...?" (edge hunt)."""
    pg_restore = ('pg_restore: error: could not execute query: ERROR:  role "app" does not '
                  'exist\nCommand was: ALTER TABLE public.reg OWNER TO app;\n\n')
    assert last_line(pg_restore) == ('pg_restore: error: could not execute query: ERROR:  '
                                     'role "app" does not exist')
    psql = ('psql: error: connection to server on socket "/nonexistent/.s.PGSQL.5999" failed:'
            ' No such file or directory\n\tIs the server running locally and accepting '
            'connections on that socket?\n')
    assert last_line(psql).startswith("psql: error: connection to server on socket")
    assert last_line("mariadb-dump: Got error: 1045: Access denied\n") == (
        "mariadb-dump: Got error: 1045: Access denied")
    assert last_line("just one line\nthe last\n") == "the last"
    assert last_line("\n \n") == "failed without a message"
