"""DSNs: the password split out (for PGPASSWORD) and masked (for messages), libpq's grammar."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drsync.errors import UsageError
from drsync.sources.postgres.conninfo import (
    PgConnection,
    conninfo_pairs,
    redact,
    split_password,
)
from drsync.sources.postgres.tools import dsn_dbname


@pytest.mark.parametrize(("dsn", "password"), [
    ("host=h user=u password='p w' dbname=d", "p w"),
    ("password = 's3 cr\\'et\\\\' host=h", "s3 cr'et\\"),
    ("host=h password=a\\ b", "a b"),
    ("password=first password='second one'", "second one"),
    ("password='' host=h", ""),
    ("password= host=h", "host=h"),  # libpq skips blanks after "=": the value is "host=h"
])
def test_key_value_password_is_split_out_exactly(dsn: str, password: str) -> None:
    clean, found = split_password(dsn)
    assert found == password
    assert all(key != "password" for key, _ in conninfo_pairs(clean))
    kept = [(k, v) for k, v in conninfo_pairs(dsn) if k != "password"]
    assert conninfo_pairs(clean) == kept  # everything else survives, re-quoted


@pytest.mark.parametrize(("dsn", "clean", "password"), [
    ("postgresql://u:s%40cr%20et@h:5432/db?sslmode=disable",
     "postgresql://u@h:5432/db?sslmode=disable", "s@cr et"),
    ("postgres://u@h/db?password=x%26y&application_name=a",
     "postgres://u@h/db?application_name=a", "x&y"),
    ("postgresql://:pw@h/db", "postgresql://h/db", "pw"),
    ("postgresql://u:p?w@h1:5432,h2/db", "postgresql://u@h1:5432,h2/db", "p?w"),
    ("postgresql://u@h/db", "postgresql://u@h/db", None),
    ("postgresql:///db?host=/run/postgresql", "postgresql:///db?host=/run/postgresql", None),
])
def test_uri_password_is_split_out(dsn: str, clean: str, password: str | None) -> None:
    assert split_password(dsn) == (clean, password)


def test_a_bare_database_name_has_no_password() -> None:
    assert split_password("registry") == ("registry", None)
    assert redact("registry") == "registry"


@pytest.mark.parametrize(("dsn", "shown"), [
    ("host=h password='p w' user=u", "host=h password=*** user=u"),
    ("host=h password=p\\ w", "host=h password=***"),
    ("host=h sslpassword='k y' password=x", "host=h sslpassword=*** password=***"),
    ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h/db?password=secret&sslmode=require",
     "postgresql://u@h/db?password=***&sslmode=require"),
    # Unparsable: everything after the keyword is masked, the rest kept.
    ("host=h password='p w", "host=h password=***"),
    ("postgresql://u:secret@h/db?broken", "postgresql://u:***@h/db?broken"),
])
def test_redact_masks_every_password_and_keeps_the_rest(dsn: str, shown: str) -> None:
    assert redact(dsn) == shown


def test_a_malformed_dsn_is_a_usage_error_that_does_not_show_the_password() -> None:
    with pytest.raises(UsageError) as caught:
        split_password("host=h dbname='x password=hunter2 ")
    assert "hunter2" not in str(caught.value) and "unterminated" in str(caught.value)
    with pytest.raises(UsageError) as caught:
        dsn_dbname("password=hunter2 dbname")
    assert "hunter2" not in str(caught.value)


def test_connection_gives_the_password_through_the_environment_only() -> None:
    conn = PgConnection.of("host=h dbname=d password='p w'")
    assert "p w" not in conn.dsn and "p w" not in conn.shown and "p w" not in repr(conn)
    assert conn.env()["PGPASSWORD"] == "p w"


_SECRET = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                  min_size=1, max_size=30).map(lambda s: "Zq9" + s)


@given(_SECRET)
def test_any_quoted_password_round_trips_and_never_shows(password: str) -> None:
    quoted = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    dsn = f"host=db.example port=5432 password={quoted} dbname=registry"
    clean, found = split_password(dsn)
    assert found == password and password not in clean and password not in redact(dsn)
    assert dsn_dbname(clean) == "registry"


@given(_SECRET)
def test_any_uri_password_round_trips_and_never_shows(password: str) -> None:
    dsn = f"postgresql://clerk:{quote(password, safe='')}@db.example/registry"
    clean, found = split_password(dsn)
    assert found == password and clean == "postgresql://clerk@db.example/registry"
    assert quote(password, safe="") not in redact(dsn)
