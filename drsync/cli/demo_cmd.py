"""`drsync demo`: the main job on the embedded default, end to end."""

from __future__ import annotations

import click

from drsync.cli.render import human_bytes, print_json


@click.command("demo")
@click.option("--dir", "directory", default="demo", show_default=True,
              help="Working directory (recreated; only one an earlier demo made is deleted).")
@click.option("--size-mb", default=50.0, show_default=True, help="Size of the sample database.")
@click.option("--change", default=0.01, show_default=True,
              help="Fraction of rows changed between the two nights.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def demo_cmd(directory: str, size_mb: float, change: float, as_json: bool) -> int:
    """Generate a municipal database, back it up twice, restore it and verify it.

    \b
    Example:
      drsync demo --dir demo --size-mb 50
    """
    from rich.console import Console
    from rich.table import Table

    from drsync.demo import run_demo

    console = Console(stderr=True)
    report = run_demo(directory, size_mb=size_mb, change_fraction=change,
                      step=None if as_json else (lambda m: console.print(f"[bold]›[/] {m}")))
    if as_json:
        print_json(report.to_json())
        return 0 if report.verified else 13
    table = Table(title=f"drsync demo in {report.directory}")
    for column in ("run", "read", "added to store", "added %", "time", "MB/s"):
        table.add_column(column, justify="right")
    for night, run in enumerate(report.backups, start=1):
        table.add_row(f"backup night {night}", human_bytes(run.bytes_read),
                      human_bytes(run.bytes_added),
                      f"{100 * run.bytes_added / max(run.bytes_read, 1):.1f}%",
                      f"{run.duration_s:.2f} s", f"{run.mb_per_s:.0f}")
    if report.restore is not None:
        r = report.restore
        table.add_row("restore latest", human_bytes(r.bytes_written), "-", "-",
                      f"{r.duration_s:.2f} s", f"{r.mb_per_s:.0f}")
    Console().print(table)
    if report.verified:
        Console().print(f"[green]restored database is identical row for row[/] "
                        f"({report.rows_changed} rows changed between nights)")
        return 0
    for line in report.differences[:20]:
        click.echo(f"difference: {line}", err=True)
    return 13
