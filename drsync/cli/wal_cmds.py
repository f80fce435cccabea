"""WAL archiving commands: wal-push (archive_command), wal-receive (streaming), wal-ship,
wal-fetch (restore_command); binlog-receive (MariaDB binary logs into the same spool).

wal-push is on PostgreSQL's critical path: this module imports only the
spool, the WAL object format and the key code at module level.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from drsync.cli.context import config_option as cli_config_option
from drsync.cli.context import resolve_secret, settings_from
from drsync.errors import DrsyncError, WalNotFound

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
spool_option = click.option(
    "--spool", type=click.Path(file_okay=False),
    help="Local spool directory (default: per repository under the user's state directory).",
)


config_option = cli_config_option()


def _spool(ctx: click.Context, spool: str | None) -> Any:
    from drsync.wal.push import resolve_spool

    return resolve_spool(settings_from(ctx, spool=spool))


def _repo_key(ctx: click.Context, spool: str | None) -> Any:
    from drsync.cli.context import open_repo

    return open_repo(ctx, settings_from(ctx, spool=spool)).key


def _key(ctx: click.Context, spooler: Any, spool: str | None) -> Any:
    from drsync.wal.push import spool_key, wrapping_from_store

    settings = settings_from(ctx, spool=spool)
    return spool_key(spooler, settings.key_file, wrapping_from_store(settings),
                     lambda: _repo_key(ctx, spool))


def _echo_json(doc: Any) -> None:
    from drsync.cli.render import print_json

    print_json(doc)


@click.command("wal-push")
@click.argument("path", type=click.Path(dir_okay=False))
@spool_option
@config_option
@json_option
@click.pass_context
def wal_push_cmd(ctx: click.Context, path: str, spool: str | None, as_json: bool) -> None:
    """Seal a WAL file (%p) into the local spool and fsync it: PostgreSQL's archive_command.

    Exit 0 only once the sealed file is durable in the spool. The same file
    pushed again with the same content succeeds; with different content it
    fails (exit 20) and nothing is overwritten.

    \b
    Example (postgresql.conf; no config file needed, environment works too):
      archive_command = 'drsync wal-push --config /etc/drsync/agent.toml %p'
      archive_command = 'DRSYNC_KEY_FILE=/etc/drsync/t.key drsync wal-push %p'
    """
    from drsync.wal.push import push_segment

    started = time.monotonic()
    result, spooler = push_segment(path, settings_from(ctx, spool=spool),
                                   lambda: _repo_key(ctx, spool))
    if as_json:
        _echo_json({"name": result.name, "size": result.size, "stored": result.stored,
                    "duplicate": result.duplicate, "spool": str(spooler.dir),
                    "duration_s": round(time.monotonic() - started, 6)})


def _stop_on_signals() -> Any:
    """A ``stop()`` for the receivers: true once SIGTERM or SIGINT arrived."""
    import signal

    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    return lambda: bool(stopping)


def _spooled_printer(as_json: bool) -> Any:
    def spooled(pushed: Any) -> None:
        if not as_json:
            click.echo(f"spooled {pushed.name} ({pushed.size} bytes, sealed {pushed.stored})")
    return spooled


@click.command("wal-receive")
@click.argument("dsn")
@click.option("--slot", default="drsync", show_default=True,
              help="Physical replication slot (created if missing): the server keeps WAL "
              "until drsync has it, even while drsync is down.")
@spool_option
@click.option("--staging", type=click.Path(file_okay=False),
              help="Where pg_receivewal writes (default: <spool>/.receive).")
@config_option
@json_option
@click.pass_context
def wal_receive_cmd(ctx: click.Context, dsn: str, slot: str, spool: str | None,
                    staging: str | None, as_json: bool) -> None:
    """Stream WAL with pg_receivewal into the spool, for servers whose archive_command
    cannot be changed; runs until SIGTERM.

    Every segment pg_receivewal completes (never a .partial) is sealed into
    the same spool wal-push uses, durably, and `wal-ship` ships it as
    usual. The server needs max_wal_senders > 0 and a replication entry in
    pg_hba.conf for the DSN's user; archive_mode may stay off. Stop it
    with SIGTERM (systemd) or Ctrl-C: what is complete is spooled first.

    \b
    Example (as a service beside `wal-ship --continuous`):
      drsync --config /etc/drsync/agent.toml wal-receive 'host=/run/postgresql user=postgres'
    """
    from drsync.wal.receive import receive_wal, staging_dir

    spooler = _spool(ctx, spool)
    key = _key(ctx, spooler, spool)
    stopping = _stop_on_signals()
    spooled = _spooled_printer(as_json)

    from drsync.sources.postgres import PgTools

    result = receive_wal(dsn, spooler, key, slot=slot,
                         tools=PgTools(settings_from(ctx, spool=spool).pg_bindir),
                         staging=staging_dir(spooler, staging), stop=stopping,
                         on_spooled=spooled)
    if as_json:
        _echo_json(result.to_json())
    else:
        click.echo(f"stopped: {len(result.spooled)} WAL file(s) spooled into {spooler.dir}")


@click.command("binlog-receive")
@click.argument("dsn")
@click.option("--defaults-file", type=click.Path(dir_okay=False),
              help="A MariaDB option file (user, password, host...) for the connection.")
@spool_option
@click.option("--staging", type=click.Path(file_okay=False),
              help="Where mariadb-binlog writes (default: <spool>/.binlog-receive).")
@click.option("--start-file", metavar="NAME",
              help="The first binlog of a new spool (default: the oldest the server has), "
                   "or where to start instead of where the last run stopped (what the "
                   "staging holds is set aside).")
@click.option("--rotate-every", type=click.FloatRange(min=0), default=0.0,
              metavar="SECONDS", help="FLUSH BINARY LOGS this often, so no change waits "
              "longer than that in an unsealed file (0: only when the server rotates).")
@click.option("--server-id", type=click.IntRange(1, 2**32 - 1), default=4127,
              show_default=True, help="The replica server id mariadb-binlog connects as.")
@config_option
@json_option
@click.pass_context
def binlog_receive_cmd(ctx: click.Context, dsn: str, defaults_file: str | None,
                       spool: str | None, staging: str | None, start_file: str | None,
                       rotate_every: float, server_id: int, as_json: bool) -> None:
    """Copy MariaDB/MySQL binary logs into the spool as the server writes them; runs until
    SIGTERM.

    mariadb-binlog --read-from-remote-server --raw --stop-never copies each
    binlog byte for byte; every complete one (the server went on to the next)
    is sealed into the spool wal-push uses, durably, and `wal-ship` ships
    it. The file still being written is never sealed; a restart resumes from
    the last complete file. The DSN's user needs REPLICATION SLAVE (and
    RELOAD for --rotate-every); `doctor --mariadb DSN` checks the server.

    \b
    Example (as a service beside `wal-ship --continuous`):
      drsync --config /etc/drsync/agent.toml binlog-receive mariadb:// \\
          --defaults-file /etc/drsync/mariadb.cnf --rotate-every 300
    """
    from drsync.wal.binlog import binlog_staging, receive_binlogs

    spooler = _spool(ctx, spool)
    key = _key(ctx, spooler, spool)
    stopping = _stop_on_signals()
    spooled = _spooled_printer(as_json)

    result = receive_binlogs(dsn, spooler, key, defaults_file=defaults_file,
                             staging=binlog_staging(spooler, staging), start_file=start_file,
                             rotate_every_s=rotate_every, server_id=server_id,
                             stop=stopping, on_spooled=spooled)
    if as_json:
        _echo_json(result.to_json())
    else:
        click.echo(f"stopped: {len(result.spooled)} binlog(s) spooled into {spooler.dir}")


@click.command("wal-ship")
@spool_option
@config_option
@click.option("--continuous", is_flag=True, help="Keep shipping until stopped (SIGTERM).")
@click.option("--interval", type=float, default=10.0, show_default=True,
              help="Seconds between passes with --continuous.")
@json_option
@click.pass_context
def wal_ship_cmd(ctx: click.Context, spool: str | None, continuous: bool, interval: float,
                 as_json: bool) -> None:
    """Move spooled WAL files and binlogs to the store; a spooled file is deleted only once
    stored.

    \b
    Examples:
      drsync --config /etc/drsync/agent.toml wal-ship              # once, in the window
      drsync --config /etc/drsync/agent.toml wal-ship --continuous # all day
      drsync --limit-upload 20Mbit wal-ship --continuous           # within the tenant's share
    """
    from drsync.cli.context import open_repo
    from drsync.wal.ship import ship_continuously, ship_spool

    spooler = _spool(ctx, spool)

    def report(result: Any, url: str) -> None:
        if as_json:
            _echo_json(result.to_json())
        elif result.shipped or result.already or not continuous:
            click.echo(f"shipped {len(result.shipped)} WAL file(s)"
                       + (f" ({len(result.already)} already stored)" if result.already else "")
                       + f" from {spooler.dir} to {url}")

    def connect() -> Any:
        from drsync.wal.push import refresh_cached_wrapping

        settings = settings_from(ctx, spool=spool)
        repo = open_repo(ctx, settings)
        if refresh_cached_wrapping(spooler, settings.key_file, repo.store):
            click.echo(f"drsync: the key wrapping cached in {spooler.dir} predated a key "
                       "rotation: replaced, so wal-push seals with the new generation", err=True)
        return repo.store, repo.key

    if not continuous:
        store, key = connect()
        report(ship_spool(spooler, store, key), store.url)
        return
    # A store outage is waited out (the spool keeps every file); SIGTERM ends it, exit 0.
    ship_continuously(spooler, connect, interval_s=interval, stop=_stop_on_signals(),
                      on_pass=report, log=lambda line: click.echo(f"drsync: {line}", err=True))


def _cpu_budget(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise click.BadParameter(f"{text!r}: a share of one core, like 25% or 0.25 "
                                 f"(above 0, at most 100%)")
    return value


@click.command("wal-recompress")
@spool_option
@config_option
@click.option("--preset", type=click.IntRange(0, 9), default=None,
              help="LZMA preset (default 6, chosen by bench/wal_recompress_bench.py).")
@click.option("--cpu-budget", "cpu_budget", default="50%", show_default=True,
              help="At most this share of one core, averaged over the run (25% or 0.25).")
@click.option("--no-idle", is_flag=True,
              help="Keep the normal priority (default: nice 19 and the idle I/O class).")
@json_option
@click.pass_context
def wal_recompress_cmd(ctx: click.Context, spool: str | None, preset: int | None,
                       cpu_budget: str, no_idle: bool, as_json: bool) -> None:
    """Recompress spooled WAL with LZMA during the day: fewer bytes for the night's wal-ship.

    wal-push seals with fast zstd (it is on PostgreSQL's critical path);
    this reseals what waits in the spool with LZMA, about 31% smaller on
    municipal WAL, at idle priority and within a CPU budget. Every file
    stays durable in one form or the other, and every reader (wal-ship,
    wal-fetch, pitr-range, check) opens both.

    \b
    Examples:
      drsync --config /etc/drsync/agent.toml wal-recompress
      drsync --config /etc/drsync/agent.toml wal-recompress --cpu-budget 25% --json
    """
    from drsync.cli.render import progress_bar
    from drsync.wal.recompress import (
        DEFAULT_PRESET,
        CpuBudget,
        lower_priority,
        recompress_spool,
    )

    fraction = _cpu_budget(cpu_budget)
    spooler = _spool(ctx, spool)
    if not spooler.dir.is_dir():
        result_doc = {"recompressed": 0, "note": f"no spool at {spooler.dir}"}
        if as_json:
            _echo_json(result_doc)
        else:
            click.echo(f"nothing to recompress: no spool at {spooler.dir}")
        return
    key = _key(ctx, spooler, spool)
    priority = {} if no_idle else lower_priority()
    with progress_bar("recompressing WAL", spooler.usage()[1]) as (advance, _):
        result = recompress_spool(spooler, key,
                                  preset=DEFAULT_PRESET if preset is None else preset,
                                  budget=CpuBudget(fraction),
                                  progress=lambda _name, n: advance(n))
    result.priority = priority
    if as_json:
        _echo_json(result.to_json())
        return
    saved = result.bytes_before - result.bytes_after
    click.echo(f"recompressed {len(result.recompressed)} WAL file(s) in {spooler.dir}: "
               f"{result.bytes_before} -> {result.bytes_after} bytes ({saved} saved)"
               + (f"; {result.already} already LZMA" if result.already else "")
               + f"; {result.cpu_s:.1f} CPU-s, {result.waited_s:.1f} s paced")


@click.command("wal-fetch")
@click.argument("name")
@click.argument("dest", type=click.Path(dir_okay=False))
@spool_option
@config_option
@click.pass_context
def wal_fetch_cmd(ctx: click.Context, name: str, dest: str, spool: str | None) -> None:
    """Write WAL file NAME (%f) to DEST (%p) from the spool or the store: restore_command.

    Every byte is authenticated and verified first. Exit 1, silently: the
    file does not exist (PostgreSQL asks for such files as part of recovery,
    and then ends it normally). Any other failure (a damaged object, an
    unreachable store, a wrong key) exits 126 with one line, which
    PostgreSQL treats as fatal, so recovery stops instead of silently ending
    early. The spool is read when it exists and never created: a restore
    host does not need the tenant host's spool.

    Prefetch: when DEST is in pg_wal (restore_command's %p), a segment
    fetched here also starts a detached prefetcher that keeps the next
    `[restore] wal_prefetch` segments (default 8, 0: off) verified in
    pg_wal/.drsync-prefetch/; the next wal-fetch of one of them only renames
    it into place. It exits on its own once recovery stops asking.

    \b
    Example (postgresql.auto.conf, as written by `drsync restore --pgdata`):
      restore_command = 'drsync --repo /srv/dr/t --key-file /etc/t.key wal-fetch %f %p'
    """
    from drsync.wal.queue import take_queued

    if take_queued(name, dest):  # drsync.entry usually serves these before click loads
        return
    try:
        _fetch(ctx, name, dest, spool)
    except WalNotFound:
        sys.exit(WalNotFound.exit_code)
    except DrsyncError as err:
        click.echo(f"drsync: error: {err}", err=True)
        sys.exit(126)


def _fetch(ctx: click.Context, name: str, dest: str, spool: str | None) -> None:
    from drsync.wal.ship import fetch_for_recovery

    settings = settings_from(ctx, spool=spool)

    def repo_key(store: Any) -> Any:
        from drsync.repo.repository import Repository

        return Repository.open(store, resolve_secret(settings)).key

    fetch_for_recovery(name, dest, settings, repo_key)
