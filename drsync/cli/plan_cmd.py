"""``drsync plan FLEET``: parse the flags, call drsync.plan, render the answer.

Rich tables for people, ``--json`` for scripts; the planning itself lives
in ``drsync.plan`` and is tested there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from drsync.cli.context import open_catalog
from drsync.errors import UsageError
from drsync.plan import (
    Cycle,
    Fleet,
    Learned,
    MaxFit,
    Plan,
    Slot,
    Strategy,
    cycle_to_dict,
    history_from_runs,
    learn,
    learned_to_dict,
    load_fleet,
    max_fit,
    maxfit_to_dict,
    plan_cycle,
    plan_fleet,
    plan_to_dict,
    read_history_csv,
    schedule_file,
)

if TYPE_CHECKING:  # rich is imported when a table is printed, not for --help or --json
    from rich.console import Console

__all__ = ["plan_cmd"]


@click.command("plan")
@click.argument("fleet_path", metavar="FLEET", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a fleet value for this run, e.g. link.lgwan.mbit_per_s=100, "
                   "defaults.compress_mb_per_s=150, tenant.NAME.priority=1. Repeatable.")
@click.option("--max-fit", "max_fit_tenant", metavar="TENANT",
              help="How many tenants like TENANT fit the window on its link alone.")
@click.option("--strategy", type=click.Choice(["planned", "serial"]), default=None,
              help="With --max-fit: 'serial' is the 2011 trial's one-after-another "
                   "arithmetic; 'planned' (default) shares the link.")
@click.option("--cycle", "cycle", is_flag=True,
              help="Spread periodic fulls over their cycle and show every night.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False),
              help="Draw the night as a Gantt chart with link load (.png or .svg).")
@click.option("--learn", "history_path", type=click.Path(dir_okay=False),
              help="CSV of past nights (tenant,date,bytes_in,bytes_out,prep_s,send_s): "
                   "plan with volumes and rates learned from it.")
@click.option("--learn-catalog", "learn_catalog", is_flag=True,
              help="Learn from the catalog's backup and wal-ship runs instead (the global "
                   "--catalog; runs are matched by the tenant they name): bytes on the "
                   "wire as measured, after recompression.")
@click.option("--write-schedule", "schedule_path", type=click.Path(dir_okay=False),
              help="Write the schedule the agents follow (JSON, see docs/PLANNER.md).")
def plan_cmd(
    fleet_path: str, as_json: bool, overrides: tuple[str, ...], max_fit_tenant: str | None,
    strategy: str | None, cycle: bool, chart_path: str | None, history_path: str | None,
    learn_catalog: bool, schedule_path: str | None,
) -> None:
    """Schedule a fleet's night, or say how many tenants fit the window.

    \b
    Examples:
      drsync plan fleet.toml
      drsync plan fleet.toml --max-fit Nobeoka
      drsync plan fleet.toml --learn-catalog --write-schedule schedule.json
    """
    _check_flags(max_fit_tenant, strategy, cycle, chart_path, schedule_path)
    fleet = load_fleet(fleet_path, overrides)
    learned = None
    if history_path is not None and learn_catalog:
        raise UsageError("--learn CSV and --learn-catalog: choose one source of history")
    if history_path is not None:
        learned = learn(fleet, read_history_csv(history_path))
        fleet = learned.fleet
    elif learn_catalog:
        learned = learn(fleet, history_from_runs(open_catalog(click.get_current_context())
                                                 .runs(limit=1_000_000),
                                                 fleet.window.start))
        fleet = learned.fleet
    out: dict[str, Any]
    render: Callable[[Console], None]
    if max_fit_tenant is not None:
        if max_fit_tenant not in {t.name for t in fleet.tenants}:
            raise UsageError(f"--max-fit {max_fit_tenant}: no such tenant in {fleet_path}")
        chosen: Strategy = "serial" if strategy == "serial" else "planned"
        result = max_fit(fleet, max_fit_tenant, chosen)
        plan, out = result.plan, maxfit_to_dict(result)
        render = lambda console: _render_maxfit(console, result)  # noqa: E731
    elif cycle:
        cyc = plan_cycle(fleet)
        plan, out = cyc.baseline, cycle_to_dict(cyc)
        render = lambda console: _render_cycle(console, fleet, cyc)  # noqa: E731
    else:
        plan = plan_fleet(fleet)
        out = plan_to_dict(plan)
        render = lambda console: _render_plan(console, plan)  # noqa: E731
    if learned is not None:
        out["learned"] = learned_to_dict(learned)
    if schedule_path is not None:
        _write("--write-schedule", schedule_path,
               lambda: Path(schedule_path).write_text(
                   json.dumps(schedule_file(plan), indent=2) + "\n"))
    if chart_path is not None:
        from drsync.plan.chart import write_chart

        _write("--chart", chart_path, lambda: write_chart(plan, chart_path))
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 132))
    if learned is not None:
        _render_learned(console, learned)
    render(console)


def _write(flag: str, path: str, write: Callable[[], object]) -> None:
    try:
        write()
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot write: {err.strerror or err}") from None


def _check_flags(max_fit_tenant: str | None, strategy: str | None, cycle: bool,
                 chart_path: str | None, schedule_path: str | None) -> None:
    if strategy is not None and max_fit_tenant is None:
        raise UsageError("--strategy goes with --max-fit")
    if cycle and max_fit_tenant is not None:
        raise UsageError("--cycle and --max-fit are separate questions; ask one at a time")
    if cycle and chart_path is not None:
        raise UsageError("--chart draws one night; drop --cycle (or chart a night by --set)")
    if schedule_path is not None and (cycle or max_fit_tenant is not None):
        raise UsageError("--write-schedule writes tonight's plan; drop --cycle and --max-fit")
    if chart_path is not None and Path(chart_path).suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--chart {chart_path}: the file must end in .png or .svg")


def _rate_text(slot: Slot) -> str:
    rates = [f"{s.mbit_per_s:.3g}" for s in slot.sends]
    if len(rates) > 3:
        rates = [rates[0], "…", rates[-1]]
    return "→".join(rates) if rates else "-"


def _render_plan(console: Console, plan: Plan, title: str | None = None) -> None:
    from rich.table import Table

    window = plan.fleet.window
    table = Table(title=title or f"{plan.fleet.source}: window {window.start} + "
                  f"{window.minutes:g} min", title_justify="left")
    for name in ("tenant", "link", "prio", "start", "ready", "sending", "MB", "Mbit/s",
                 "end", "slack"):
        table.add_column(name, justify="left" if name in ("tenant", "link") else "right")
    for slot in sorted(plan.slots, key=lambda s: (s.end_s, s.tenant.name)):
        first = slot.sends[0].from_s if slot.sends else slot.ready_s
        table.add_row(
            slot.tenant.name, slot.tenant.link, str(slot.tenant.priority),
            window.clock(slot.start_s), window.clock(slot.ready_s),
            window.clock(first), f"{slot.tenant.send_mb:.1f}", _rate_text(slot),
            window.clock(slot.end_s), f"{slot.slack_s / 60:.0f} min",
        )
    console.print(table)
    if plan.unfit:
        unfit = Table(title="does not fit", title_justify="left")
        for name in ("tenant", "link", "prio", "reason"):
            unfit.add_column(name)
        for u in plan.unfit:
            unfit.add_row(u.tenant.name, u.tenant.link, str(u.tenant.priority), u.reason)
        console.print(unfit)
    links = Table(title="links", title_justify="left")
    for name in ("link", "Mbit/s", "sent MB", "utilisation"):
        links.add_column(name, justify="left" if name == "link" else "right")
    for load in plan.links:
        links.add_row(load.name, f"{load.mbit_per_s:g}", f"{load.sent_mb:.1f}",
                      f"{100 * load.utilisation:.1f}%")
    console.print(links)
    console.print(
        f"{plan.fits} of {len(plan.fleet.tenants)} tenants fit; the last byte lands at "
        f"{window.clock(plan.makespan_s)} ({plan.makespan_s:.0f} s of {plan.window_s:.0f} s)."
    )


def _render_maxfit(console: Console, result: MaxFit) -> None:
    _render_plan(console, result.plan, title=f"the schedule that proves it ({result.strategy})")
    more = " (stopped counting there)" if result.capped else ""
    console.print(
        f"[bold]{result.max_tenants}[/bold] tenants like {result.tenant.name} fit on link "
        f"{result.tenant.link} ({result.strategy}: {result.per_tenant_s:.1f} s a tenant){more}; "
        f"no schedule can fit more than {result.bound}."
    )


def _render_cycle(console: Console, fleet: Fleet, cycle: Cycle) -> None:
    from rich.table import Table

    table = Table(title=f"{fleet.source}: {cycle.days}-night cycle of fulls",
                  title_justify="left")
    for name in ("night", "fulls", "fit", "last byte", *(lk.name for lk in fleet.links),
                 "left out"):
        table.add_column(name, justify="left" if name in ("fulls", "left out") else "right")
    for night in cycle.nights:
        plan = night.plan
        table.add_row(
            str(night.number), ", ".join(night.fulls) or "-",
            f"{plan.fits}/{len(fleet.tenants)}", fleet.window.clock(plan.makespan_s),
            *(f"{100 * ld.utilisation:.1f}%" for ld in plan.links),
            ", ".join(night.left_out) or "",
        )
    console.print(table)
    for move in cycle.moves:
        console.print(f"full of {move.tenant} moves from night {move.from_night} to night "
                      f"{move.to_night} (and every {move.every_days} nights after)")
    for name in cycle.too_big:
        console.print(f"[red]full of {name} does not fit any night, even as its only full[/red]")
    bad = [n.number for n in cycle.nights if not n.fits]
    if bad:
        console.print(f"[red]nights that do not fit: {', '.join(map(str, bad))}[/red]")
    else:
        console.print(f"every night of the {cycle.days}-night cycle fits.")


def _render_learned(console: Console, learned: Learned) -> None:
    from rich.table import Table

    table = Table(title="learned from history", title_justify="left")
    for name in ("tenant", "nights", "daily MB (p90)", "ratio", "MB/s", "latest s", "slot s",
                 "overran"):
        table.add_column(name, justify="left" if name == "tenant" else "right")
    for e in learned.estimates:
        nights = str(e.nights) + (f" ({e.overrun_nights} overran)" if e.overrun_nights else "")
        table.add_row(e.tenant, nights, f"{e.daily_mb:.1f}",
                      f"{e.compression_ratio:.2f}", f"{e.compress_mb_per_s:.2f}",
                      f"{e.latest_s:.0f}", "-" if e.slot_s is None else f"{e.slot_s:.0f}",
                      "[red]yes[/red]" if e.overran else "")
    console.print(table)
    if learned.unknown:
        console.print(f"history for tenants not in the fleet: {', '.join(learned.unknown)}")
