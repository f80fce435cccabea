"""Retention commands: forget (which snapshots to keep) and prune (what to delete)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from drsync.cli.context import open_journal, open_repo, settings_from
from drsync.cli.render import human_bytes, print_json, progress_bar

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
FC = TypeVar("FC", bound=Callable[..., object])
dry_run_option = click.option("--dry-run", is_flag=True, help="Decide and report; change nothing.")


def _keep(name: str, what: str) -> Callable[[FC], FC]:
    return click.option(f"--keep-{name}", f"keep_{name}", type=click.IntRange(min=-1),
                        metavar="N", help=f"Keep the newest snapshot of each of the N newest "
                        f"{what} (-1: all) [retention] keep_{name}.")


@click.command("forget")
@click.option("--keep-last", "keep_last", type=click.IntRange(min=-1), metavar="N",
              help="Keep the N newest snapshots (-1: all) [retention] keep_last.")
@_keep("hourly", "hours")
@_keep("daily", "days")
@_keep("weekly", "ISO weeks")
@_keep("monthly", "months")
@_keep("yearly", "years")
@click.option("--keep-within", metavar="DURATION",
              help="Keep every snapshot at most DURATION (e.g. 30d, 1y2m, 12h) older than the "
                   "group's newest [retention] keep_within.")
@click.option("--keep-tag", "keep_tags", multiple=True, metavar="TAG",
              help="Keep every snapshot with this tag (repeatable) [retention] keep_tags.")
@dry_run_option
@json_option
@click.pass_context
def forget_cmd(ctx: click.Context, keep_last: int | None, keep_hourly: int | None,
               keep_daily: int | None, keep_weekly: int | None, keep_monthly: int | None,
               keep_yearly: int | None, keep_within: str | None, keep_tags: tuple[str, ...],
               dry_run: bool, as_json: bool) -> None:
    """Remove the snapshots the retention policy does not keep (their data: `prune`).

    Snapshots are judged per host and source; each kept one lists the rules that
    kept it. A kept base backup keeps the WAL it needs; older WAL goes at `prune`.

    \b
    Examples:
      drsync forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
      drsync forget --json          # the [retention] section of the config file
    """
    from drsync.repo.forget import forget

    settings = settings_from(
        ctx, keep_last=keep_last, keep_hourly=keep_hourly, keep_daily=keep_daily,
        keep_weekly=keep_weekly, keep_monthly=keep_monthly, keep_yearly=keep_yearly,
        keep_within=keep_within, keep_tags=list(keep_tags) or None)
    policy = settings.retention_policy()
    repo = open_repo(ctx, settings)
    result = forget(repo, policy, dry_run=dry_run)
    if result.removed and not dry_run:
        # Removed on purpose: the catalog's rollback check must not report them missing.
        open_journal(ctx).record_forgotten(repo.url, result.removed)
    if as_json:
        print_json(result.to_json())
        return
    verb = "would remove" if dry_run else "removed"
    for group in result.groups:
        click.echo(f"{group.host} {group.source}: keep {len(group.kept)}, "
                   f"{verb} {len(group.removed)}")
        for d in group.decisions:
            s = d.snapshot
            fate = ", ".join(d.reasons) if d.keep else ("locked" if s.id in result.locked
                                                        else verb)
            click.echo(f"  {s.short_id}  {s.time[:19].replace('T', ' ')}  {fate}")
    for snapshot_id in result.locked:
        click.echo(f"drsync: warning: snapshot {snapshot_id[:8]} is retained by the store's "
                   "object lock: not removed", err=True)
    tail = (f"; prune will remove {result.wal_expirable} WAL file(s) no kept base backup needs"
            if result.wal_expirable else "")
    click.echo(f"{verb} {len(result.removed)} snapshot(s){tail}")


@click.command("prune")
@click.option("--max-unused", metavar="PERCENT",
              help="Dead bytes tolerated in packs, relative to live bytes, before repacking "
                   "(default 10%; 0% repacks every pack with a dead blob; `unlimited` "
                   "repacks none) [retention] max_unused.")
@dry_run_option
@json_option
@click.pass_context
def prune_cmd(ctx: click.Context, max_unused: str | None, dry_run: bool, as_json: bool) -> None:
    """Delete packs no snapshot needs, repack mostly-dead ones, compact the index,
    remove WAL no kept base backup needs. Safe to interrupt; run again to finish.

    \b
    Examples:
      drsync prune --dry-run
      drsync prune --max-unused 5% --json
    """
    from drsync.repo.prune import parse_max_unused, prune

    settings = settings_from(ctx, max_unused=max_unused)
    fraction = parse_max_unused(settings.max_unused or "10%")
    repo = open_repo(ctx, settings)
    with progress_bar("repack", enabled=not as_json) as (advance, set_total):
        report = prune(repo, max_unused=fraction, dry_run=dry_run, progress=advance,
                       on_total=set_total)
    if as_json:
        print_json(report.to_json())
        return
    for key in report.locked:
        click.echo(f"drsync: warning: object {key} is retained by the store's object lock: "
                   "not deleted (a later prune retries)", err=True)
    would = "would " if dry_run else ""
    click.echo(f"{report.snapshots} snapshots, {report.packs} packs, "
               f"{human_bytes(report.bytes_total)}, {human_bytes(report.bytes_unused)} unused")
    click.echo(f"{would}delete {report.packs_deleted} pack(s), {would}repack "
               f"{report.packs_repacked} into {report.packs_written} "
               f"({human_bytes(report.bytes_rewritten)} written), "
               f"{would}remove {len(report.wal_expired)} WAL file(s)")
    if not dry_run:
        click.echo(f"freed {human_bytes(max(0, report.bytes_deleted - report.bytes_rewritten))}"
                   f"; index: {report.index_files_before} file(s) -> "
                   f"{report.index_files_written} written, {report.index_files_deleted} "
                   "deleted")
