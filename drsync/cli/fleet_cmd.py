"""``drsync fleet status``: every tenant's state at a glance, from the (central) catalog."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import click

from drsync.cli.context import open_catalog
from drsync.cli.render import human_bytes, print_json


@click.group("fleet")
def fleet_cmd() -> None:
    """The operators' view of a fleet of tenants."""


@fleet_cmd.command("status")
@click.argument("fleet", type=click.Path(dir_okay=False))
@click.option("--schedule", "schedule_path", type=click.Path(dir_okay=False),
              help="Tonight's schedule (drsync plan --write-schedule) for the planned slots.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Also write the status as one self-contained HTML page.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def status_cmd(ctx: click.Context, fleet: str, schedule_path: str | None,
               html_path: str | None, as_json: bool) -> int:
    """One row per tenant of FLEET: last good point, RPO now against the tenant's
    rpo_hours, the last run's result and bytes, planned against actual slot.

    Runs are matched to tenants by the tenant name each run recorded (the
    `tenant` setting, else the host). Exit 0 when every tenant is ok, 1 when any
    has no report, is past its RPO, or its last run was not ok.

    \b
    Examples:
      drsync --catalog postgresql://drsync@catalog-host/drsync fleet status fleet.toml
      drsync fleet status fleet.toml --schedule schedule.json --html /srv/www/fleet.html
    """
    from drsync.fleet.status import FleetTenant, Run, fleet_status, slots_from_schedule
    from drsync.plan.fleetfile import load_fleet

    parsed = load_fleet(fleet)
    tenants = [FleetTenant(t.name, t.priority, t.rpo_hours) for t in parsed.tenants]
    slots = None
    if schedule_path:
        from drsync.plan.export import load_schedule

        slots = slots_from_schedule(load_schedule(schedule_path))
    catalog = open_catalog(ctx)
    try:
        records = catalog.tenant_runs([t.name for t in tenants])
    finally:
        catalog.close()
    runs = [Run(r.id, r.tenant_name, r.status, r.started, r.ended, r.snapshot_id,
                r.bytes_read, r.bytes_sent if r.bytes_sent is not None else r.bytes_added,
                r.error, r.kind, r.source, r.planned_start) for r in records]
    status = fleet_status(tenants, runs, datetime.now(UTC), slots)
    if html_path:
        from drsync.fleet.html import render_html

        _write_atomically(html_path, render_html(status))
    if as_json:
        print_json(status.to_json())
    else:
        _print_table(status)
    return 0 if status.healthy else 1


def _write_atomically(path: str, text: str) -> None:
    """The page appears whole or not at all (a web server may be serving it: 0644)."""
    from drsync.atomic import write_atomic
    from drsync.errors import UsageError

    try:
        write_atomic(os.path.abspath(path), text, mode=0o644)
    except OSError as err:
        raise UsageError(f"--html {path}: cannot write there: {err.strerror}") from None


_STYLE = {"no-report": "bold white on grey35", "rpo-exceeded": "bold white on red",
          "degraded": "bold black on yellow", "ok": "bold green"}


def _print_table(status: object) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from drsync.fleet.status import FleetStatus

    assert isinstance(status, FleetStatus)
    table = Table(title=f"fleet status, {status.generated:%Y-%m-%d %H:%M} UTC",
                  header_style="bold")
    for column in ("tenant", "prio", "health", "last good", "RPO now / target", "last run",
                   "read", "sent", "planned", "actual"):
        table.add_column(column)
    for row in status.rows:
        good = "-" if row.last_good_time is None else (
            f"{row.last_good_time:%m-%d %H:%M} {(row.last_good_snapshot or '')[:8]}")
        rpo = "-" if row.rpo_now_hours is None else f"{row.rpo_now_hours:.1f} h"
        planned = "-" if row.planned is None else (
            "unscheduled" if row.planned.start is None
            else f"{row.planned.start}-{row.planned.deadline}")
        actual = "-" if row.last_started is None else (
            f"{row.last_started:%m-%d %H:%M}-"
            + (f"{row.last_finished:%H:%M}" if row.last_finished else "running"))
        last = (row.last_status or "-") + ("\n" + "; ".join(row.problems)
                                           if row.problems else "")
        table.add_row(escape(row.tenant), str(row.priority),
                      f"[{_STYLE[row.health]}]{row.health}[/]",
                      good, f"{rpo} / {row.rpo_hours:g} h", escape(last),
                      "-" if row.bytes_read is None else human_bytes(row.bytes_read),
                      "-" if row.bytes_sent is None else human_bytes(row.bytes_sent),
                      planned, actual)
    console = Console()
    if not console.is_terminal:  # a morning mail or a log: room for every column
        console = Console(width=200)
    console.print(table)
    if status.unknown_tenants:
        console.print("reports from tenants not in the fleet file: "
                      + escape(", ".join(status.unknown_tenants)))
