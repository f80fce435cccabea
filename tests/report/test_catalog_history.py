"""catalog.db.tenant_history, the report's one query, on SQLite and on a central
PostgreSQL catalog (the machine's server, a throwaway database)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from drsync.catalog.db import Catalog, tenant_history
from tests.test_catalog_postgres import _admin

SINCE = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
UNTIL = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "catalog.sqlite")
        return
    conn, user = _admin()
    name = f"drsync_report_{secrets.token_hex(6)}"
    conn.execute(f"CREATE DATABASE {name}")  # type: ignore[attr-defined]
    try:
        yield f"postgresql://{user}@127.0.0.1:5432/{name}"
    finally:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[attr-defined]
        conn.close()  # type: ignore[attr-defined]


def _run(run_id: str, tenant: str, started: dt.datetime, status: str = "ok",
         kind: str = "backup") -> dict[str, object]:
    return {"run_id": run_id, "tenant": tenant, "host": f"{tenant}-db", "kind": kind,
            "status": status, "started": started.isoformat(),
            "finished": (started + dt.timedelta(minutes=5)).isoformat()}


def test_the_period_the_point_before_it_and_the_count(catalog_url: str,
                                                     tmp_path: Path) -> None:
    catalog = Catalog(catalog_url, state_dir=str(tmp_path / "state"))
    try:
        catalog.import_runs("/r", [
            _run("a-old-ok", "A", dt.datetime(2026, 10, 20, tzinfo=dt.UTC)),
            _run("a-last-ok", "A", dt.datetime(2026, 10, 31, 23, tzinfo=dt.UTC)),
            _run("a-failed-before", "A", dt.datetime(2026, 10, 31, 23, 30, tzinfo=dt.UTC),
                 "failed"),
            _run("a-failed-edge", "A", dt.datetime(2026, 10, 31, 23, 59, tzinfo=dt.UTC),
                 "failed"),
            _run("a-first", "A", SINCE),  # the period's first instant is in it
            _run("a-check", "A", dt.datetime(2026, 11, 15, tzinfo=dt.UTC), kind="check"),
            _run("a-last", "A", dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC), "missed"),
            _run("a-after", "A", dt.datetime(2026, 12, 1, tzinfo=dt.UTC)),
            _run("b-in", "B", dt.datetime(2026, 11, 10, tzinfo=dt.UTC)),
        ])
        runs, ever = tenant_history(catalog, "A", SINCE, UNTIL)
        assert [r.id for r in runs] == ["a-last-ok", "a-first", "a-check", "a-last"]
        assert ever == 8
        assert all(r.started.tzinfo is not None for r in runs)
        assert tenant_history(catalog, "nobody", SINCE, UNTIL) == ([], 0)
    finally:
        catalog.close()


def test_a_check_of_the_tenants_repository_is_the_tenants_whoever_ran_it(
        catalog_url: str, tmp_path: Path) -> None:
    """`drsync --repo /srv/dc2/nobeoka check` on an operator's host records the host's
    name as tenant: the failed check never reached Nobeoka's ZERO-ERRORS (and its "last
    integrity check" was null). Found by an edge hunt."""
    catalog = Catalog(catalog_url, state_dir=str(tmp_path / "state"))
    try:
        catalog.import_runs("/srv/dc2/nobeoka", [
            _run("op-check", "ops-host", dt.datetime(2026, 11, 15, tzinfo=dt.UTC), "failed",
                 kind="check"),
            _run("op-backup", "ops-host", dt.datetime(2026, 11, 16, tzinfo=dt.UTC))])
        catalog.import_runs("/srv/dc2/saga", [
            _run("saga-check", "ops-host", dt.datetime(2026, 11, 15, tzinfo=dt.UTC),
                 kind="check")])
        runs, _ = tenant_history(catalog, "Nobeoka", SINCE, UNTIL, ["/srv/dc2/nobeoka"])
        assert [r.id for r in runs] == ["op-check"]  # not its backup, not Saga's check
        assert tenant_history(catalog, "Nobeoka", SINCE, UNTIL) == ([], 0)
    finally:
        catalog.close()
