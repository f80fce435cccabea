"""Disaster-recovery proof commands: ``drill`` and ``catalog rebuild``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import click

from drsync.cli.context import config_option, open_repo, settings_from
from drsync.cli.render import human_bytes, print_json, progress_bar

if TYPE_CHECKING:
    from drsync.catalog.db import Catalog


def _open_catalog(ctx: click.Context, catalog: str | None) -> Catalog:
    from drsync.catalog.db import Catalog

    settings = settings_from(ctx, **({"catalog": catalog} if catalog else {}))
    assert settings.catalog is not None  # resolve() fills in the default
    return Catalog(settings.catalog, state_dir=settings.state_dir)


@click.command("drill")
@click.argument("tenant", required=False)
@click.option("--fleet", type=click.Path(dir_okay=False), metavar="FLEET",
              help="Drill TENANT of this fleet file (secondary side): its repo, opened with "
                   "its key_file or the fleet's [keys] escrow_key.")
@config_option("TOML settings file of the tenant (its repository and key); same as the "
               "global --config.")
@click.option("--snapshot", "ref", default="latest", show_default=True,
              help="Which snapshot to drill.")
@click.option("--pg-dsn", metavar="DSN",
              help="pg_dump snapshots: the server to create the scratch database on "
                   "(default: the DSN the dump was taken from).")
@click.option("--mariadb-dsn", metavar="DSN",
              help="mariadb_dump snapshots of one database: the server to create the "
                   "scratch database on (default: a throwaway mariadbd in the scratch; "
                   "without mariadbd, the DSN the dump was taken from).")
@click.option("--scratch-dir", type=click.Path(file_okay=False),
              help="Where the scratch restore goes (default: $TMPDIR); removed afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def drill_cmd(ctx: click.Context, tenant: str | None, fleet: str | None, ref: str,
              pg_dsn: str | None, mariadb_dsn: str | None, scratch_dir: str | None,
              as_json: bool) -> int:
    """Restore the latest snapshot to a scratch target, validate it, tear it down, record it.

    Files: every file restored, blobs verified, sizes as the snapshot says.
    SQLite: PRAGMA integrity_check, and per-table row counts, rowid sums and
    row checksums equal to those recorded at backup time. pg_dump: restored
    into a scratch database drsync_drill_<hex>, table row counts and checksums
    compared, pg_amcheck, then dropped. MariaDB dump of one database: loaded
    into a scratch database drsync_drill_<hex> on the dumped server, row
    counts compared, dropped. Base backup (PITR): the WAL fetched and
    verified, recovered to its end on a throwaway cluster (free port, socket in
    the scratch; as root run by the postgres user), pg_amcheck, every table
    read, then stopped. RTO (start to validated) and RPO (start minus the
    restored point: the last commit replayed, else the snapshot's time) are
    recorded with the checks in the catalog and as a drill record in the store.

    With TENANT --fleet FLEET the tenant of the fleet file is drilled (on the
    secondary side, with the config's store options and catalog).

    \b
    Examples:
      drsync drill --config /etc/drsync/tenant.toml
      drsync drill --config /etc/drsync/tenant.toml --json | jq .rto_s
      drsync --config /etc/drsync/dc2.toml drill Nobeoka --fleet fleet.toml
    Exit 0: every check passed. Exit 13: a check failed (the JSON and the
    `failed` lines say which and why).
    """
    from drsync.drill import run_drill, run_fleet_drill
    from drsync.errors import IntegrityError, UsageError

    if (tenant is None) != (fleet is None):
        raise UsageError("drill: give TENANT and --fleet FLEET together (or neither, to "
                         "drill the configured repository)")
    settings = settings_from(ctx)
    catalog = _open_catalog(ctx, None)
    try:
        with progress_bar(f"drill {tenant or settings.tenant or ''}".strip(),
                          enabled=not as_json) as (advance, _total):
            if fleet is not None and tenant is not None:
                result = run_fleet_drill(fleet, tenant, settings, ref=ref, pg_dsn=pg_dsn,
                                         mariadb_dsn=mariadb_dsn, scratch_dir=scratch_dir,
                                         catalog=catalog, progress=advance)
            else:
                # The store's documents, not the local cache's copies (drsync.store.cache).
                repo = open_repo(ctx, dataclasses.replace(settings, cache=False))
                result = run_drill(repo, tenant=settings.tenant, host=settings.host, ref=ref,
                                   pg_dsn=pg_dsn, pg_bindir=settings.pg_bindir,
                                   mariadb_dsn=mariadb_dsn, scratch_dir=scratch_dir,
                                   catalog=catalog,
                                   progress=advance)
    finally:
        catalog.close()
    if as_json:
        print_json(result.to_json())
    else:
        for check in result.checks:
            click.echo(f"{'ok' if check.ok else 'failed'}: {check.name}: {check.detail}")
        rpo = "-" if result.rpo_s is None else f"{result.rpo_s:.0f} s"
        click.echo(f"drill of {result.tenant}: {result.status}, RTO {result.rto_s:.2f} s, "
                   f"RPO {rpo}, {human_bytes(result.bytes_restored)} restored")
    return 0 if result.ok else IntegrityError.exit_code


@click.group("catalog")
def catalog_group() -> None:
    """The catalog database (runs and drills), which the store can always rebuild."""


@catalog_group.command("rebuild")
@config_option()
@click.option("--fleet", type=click.Path(dir_okay=False), metavar="FLEET",
              help="Rebuild for every tenant of this fleet file (each opened with its "
                   "key_file or the fleet's [keys] escrow_key).")
@click.option("--catalog", "catalog_url", metavar="URL",
              help="The catalog to rebuild (default: the configured one).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def catalog_rebuild_cmd(ctx: click.Context, fleet: str | None, catalog_url: str | None,
                        as_json: bool) -> int:
    """Rebuild the catalog from the store alone: runs, drills and WAL ranges.

    Imports every sealed run record and drill record (runs already in the
    catalog take the store's outcome; nothing is duplicated) and each base
    backup's WAL range (what pitr-range reports), of the configured
    repository or, with --fleet, of every tenant of the fleet file. Snapshots
    are always read from the store itself. A tenant that cannot be opened is
    reported and the others go on; the exit code is then that failure's.

    \b
    Examples:
      drsync --config /etc/drsync/tenant.toml catalog rebuild
      drsync catalog rebuild --config tenant.toml --catalog postgresql://dr@db2/drsync
      drsync --config /etc/drsync/dc2.toml catalog rebuild --fleet fleet.toml --json
    """
    from drsync.catalog.db import CatalogDamaged, set_aside
    from drsync.dr.rebuild import rebuild_fleet, rebuild_repo

    settings = settings_from(ctx)
    repo = None if fleet else open_repo(ctx, settings)
    try:
        catalog = _open_catalog(ctx, catalog_url)
    except CatalogDamaged as err:  # a SQLite file: a server's database is its own to mend
        aside = set_aside(catalog_url or settings.catalog or "")
        click.echo(f"drsync: warning: {err.reason}: moved aside to "
                   f"{aside}; rebuilding it from the store", err=True)
        catalog = _open_catalog(ctx, catalog_url)
    try:
        if fleet:
            from drsync.plan.fleetfile import load_fleet

            done = rebuild_fleet(catalog, load_fleet(fleet, planning=False), settings)
        else:
            assert repo is not None
            done = [rebuild_repo(catalog, repo, settings.tenant)]
        location = catalog.location
    finally:
        catalog.close()
    if as_json:
        doc: dict[str, Any] = {"catalog": location, "tenants": [d.to_json() for d in done]}
        if not fleet:  # the one-repository form keeps its flat fields
            doc.update(repo=done[0].repo, runs=done[0].runs, drills=done[0].drills,
                       wal_ranges=done[0].wal_ranges)
        print_json(doc)
    else:
        for d in done:
            if d.status == "ok":
                click.echo(f"rebuilt catalog {location} from {d.repo}: {d.runs} run(s), "
                           f"{d.drills} drill(s), {d.wal_ranges} WAL range(s)")
            else:
                click.echo(f"{d.status}: {d.tenant}: {d.error}", err=True)
    return next((d.exit_code for d in done if d.exit_code), 0)
