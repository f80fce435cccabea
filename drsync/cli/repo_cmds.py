"""Repository commands: init, backup, snapshots, restore, check, unlock, runs."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from drsync.cli.context import (
    on_record,
    open_catalog,
    open_journal,
    open_repo,
    open_store_for,
    read_passphrase,
    repo_url,
    settings_from,
)
from drsync.cli.render import human_bytes, print_json, progress_bar

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


def _table(title: str | None = None) -> object:
    from rich.table import Table

    return Table(title=title, show_header=True, header_style="bold")


def _print(renderable: object) -> None:
    from rich.console import Console

    Console().print(renderable)


@click.command("init")
@click.option("--new-key-file", type=click.Path(dir_okay=False),
              help="Also create a key file (mode 0600) for unattended agents.")
@click.option("--chunk-avg-kib", type=int, help="Average chunk size in KiB (default 1024).")
@click.option("--pack-size-mib", type=int, help="Target pack size in MiB (default 16).")
@click.option("--compression-level", type=int, help="Default zstd level 0..22 (default 3).")
@click.option("--escrow-pubkey", type=click.Path(dir_okay=False),
              help="Also wrap the master key for the fleet operator's escrow key "
                   "(`drsync key gen-escrow`; [init] escrow_pubkey in the config).")
@json_option
@click.pass_context
def init_cmd(ctx: click.Context, new_key_file: str | None, chunk_avg_kib: int | None,
             pack_size_mib: int | None, compression_level: int | None,
             escrow_pubkey: str | None, as_json: bool) -> None:
    """Create a repository, wrapped by a passphrase (and optionally a key file).

    \b
    Examples:
      drsync --repo /srv/dr/tenant init --new-key-file /etc/drsync/tenant.key
      drsync --repo s3://dr-backups/tenant init --new-key-file /etc/drsync/tenant.key
    """
    from drsync.errors import StoreError
    from drsync.repo import RepoConfig, Repository
    from drsync.repo.keys import KeyFileSlot

    settings = settings_from(ctx, escrow_pubkey=escrow_pubkey)
    store = open_store_for(settings)
    escrow = None
    if settings.escrow_pubkey:
        from drsync.repo.escrow import EscrowPublicKey

        escrow = EscrowPublicKey.load(settings.escrow_pubkey)
    avg = (chunk_avg_kib or settings.chunk_avg_kib) * 1024
    config = RepoConfig(
        chunk_avg=avg,
        chunk_min=min(settings.chunk_min_kib * 1024, avg),
        chunk_max=max(settings.chunk_max_kib * 1024, avg),
        pack_size=(pack_size_mib or settings.pack_size_mib) << 20,
        compression_level=3 if compression_level is None and settings.compression_level is None
        else int(compression_level if compression_level is not None
                 else settings.compression_level or 0),
    ).validate()
    if store.exists("config"):
        from drsync.errors import RepositoryExists

        hint = ""
        if new_key_file and os.path.isfile(new_key_file) \
                and os.path.getsize(new_key_file) == 0:
            hint = (f"; its key file {new_key_file} is empty (an init was interrupted): "
                    f"add it with `drsync key add --new-key-file {new_key_file}` and the "
                    "passphrase")
        elif new_key_file and not os.path.exists(new_key_file):
            hint = (f" (if it is the one an init of yours cut short made, it opens with its "
                    f"passphrase: add the key file with `drsync key add --new-key-file "
                    f"{new_key_file}`)")
        raise RepositoryExists(f"a repository already exists at {store.url}{hint}")
    found = [info.key for info in store.list("")]
    if found and all(key.startswith("keys/") for key in found):
        # An init killed before its config: wrappings of a master key that no repository
        # ever named and nothing was sealed with. Removed, and the init made anew.
        for key in found:
            store.delete(key)
        click.echo(f"drsync: warning: {store.url}: removed {len(found)} key wrapping(s) "
                   "an interrupted init left (no config was written)", err=True)
    elif found:
        from drsync.errors import UsageError

        raise UsageError(f"{store.url} is not empty and is not a drsync repository; "
                         "choose an empty directory or bucket prefix")
    _refuse_enclosing_repository(settings, store.url)
    passphrase, _source = read_passphrase(settings, confirm=True)
    # The key file's path is taken before the store is touched: a key file that cannot be
    # written must not leave a repository behind with a wrapping nobody holds.
    slot = KeyFileSlot.claim(new_key_file) if new_key_file else None
    try:
        repo = Repository.init(store, passphrase, config, escrow=escrow)
    except BaseException:
        if slot is not None:
            slot.abandon()
        raise
    try:
        key_file = repo.add_key_file() if slot is not None else None
    except BaseException as err:
        if slot is not None:
            slot.abandon()
        if isinstance(err, StoreError):  # the repository is made: say so, and what is left
            raise type(err)(f"{err}; the repository {repo.config.id[:8]} was created and "
                            f"opens with its passphrase, but holds no key file yet: add it "
                            f"with `drsync key add --new-key-file {new_key_file}`") from None
        raise
    key_path = None
    if slot is not None and key_file is not None:
        slot.fill(key_file)
        key_path = new_key_file
    if as_json:
        print_json({"repository": repo.url, "id": repo.config.id, "key_file": key_path,
                    "escrow_key": escrow.key_id if escrow else None})
    else:
        click.echo(f"created repository {repo.config.id[:8]} at {repo.url}")
        if key_path:
            click.echo(f"key file written to {key_path} (keep a copy off this host)")
        if escrow:
            click.echo(f"escrow key {escrow.key_id} can recover this repository")


def _refuse_enclosing_repository(settings: Any, url: str) -> None:
    """UsageError when a repository already holds ``url`` (a directory or prefix inside
    it): the new one's objects would lie in the other's, under its retention, its
    prune and whatever grants access to it."""
    import dataclasses
    from pathlib import PurePosixPath

    from drsync.errors import DrsyncError
    from drsync.repo.objects import HEADER_SIZE, TYPE_CONFIG, header

    if url.startswith("s3://"):
        from drsync.store.base import parse_s3_url

        bucket, prefix = parse_s3_url(url)
        parts = [p for p in prefix.split("/") if p]
        above = [f"s3://{bucket}/{'/'.join(parts[:n])}".rstrip("/") for n in range(len(parts))]
    else:
        above = [str(p) for p in PurePosixPath(url).parents]
    for outer in reversed(above):
        try:
            store = open_store_for(dataclasses.replace(settings, repo=outer))
            first = store.get("config", 0, HEADER_SIZE)
        except (DrsyncError, OSError):
            continue  # none there, or no access above the prefix: nothing to say
        if first == header(TYPE_CONFIG):
            from drsync.errors import UsageError

            raise UsageError(f"{url} lies inside the repository {outer}: choose a directory "
                             "or bucket prefix outside every repository")


@click.command("backup")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--sqlite", "sqlite_db", type=click.Path(dir_okay=False),
              help="Back up a SQLite database consistently (online backup API).")
@click.option("--stdin-name", help="Back up standard input as one stream with this name "
              "(an empty one is refused: the program writing it may have failed).")
@click.option("--allow-empty", is_flag=True,
              help="With --stdin-name: back up an empty stream instead of refusing it.")
@click.option("--pg-dump", metavar="DSN",
              help="PostgreSQL logical backup: pg_dump -Fc -Z0, streamed, consistent snapshot.")
@click.option("--pg-dumpall-globals", is_flag=True,
              help="With --pg-dump: also roles and tablespaces (pg_dumpall --globals-only).")
@click.option("--pg-base", metavar="DSN",
              help="PostgreSQL physical base backup, block-incremental: the data directory "
              "read directly when it is on this machine, else pg_basebackup.")
@click.option("--pg-base-method", type=click.Choice(["auto", "direct", "stream"]),
              help="With --pg-base: direct (read the data directory), stream (pg_basebackup), "
              "or auto (direct when readable here; the default).")
@click.option("--pg-base-reread", is_flag=True, default=None,
              help="With --pg-base: read every file, also those unchanged (size and mtime) "
              "since the previous direct base backup.")
@click.option("--mariadb-dump", metavar="DSN",
              help="MariaDB/MySQL logical backup: mariadb-dump --single-transaction "
              "--master-data=2, streamed, binlog position recorded. DSN: "
              "mariadb://user@host:port/db (no /db: all databases).")
@click.option("--mariadb-database", "mariadb_databases", multiple=True, metavar="NAME",
              help="With --mariadb-dump: dump this database (repeatable).")
@click.option("--defaults-file", "mariadb_defaults_file", type=click.Path(dir_okay=False),
              help="With --mariadb-dump: a MariaDB option file (user, password, host...).")
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option("--host", help="Host name recorded in the snapshot (default: this host).")
@click.option("--tenant", help="Tenant name recorded with the run, as in the fleet file "
              "(default: the `tenant` setting, else the host).")
@click.option("--compression-level", type=click.IntRange(0, 22), help="zstd level (0 = none).")
@click.option("--dry-run", is_flag=True,
              help="Read, chunk and look up the source, store nothing: how many bytes this "
                   "backup would add (put on the link).")
@json_option
@click.pass_context
def backup_cmd(ctx: click.Context, paths: tuple[str, ...], sqlite_db: str | None,
               stdin_name: str | None, allow_empty: bool, pg_dump: str | None,
               pg_dumpall_globals: bool,
               pg_base: str | None, pg_base_method: str | None, pg_base_reread: bool | None,
               mariadb_dump: str | None, mariadb_databases: tuple[str, ...],
               mariadb_defaults_file: str | None,
               tags: tuple[str, ...], host: str | None,
               tenant: str | None, compression_level: int | None, dry_run: bool,
               as_json: bool) -> int:
    """Back up files and directories, a SQLite database, PostgreSQL, MariaDB, or stdin.

    \b
    Examples:
      drsync backup /srv/registry/exports --tag nightly
      drsync backup --sqlite /var/lib/app/municipal.db
      drsync backup --pg-dump 'host=/run/postgresql dbname=registry' --pg-dumpall-globals
      drsync backup --pg-base 'host=/run/postgresql user=postgres'
      drsync backup --mariadb-dump mariadb://backup@127.0.0.1:3306/registry
      drsync backup --mariadb-dump mariadb:// --defaults-file /etc/drsync/mariadb.cnf
      set -o pipefail; pg_dump -Fc registry | drsync backup --stdin-name registry.dump
      drsync backup --pg-dump 'dbname=registry' --dry-run --json   # bytes it would add
    Exit 3 means some files could not be read: the rest is in the snapshot.
    """
    from drsync.backup import BackupRequest, estimate_backup, run_backup

    settings = settings_from(ctx, pg_base_method=pg_base_method, pg_base_reread=pg_base_reread)
    request = BackupRequest(
        paths=list(paths), sqlite=sqlite_db, stdin_name=stdin_name, allow_empty=allow_empty,
        pg_dump=pg_dump,
        pg_dumpall_globals=pg_dumpall_globals, pg_base=pg_base,
        pg_base_method=settings.pg_base_method, pg_base_reread=settings.pg_base_reread,
        mariadb_dump=mariadb_dump,
        mariadb_databases=list(mariadb_databases), mariadb_defaults_file=mariadb_defaults_file,
        tags=list(tags) or list(settings.tags), host=host or settings.host,
        tenant=tenant or settings.tenant or host,
        compression_level=compression_level if compression_level is not None
        else settings.compression_level,
        workers=settings.workers, pg_bindir=settings.pg_bindir,
    )
    request.kind()  # usage errors before asking for a passphrase
    repo = open_repo(ctx)
    if dry_run:
        with progress_bar("dry run", enabled=not as_json) as (advance, _total):
            estimate = estimate_backup(repo, request, progress=advance)
        if as_json:
            print_json(estimate.to_json())
        else:
            click.echo(f"dry run, nothing stored: read {human_bytes(estimate.bytes_read)}, "
                       f"would add {human_bytes(estimate.bytes_to_add)} "
                       f"({estimate.chunks_new} of {estimate.chunks} chunks new)")
        return 0
    journal = open_journal(ctx)
    with progress_bar("backup", enabled=not as_json) as (advance, _total):
        result = run_backup(repo, request, catalog=journal, progress=advance)
    for problem in result.problems:
        click.echo(f"drsync: warning: {problem.path}: {problem.reason}", err=True)
    if as_json:
        print_json(result.to_json())
    else:
        ratio = result.bytes_read / result.bytes_added if result.bytes_added else float("inf")
        click.echo(
            f"snapshot {result.snapshot_id[:8]} saved: read {human_bytes(result.bytes_read)}, "
            f"added {human_bytes(result.bytes_added)} (ratio {ratio:.1f}x) "
            f"in {result.duration_s:.2f} s, {result.mb_per_s:.1f} MB/s"
        )
    return result.exit_code


@click.command("snapshots")
@json_option
@click.pass_context
def snapshots_cmd(ctx: click.Context, as_json: bool) -> None:
    """List snapshots, oldest first.

    \b
    Example:
      drsync snapshots --json | jq -r '.[-1].id'
    """
    from drsync.repo.check import recorded_snapshots_missing

    repo = open_repo(ctx)
    snaps, listed = repo.listed_snapshots()
    known = _recorded_snapshots(ctx, repo.url)
    if known:
        errors, _notes = recorded_snapshots_missing(known, listed, snaps)
        for error in errors:
            click.echo(f"drsync: warning: {error}", err=True)
    if as_json:
        print_json([
            {"id": s.id, "time": s.time, "start_time": s.start_time, "host": s.host,
             "tags": s.tags, "source": {"kind": s.source_kind, "spec": s.source_spec},
             "size": s.summary.get("bytes_read", 0), "summary": s.summary,
             "drsync_version": s.drsync_version}
            for s in snaps
        ])
        return
    table = _table()
    for column in ("id", "time (UTC)", "host", "tags", "source", "size"):
        table.add_column(column)  # type: ignore[attr-defined]
    for s in snaps:
        source = s.source_kind + ": " + str(
            s.source_spec.get("path") or s.source_spec.get("name")
            or " ".join(s.source_spec.get("paths", [])) or _pg_source(s.source_spec))
        table.add_row(s.short_id, s.time[:19].replace("T", " "), s.host,  # type: ignore[attr-defined]
                      ",".join(s.tags), source, human_bytes(s.summary.get("bytes_read", 0)))
    _print(table)


def _recorded_snapshots(ctx: click.Context, url: str) -> dict[str, str] | None:
    """The snapshots the local catalog recorded for ``url``; None (with a warning) when
    the catalog cannot be read: checking the store goes on without it."""
    from drsync.errors import DrsyncError

    try:
        catalog = open_catalog(ctx)
        try:
            return dict(catalog.snapshot_times(url))
        finally:
            catalog.close()
    except (DrsyncError, ImportError) as err:  # ImportError: an install without SQLAlchemy
        click.echo(f"drsync: warning: catalog not consulted: {err}", err=True)
        return None


def _pg_source(spec: dict[str, object]) -> str:
    if "binlog_file" in spec:  # mariadb_dump
        databases = spec.get("databases")
        names = " ".join(databases) if isinstance(databases, list) else "all"
        return (f"{names} at "
                f"{spec['binlog_file']}:{spec.get('binlog_position')}, "
                f"{str(spec.get('consistent_at'))[:19]}")
    if "stop_lsn" in spec:
        return (f"timeline {spec.get('timeline')} {spec.get('start_lsn')}..{spec.get('stop_lsn')}"
                f", consistent {str(spec.get('consistent_at'))[:19]}")
    return f"{spec.get('database')} as of {str(spec.get('consistent_at'))[:19]}"


@click.command("restore")
@click.argument("snapshot")
@click.option("--target", help="Directory to restore into (with --pgdata: only `latest`, "
              "the recovery target).")
@click.option("--stdout", "to_stdout", is_flag=True, help="Write the single stream to stdout.")
@click.option("--pg-restore", metavar="DSN",
              help="Load a --pg-dump snapshot into this database with pg_restore; created "
              "(from template0, owned by the DSN's user) if it does not exist.")
@click.option("--clean", is_flag=True, help="With --pg-restore: restore into a database "
              "that is not empty, dropping the dump's objects first (pg_restore --clean).")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="pg_restore parallel jobs (>1 stages the dump in a temporary file).")
@click.option("--no-owner", is_flag=True, help="pg_restore --no-owner --no-privileges.")
@click.option("--pg-globals", is_flag=True, help="Also apply the snapshot's roles/tablespaces.")
@click.option("--pgdata", type=click.Path(file_okay=False),
              help="Write a --pg-base snapshot into this empty directory, configured for "
              "recovery from the WAL archive.")
@click.option("--delta", is_flag=True,
              help="With --target or --pgdata: the directory may hold files already (a stale "
              "standby, an interrupted restore); make it equal to the snapshot, fetching only "
              "files whose size or checksum differ and removing what the snapshot lacks.")
@click.option("--target-time", metavar="TS", help="Recover to this moment (e.g. "
              "'2026-11-27 03:00:00+09').")
@click.option("--target-lsn", metavar="LSN", help="Recover to this WAL position.")
@click.option("--start", "start_server", is_flag=True,
              help="Start the restored cluster and wait until recovery ended.")
@click.option("--pg-option", "pg_options", multiple=True, metavar="KEY=VALUE",
              help="Extra postgresql.auto.conf setting for the restored cluster (repeatable), "
              "e.g. port=5433.")
@click.option("--keep-archiving", is_flag=True,
              help="Keep the backup's archive settings (default: archive_mode = off).")
@click.option("--drsync-command", metavar="PATH",
              help="drsync executable for restore_command (default: this one).")
@click.option("--spool", type=click.Path(file_okay=False),
              help="Also let restore_command look in this WAL spool.")
@click.option("--mariadb-restore", metavar="DSN",
              help="Load a --mariadb-dump snapshot into this server (mariadb://user@host:port"
              "/db; the database is created if missing), then with --target-time, "
              "--target-position or --target latest replay the archived binlogs.")
@click.option("--target-position", metavar="FILE:POS",
              help="With --mariadb-restore: replay binlogs up to this position.")
@click.option("--defaults-file", "mariadb_defaults_file", type=click.Path(dir_okay=False),
              help="With --mariadb-restore: a MariaDB option file for the connection.")
@json_option
@click.pass_context
def restore_cmd(ctx: click.Context, snapshot: str, target: str | None, to_stdout: bool,
                pg_restore: str | None, clean: bool, jobs: int, no_owner: bool,
                pg_globals: bool, pgdata: str | None, delta: bool, target_time: str | None,
                target_lsn: str | None, start_server: bool, pg_options: tuple[str, ...],
                keep_archiving: bool, drsync_command: str | None, spool: str | None,
                mariadb_restore: str | None, target_position: str | None,
                mariadb_defaults_file: str | None, as_json: bool) -> None:
    """Restore SNAPSHOT (an id, a unique prefix, or `latest`), verifying every blob.

    \b
    Examples:
      drsync restore latest --target /srv/restore/registry
      drsync restore 3fa1c2d0 --stdout | pg_restore -d registry
      drsync restore 3fa1c2d0 --pg-restore 'host=db2 dbname=registry_restored' --jobs 4
        (creates registry_restored; an existing database must be empty, or add --clean)
      drsync restore 9b2e41aa --pgdata /srv/pg/main --target-time '2026-11-27 10:15+09' --start
      drsync restore latest --mariadb-restore mariadb://root@db2:3306/registry \\
          --target-time '2026-11-27 10:15:00+09:00'
      drsync restore latest --pgdata /srv/pg/standby --delta --start   (over a stale copy)
      drsync restore latest --target /srv/restore/registry --delta     (into what is there)
    Run again after it was killed, a restore resumes: what it finished is verified
    and kept (as with --delta), only the rest is fetched.

    Every restore is a run of kind `restore` in the catalog (`drsync runs`) and ends
    with a summary (--json: the same as one document). With --pgdata, the generated
    restore_command is run once for the first WAL file needed, as the server's user;
    with --start, the summary says where recovery stopped, as the server reports it.
    """
    from drsync.errors import UsageError

    if mariadb_restore:
        _restore_mariadb(ctx, snapshot, mariadb_restore, mariadb_defaults_file, clean, target,
                         target_time, target_position, spool, as_json)
        return
    if target_position or mariadb_defaults_file:
        raise UsageError("--target-position and --defaults-file go with --mariadb-restore")
    if delta and (to_stdout or pg_restore):
        raise UsageError("--delta goes with --target DIR or --pgdata DIR")
    if pgdata or pg_restore:
        if clean and not pg_restore:
            raise UsageError("--clean goes with --pg-restore")
        _restore_postgres(ctx, snapshot, target, pg_restore, jobs, no_owner, pg_globals, pgdata,
                          target_time, target_lsn, start_server, pg_options, keep_archiving,
                          drsync_command, spool, as_json, clean, delta)
        return
    if target_time or target_lsn or start_server:
        raise UsageError("--target-time, --target-lsn and --start go with --pgdata")
    if clean:
        raise UsageError("--clean goes with --pg-restore")
    from drsync.errors import RestoreTargetError
    from drsync.restore import restore_snapshot

    if to_stdout and as_json:
        raise UsageError("--stdout and --json both want standard output; choose one")
    if to_stdout and sys.stdout is None:
        raise RestoreTargetError("standard output is closed: nothing can be written to it "
                                 "(redirect it to a file or a program)")
    settings = settings_from(ctx)
    repo = open_repo(ctx)
    with progress_bar("restore", enabled=not as_json) as (advance, set_total):
        result = restore_snapshot(repo, snapshot, target=target,
                                  stdout=sys.stdout.buffer if to_stdout else None,
                                  progress=advance, on_snapshot=set_total, delta=delta,
                                  catalog=open_journal(ctx), tenant=settings.tenant)
    if as_json:
        print_json(result.to_json())
    elif not to_stdout:
        click.echo(f"restored snapshot {result.snapshot_id[:8]} into {result.target}: "
                   f"{result.items} items, {human_bytes(result.bytes_written)} written "
                   f"({human_bytes(result.bytes_fetched)} fetched) in {result.duration_s:.2f} s, "
                   f"{result.mb_per_s:.1f} MB/s, every blob verified")
        if result.delta:
            click.echo(_delta_line(result.files_written, result.files_kept, result.bytes_kept,
                                   result.removed, result.resumed))


def _delta_line(written: int, kept: int, bytes_kept: int, removed: int,
                resumed: bool) -> str:
    how = "resumed an unfinished restore of this snapshot" if resumed else "delta"
    return (f"{how}: {kept} files already there and verified ({human_bytes(bytes_kept)}), "
            f"{written} written, {removed} entries removed")


def _restore_mariadb(ctx: click.Context, snapshot: str, dsn: str, defaults_file: str | None,
                     clean: bool, target: str | None, target_time: str | None,
                     target_position: str | None, spool: str | None, as_json: bool) -> None:
    from drsync.errors import UsageError
    from drsync.mariadbrestore import BinlogTarget, restore_mariadb
    from drsync.wal.spool import Spool

    if target not in (None, "latest"):
        raise UsageError("with --mariadb-restore, --target takes only `latest` (or use "
                         "--target-time / --target-position)")
    settings = settings_from(ctx, spool=spool)
    repo = open_repo(ctx, settings)
    with progress_bar("restore", enabled=not as_json) as (advance, set_total):
        result = restore_mariadb(
            repo, snapshot, dsn, defaults_file=defaults_file, clean=clean,
            target=BinlogTarget(time=target_time, position=target_position,
                                latest=target == "latest"),
            spool=Spool.if_present(settings.wal_spool()) if settings.repo or spool else None,
            progress=advance, on_total=set_total)
    if as_json:
        print_json(result.to_json())
        return
    details = result.details
    where = details["target_database"] or "the server"
    click.echo(f"restored mariadb_dump snapshot {result.snapshot_id[:8]} into {where}: "
               f"{human_bytes(result.bytes_written)} in {result.duration_s:.2f} s, "
               "every blob verified" + (f" (created {', '.join(details['created'])})"
                                        if details["created"] else ""))
    if details["replayed"]:
        click.echo(f"replayed {len(details['replayed'])} binlog(s) from "
                   f"{details['binlog_start']} to {details['target']}: "
                   f"{details['replayed'][0]}..{details['replayed'][-1]}")


def _restore_postgres(ctx: click.Context, snapshot: str, target: str | None,
                      pg_restore: str | None, jobs: int, no_owner: bool, pg_globals: bool,
                      pgdata: str | None, target_time: str | None, target_lsn: str | None,
                      start_server: bool, pg_options: tuple[str, ...], keep_archiving: bool,
                      drsync_command: str | None, spool: str | None, as_json: bool,
                      clean: bool = False, delta: bool = False) -> None:
    from drsync.errors import UsageError
    from drsync.pgrestore import restore_command_for, restore_logical, restore_pgdata
    from drsync.sources.postgres import RecoveryTarget

    if pgdata and pg_restore:
        raise UsageError("give --pg-restore DSN or --pgdata DIR, not both")
    if pg_restore:
        settings = settings_from(ctx)
        repo = open_repo(ctx)
        with progress_bar("pg_restore", enabled=not as_json) as (advance, set_total):
            result = restore_logical(repo, snapshot, pg_restore, jobs=jobs,
                                     no_owner=no_owner, with_globals=pg_globals, clean=clean,
                                     pg_bindir=settings.pg_bindir, progress=advance,
                                     on_snapshot=set_total, catalog=open_journal(ctx),
                                     tenant=settings.tenant)
    else:
        assert pgdata is not None
        if target not in (None, "latest"):
            raise UsageError("with --pgdata, --target takes only `latest` (or use "
                             "--target-time / --target-lsn)")
        if sum(x is not None for x in (target, target_time, target_lsn)) > 1:
            raise UsageError("give one of --target-time, --target-lsn, --target latest")
        options = {}
        for opt in pg_options:
            key, sep, value = opt.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--pg-option {opt!r} is not KEY=VALUE")
            options[key.strip()] = value.strip()
        settings = settings_from(ctx, spool=spool)
        command = restore_command_for(repo_url(settings), key_file=settings.key_file,
                                      password_file=settings.password_file,
                                      spool=settings.spool, drsync_command=drsync_command,
                                      config=settings.source or None)
        repo = open_repo(ctx, settings)
        with progress_bar("restore", enabled=not as_json) as (advance, set_total):
            result = restore_pgdata(repo, snapshot, pgdata,
                                    target=RecoveryTarget(time=target_time, lsn=target_lsn),
                                    restore_command=command, options=options,
                                    keep_archiving=keep_archiving, start=start_server,
                                    pg_bindir=settings.pg_bindir, delta=delta,
                                    progress=advance, on_snapshot=set_total,
                                    catalog=open_journal(ctx), tenant=settings.tenant)
    if as_json:
        print_json(result.to_json())
        return
    details = result.details
    click.echo(f"restored {result.kind} snapshot {result.snapshot_id[:8]}: "
               f"{human_bytes(result.bytes_written)} written "
               f"({human_bytes(details['bytes_fetched'])} fetched) in "
               f"{result.duration_s:.2f} s, every blob verified")
    if result.kind == "pg_dump":
        click.echo(f"into database {details['target_database']}"
                   + (" (created)" if details["created"] else ""))
    if result.kind == "pg_base":
        _pgdata_summary(details)


def _pgdata_summary(details: dict[str, Any]) -> None:
    if details["delta"]:
        click.echo(_delta_line(details["files_written"], details["files_kept"],
                               details["bytes_kept"], details["removed"], details["resumed"]))
    wal = details["wal_needed"]
    click.echo(f"recovery configured in {details['config']}: target {details['target']}, "
               f"WAL {wal[0]}..{wal[1]} needed at least")
    checked = details.get("restore_command_checked")
    if isinstance(checked, dict):
        click.echo(f"restore_command works: fetched {checked['wal']} as user {checked['user']}")
    recovery = details.get("recovery")
    if details.get("started") and isinstance(recovery, dict):
        click.echo(f"PostgreSQL is up on port {details['port']} "
                   f"(socket {details['socket_dir']}), recovery finished")
        click.echo(f"recovery stopped: last transaction replayed committed at "
                   f"{recovery['last_replayed_xact_at'] or '-'} (LSN "
                   f"{recovery['last_replay_lsn'] or '-'}), now on timeline "
                   f"{recovery['timeline']}, {recovery['wal_files_fetched']} WAL files fetched"
                   + (f" ({recovery['first_wal_fetched']}..{recovery['last_wal_fetched']})"
                      if recovery["first_wal_fetched"] else ""))
        if recovery.get("stopped"):
            click.echo(f"server log: {recovery['stopped']}")
    else:
        click.echo(details["recovery_hint"])


@click.command("check")
@click.option("--read-data", is_flag=True, help="Read and verify every byte of every pack.")
@click.option("--cleanup-uploads", is_flag=True,
              help="Abort stale unfinished (multipart) uploads that a cut or killed run left "
                   "on the store; they are listed either way.")
@json_option
@click.pass_context
def check_cmd(ctx: click.Context, read_data: bool, cleanup_uploads: bool, as_json: bool) -> int:
    """Check the repository: every referenced object exists (and with --read-data, verifies).

    Also: which snapshots a missing or damaged blob keeps from being restored,
    gaps in the archived WAL after each base backup (with --read-data, every
    WAL object authenticated), and snapshots the local catalog recorded that
    the store no longer holds (a rollback).

    \b
    Examples:
      drsync check --read-data
      drsync --repo s3://dr-backups/registry check --cleanup-uploads
    Exit 0: consistent. Exit 13: one `error:` line per problem names the object.
    Unreferenced packs and unfinished uploads are `note:` lines, not errors.
    """
    import dataclasses

    from drsync.errors import IntegrityError
    from drsync.repo.check import check_repository

    settings = settings_from(ctx)
    # The store's documents are what must be sound, not the local cache's copies of them.
    repo = open_repo(ctx, dataclasses.replace(settings, cache=False))
    known = _recorded_snapshots(ctx, repo.url)
    # On record like a backup (kind check): the audit report's integrity evidence.
    source = "check --read-data" if read_data else "check"
    with on_record(ctx, repo, "check", source) as run:
        with progress_bar("check", enabled=not as_json and read_data) as (advance, set_total):
            report = check_repository(repo, read_data=read_data, progress=advance,
                                      on_total=set_total, cleanup_uploads=cleanup_uploads,
                                      known_snapshots=known)
        run.update(status="ok" if report.ok else "failed", bytes_read=report.bytes_verified,
                   error=None if report.ok else
                   f"{len(report.errors)} error(s): {report.errors[0]}"[:500])
    if as_json:
        print_json(report.to_json())
    else:
        for note in report.notes:
            click.echo(f"note: {note}")
        for error in report.errors:
            click.echo(f"error: {error}")
        verdict = "no errors" if report.ok else f"{len(report.errors)} error(s)"
        click.echo(f"checked {report.snapshots} snapshots, {report.packs} packs, "
                   f"{report.blobs} blobs"
                   + (f", {report.wal_files} WAL files" if report.wal_files else "")
                   + (f", {human_bytes(report.bytes_verified)} read" if read_data else "")
                   + f": {verdict}")
    return 0 if report.ok else IntegrityError.exit_code


@click.command("unlock")
@click.option("--force", is_flag=True, help="Remove the lock even if its holder looks alive.")
@click.pass_context
def unlock_cmd(ctx: click.Context, force: bool) -> int:
    """Remove a stale writer lock (one whose process is gone).

    \b
    Example:
      drsync unlock            # only a stale lock
      drsync unlock --force    # the holder is known dead on another host
    """
    from drsync.repo.lock import read_lock, remove_lock

    store = open_store_for(settings_from(ctx))
    lock = read_lock(store)
    if lock is None:
        remove_lock(store)  # leftover takeover claims, if any
        click.echo("repository is not locked")
        return 0
    reason = lock.stale_reason()
    if not force and reason is None:
        click.echo(f"drsync: error: lock is held by {lock.describe()}; use --force if that "
                   "process is known dead", err=True)
        return 12
    remove_lock(store)
    click.echo(f"removed lock of {lock.describe()}" + (f" (stale: {reason})" if reason else ""))
    return 0


@click.command("runs")
@click.option("--limit", default=50, show_default=True, help="How many runs, newest first.")
@click.option("--all-repos", is_flag=True, help="Runs of every repository in the catalog.")
@click.option("--from-store", is_flag=True,
              help="First import the repository's run records into the catalog (rebuilds "
                   "a lost catalog; runs already there are not duplicated).")
@json_option
@click.pass_context
def runs_cmd(ctx: click.Context, limit: int, all_repos: bool, from_store: bool,
             as_json: bool) -> None:
    """Show the catalog of backup runs, newest first.

    \b
    Examples:
      drsync runs --json --limit 5
      drsync runs --from-store      # the catalog was lost: rebuild it from the store
    """
    settings = settings_from(ctx)
    catalog = open_catalog(ctx)
    if from_store:
        from drsync.repo.runs import load_runs

        repo = open_repo(ctx)
        count = catalog.import_runs(repo.url, load_runs(repo))
        click.echo(f"imported {count} run record(s) from {repo.url}", err=True)
    records = catalog.runs(None if all_repos or not settings.repo
                           else open_store_for(settings).url, limit)
    if as_json:
        print_json([r.to_json() for r in records])
        return
    table = _table()
    for column in ("run", "kind", "tenant", "started (UTC)", "ended", "status", "read",
                   "added", "snapshot", "error"):
        table.add_column(column)  # type: ignore[attr-defined]
    for r in records:
        table.add_row(r.id[:8], r.kind, r.tenant_name,  # type: ignore[attr-defined]
                      r.started.strftime("%Y-%m-%d %H:%M:%S"),
                      r.ended.strftime("%H:%M:%S") if r.ended else "-", r.status,
                      human_bytes(r.bytes_read), human_bytes(r.bytes_added),
                      (r.snapshot_id or "-")[:8], r.error or "")
    _print(table)
