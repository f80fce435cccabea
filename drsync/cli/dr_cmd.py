"""``drsync dr plan`` and ``drsync dr restore``: a whole fleet back, by priority."""

from __future__ import annotations

import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import click

from drsync.cli.context import open_catalog, open_journal, settings_from
from drsync.cli.render import human_bytes, print_json

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@click.group("dr")
def dr_cmd() -> None:
    """Disaster recovery of a fleet: plan it, then restore every tenant by priority."""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _restore_rate(ctx: click.Context, configured: float | None) -> Any:
    """The rate the catalog's earlier restores and drills achieved (else the configured)."""
    from drsync.dr.plan import measured_rate

    catalog = open_catalog(ctx)
    try:
        runs = catalog.runs(limit=None)
    finally:
        catalog.close()
    samples = [(r.bytes_read, (r.ended - r.started).total_seconds()) for r in runs
               if r.kind in ("restore", "drill") and r.status == "ok" and r.ended]
    return measured_rate(samples, configured)


@dr_cmd.command("plan")
@click.argument("fleet", type=click.Path(dir_okay=False))
@json_option
@click.pass_context
def plan_cmd(ctx: click.Context, fleet: str, as_json: bool) -> int:
    """For every tenant of FLEET in restore order (priority, then rto_hours): the latest
    restorable point, bytes to fetch, the predicted restore time and whether the RTO
    is met. Tenants with nothing to restore come first, with the reason.

    Each tenant's `repo` is opened with its `key_file`, else the fleet's
    [keys] escrow_key, and with the store options of the config file. The rate
    is measured from the catalog's earlier restores and drills, else
    [dr] restore_mbit_per_s, else 100 Mbit/s. Exit 0 when every tenant is
    restorable within its RTO, 1 otherwise.

    \b
    Examples:
      drsync --config /etc/drsync/dc2.toml dr plan fleet.toml
      drsync dr plan fleet.toml --json | jq '.tenants[] | select(.rto_met | not)'
    """
    from drsync.dr.plan import dr_plan
    from drsync.dr.probe import probe_fleet
    from drsync.plan.fleetfile import load_fleet

    parsed = load_fleet(fleet, planning=False)
    settings = settings_from(ctx)
    probes = probe_fleet(parsed, settings)
    plan = dr_plan(probes, _restore_rate(ctx, parsed.restore_mbit_per_s), datetime.now(UTC))
    if as_json:
        print_json(plan.to_json())
    else:
        _print_plan(plan)
    return 0 if plan.all_met else 1


def _print_plan(plan: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"dr plan, {plan.generated:%Y-%m-%d %H:%M} UTC, at "
                  f"{plan.rate.mbit_per_s:.1f} Mbit/s ({escape(plan.rate.basis)})",
                  header_style="bold")
    for column in ("#", "tenant", "prio", "point", "age", "bytes", "restore", "done at",
                   "RTO"):
        table.add_column(column)
    for i, row in enumerate(plan.rows, 1):
        if row.point is None:
            table.add_row(str(i), escape(row.name), str(row.priority),
                          "[bold red]none[/] (below)", "-", "-", "-", "-",
                          f"[bold white on red]not met[/] ({row.rto_hours:g} h)")
            continue
        p = row.point
        point = f"{p.snapshot_id[:8]} {p.source_kind} {p.time:%m-%d %H:%M}" + (
            " + WAL" if p.wal_until else "")
        rto = "[bold green]met[/]" if row.rto_met else "[bold white on red]not met[/]"
        table.add_row(str(i), escape(row.name), str(row.priority), point,
                      _duration(row.rpo_s), human_bytes(p.bytes), _duration(row.predicted_s),
                      _duration(row.finish_s), f"{rto} ({row.rto_hours:g} h)")
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    for row in plan.rows:
        if row.point is None:  # whole, on one line each: what an operator must fix first
            console.print(f"{escape(row.name)}: nothing to restore: {escape(row.reason or '')}",
                          soft_wrap=True)
        else:
            for other in row.point.others:
                console.print(f"{escape(row.name)}: also holds {escape(other)}, which dr "
                              "restore does not bring back (`drsync restore ID`)",
                              soft_wrap=True)


@dr_cmd.command("restore")
@click.argument("fleet", type=click.Path(dir_okay=False))
@click.option("--to", "targets_path", required=True, type=click.Path(dir_okay=False),
              help="TARGETS.toml: where each tenant is rebuilt ([[target]] tenant, directory "
                   "| pg_restore | pgdata (+ port)).")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Tenants restored at the same time.")
@click.option("--drsync-command", metavar="PATH",
              help="drsync executable for a pgdata target's restore_command.")
@json_option
@click.pass_context
def restore_cmd(ctx: click.Context, fleet: str, targets_path: str, jobs: int,
                drsync_command: str | None, as_json: bool) -> int:
    """Restore every tenant of FLEET into its target, in plan order, JOBS at a time.

    One tenant's failure never stops the others (the exit is 1 at the end when
    any failed). Progress is kept in dr-restore-<hash>.json beside TARGETS.toml:
    run the same command again after a crash and finished tenants are skipped,
    interrupted ones restored again (a target drsync created is cleared first).
    Per tenant: RTO (from the fleet restore's start to the tenant restored) and
    RPO (restored at, minus the restored point's time). Each tenant's restore is
    a run of kind `restore` in the catalog.

    \b
    Example:
      drsync --config /etc/drsync/dc2.toml dr restore fleet.toml --to targets.toml --jobs 4
    """
    from drsync.dr.run import FleetRestore, state_path
    from drsync.dr.targets import load_targets
    from drsync.plan.fleetfile import load_fleet

    parsed = load_fleet(fleet, planning=False)
    targets = load_targets(targets_path, [t.name for t in parsed.tenants])
    runner = FleetRestore(parsed, targets, settings_from(ctx), state_path(fleet, targets_path),
                          recorder=open_journal(ctx), drsync_command=drsync_command)
    runner.prepare()
    from rich.console import Console

    console = Console(stderr=True)
    try:
        if as_json or not console.is_terminal:
            outcomes = runner.run(jobs)
        else:
            outcomes = _run_live(runner, jobs, console)
    except KeyboardInterrupt:
        # Now, as SIGTERM does: the restores under way are recorded interrupted in the
        # state file and resumed by the next run; the threads running them would
        # otherwise hold the exit until every one of them had finished.
        under_way = [o.name for o in runner.outcomes.values() if o.status == "running"]
        click.echo("drsync: interrupted" + (f" ({', '.join(under_way)} under way)"
                                            if under_way else "")
                   + "; run the same command again to resume", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    doc = {"tenants": [o.to_json() for o in outcomes],
           "state_file": str(runner.state.path),
           "ok": all(o.status in ("ok", "skipped") for o in outcomes)}
    if as_json:
        print_json(doc)
    else:
        for o in outcomes:
            line = f"{o.name}: {o.status}"
            if o.status in ("ok", "skipped"):
                line += (f", {human_bytes(o.bytes)}, RTO {_duration(o.rto_s)}, "
                         f"RPO {_duration(o.rpo_s)}")
            if o.error:
                line += f": {o.error}"
            click.echo(line)
            for other in o.not_restored:
                click.echo(f"  not restored: {other} (`drsync restore ID --target DIR`)")
    return 0 if doc["ok"] else 1


def _run_live(runner: Any, jobs: int, console: Any) -> Any:
    """The restore with a live table: each tenant's state, bytes and ETA."""
    import time

    from rich.live import Live
    from rich.markup import escape
    from rich.table import Table

    def render() -> Table:
        table = Table(title="dr restore", header_style="bold")
        for column in ("tenant", "state", "restored", "ETA"):
            table.add_column(column)
        for name in runner.order:
            o = runner.outcomes[name]
            total = f" / {human_bytes(o.total_bytes)}" if o.total_bytes else ""
            eta = "-"
            if o.status == "running" and o.total_bytes and o.bytes and o.started_mono:
                rate = o.bytes / max(time.monotonic() - o.started_mono, 1e-6)
                eta = _duration(max(o.total_bytes - o.bytes, 0) / rate)
            state = o.status + (f": {escape(o.error)}" if o.error else "")
            table.add_row(escape(name), state, human_bytes(o.bytes) + total, eta)
        return table

    done = threading.Event()
    with Live(render(), console=console, refresh_per_second=4) as live:
        def refresh() -> None:
            while not done.wait(0.25):
                live.update(render())

        ticker = threading.Thread(target=refresh, daemon=True)
        ticker.start()
        try:
            outcomes = runner.run(jobs)
        finally:
            done.set()
            ticker.join()
        live.update(render())
    return outcomes
