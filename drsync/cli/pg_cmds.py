"""Database commands: pitr-range (what can be restored, RPO now) and doctor."""

from __future__ import annotations

import click

from drsync.cli.context import open_repo, settings_from
from drsync.cli.render import print_json

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@click.command("pitr-range")
@click.option("--spool", type=click.Path(file_okay=False),
              help="Also count WAL still in this spool (default: the configured spool, if any).")
@json_option
@click.pass_context
def pitr_range_cmd(ctx: click.Context, spool: str | None, as_json: bool) -> None:
    """Earliest and latest restorable moments of the tenant's PostgreSQL (and MariaDB), and
    the RPO now.

    MariaDB: from the oldest dump to the end of the archived binlogs that
    follow the newest dump without a gap (the time of the last binlog's
    closing ROTATE or STOP event, read from the binlog itself).

    A base backup is restorable once the WAL from its start to its stop is
    archived; it reaches as far as the archived WAL continues without a gap
    on its timeline, to the timestamp of the last commit in that WAL (read
    from the WAL itself; the push time, labelled approximate, when no commit
    is found). RPO now is the age of the newest archived WAL (store or spool), or for a
    MariaDB tenant of the end of its newest archived binlog.

    \b
    Example:
      drsync pitr-range --json | jq .rpo_s
    """
    from drsync.mariadbrestore import mariadb_pitr_range
    from drsync.pgrestore import pitr_range
    from drsync.wal.spool import Spool

    settings = settings_from(ctx, spool=spool)
    repo = open_repo(ctx, settings)
    # the configured or default spool, when there is one here
    spooler = Spool.if_present(settings.wal_spool())
    doc = pitr_range(repo, spooler)
    mariadb = mariadb_pitr_range(repo, spooler)
    if mariadb is not None:
        doc["mariadb"] = mariadb
        if doc["rpo_s"] is None and mariadb["latest"]:  # a MariaDB tenant: its binlogs
            from datetime import UTC, datetime

            at = datetime.fromisoformat(str(mariadb["latest"]).replace("Z", "+00:00"))
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            doc["rpo_s"] = max(0.0, (datetime.now(UTC) - at).total_seconds())
    if as_json:
        print_json(doc)
        return
    if mariadb is not None:
        click.echo(f"MariaDB: {mariadb['binlogs_archived']} binlogs archived; restorable from "
                   f"{mariadb['earliest']} to {mariadb['latest']} ({mariadb['latest_basis']})")
        for row in mariadb["dumps"]:
            if row["first_missing_binlog"]:
                click.echo(f"  dump {row['snapshot_id'][:8]}: binlog "
                           f"{row['first_missing_binlog']} is missing; later ones are archived "
                           "but cannot be replayed from this dump")
    click.echo(f"repository {doc['repository']}: {doc['wal_in_store']} WAL files in the store, "
               f"{doc['wal_in_spool']} in the spool")
    click.echo(f"earliest restorable: {doc['earliest'] or '-'}")
    click.echo(f"latest restorable:   {doc['latest'] or '-'}"
               + (f" ({doc['latest_basis']})" if doc["latest_basis"] else ""))
    for row in doc["base_backups"]:
        state = (f"restorable to {row['latest']} ({row['last_wal']})" if row["complete"]
                 else f"NOT restorable: {row['first_missing_wal']} missing")
        click.echo(f"  base {row['snapshot_id'][:8]} consistent {row['consistent_at']}: {state}")
    for where in ("store", "spool"):
        newest = doc[f"newest_wal_in_{where}"]
        if newest:
            click.echo(f"newest WAL in the {where}: {newest['wal']} archived {newest['pushed_at']}"
                       f" ({newest['age_s']:.0f} s ago)")
    click.echo(f"RPO now: {doc['rpo_s']:.0f} s" if doc["rpo_s"] is not None
               else "RPO now: unknown (no WAL or binlog archived)")


@click.command("doctor")
@click.option("--pg", "dsn", metavar="DSN", help="The PostgreSQL server to check.")
@click.option("--mariadb", "mariadb_dsn", metavar="DSN",
              help="The MariaDB/MySQL server to check (mariadb://user@host:port).")
@click.option("--defaults-file", type=click.Path(dir_okay=False),
              help="With --mariadb: a MariaDB option file for the connection.")
@click.option("--ship-interval", type=click.FloatRange(min=1), default=86400.0,
              show_default=True, metavar="SECONDS",
              help="With --mariadb: how often binlogs are shipped (binlog expiry is "
              "checked against it).")
@json_option
@click.pass_context
def doctor_cmd(ctx: click.Context, dsn: str | None, mariadb_dsn: str | None,
               defaults_file: str | None, ship_interval: float, as_json: bool) -> int:
    """Check a PostgreSQL or MariaDB server's settings for backups; one line each, with
    what to change.

    \b
    Examples:
      drsync doctor --pg 'host=/run/postgresql user=postgres'
      drsync doctor --mariadb mariadb://backup@127.0.0.1:3306 --ship-interval 3600
    Exit 0: nothing to change; 1: at least one setting needs attention.
    """
    from drsync.errors import UsageError

    if (dsn is None) == (mariadb_dsn is None):
        raise UsageError("give one server to check: --pg DSN or --mariadb DSN")
    if mariadb_dsn is not None:
        from drsync.sources.mariadb.doctor import check_mariadb

        findings = check_mariadb(mariadb_dsn, defaults_file=defaults_file,
                                 ship_interval_s=ship_interval)
    else:
        from drsync.sources.postgres import PgTools
        from drsync.sources.postgres.archiver import check_archiver
        from drsync.sources.postgres.doctor import check_server

        assert dsn is not None
        tools = PgTools(settings_from(ctx).pg_bindir)
        # The settings, then whether archive_command actually works (pg_stat_archiver).
        findings = check_server(dsn, tools) + check_archiver(dsn, tools)
    if as_json:
        print_json([f.to_json() for f in findings])
    else:
        for f in findings:
            click.echo(f"{'ok  ' if f.ok else 'FIX '} {f.setting} = {f.value}: {f.advice}")
    return 0 if all(f.ok for f in findings) else 1
