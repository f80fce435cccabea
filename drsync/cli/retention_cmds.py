"""Retention and repair commands: forget (which snapshots to keep), prune (what to
delete), repair packs (damaged packs out of the store, what verifies kept)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from drsync.cli.context import on_record, open_journal, open_repo, settings_from
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
              help="Keep every snapshot less than DURATION (e.g. 30d, 1y2m, 12h) older than "
                   "the group's newest [retention] keep_within.")
@click.option("--keep-tag", "keep_tags", multiple=True, metavar="TAG",
              help="Keep every snapshot with this tag (repeatable) [retention] keep_tags.")
@click.argument("snapshots", nargs=-1, metavar="[SNAPSHOT]...")
@dry_run_option
@json_option
@click.pass_context
def forget_cmd(ctx: click.Context, keep_last: int | None, keep_hourly: int | None,
               keep_daily: int | None, keep_weekly: int | None, keep_monthly: int | None,
               keep_yearly: int | None, keep_within: str | None, keep_tags: tuple[str, ...],
               snapshots: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Remove the snapshots the retention policy does not keep, or the SNAPSHOTs named
    (ids or unique prefixes); their data goes at `prune`.

    Snapshots are judged per host and source; each kept one lists the rules that
    kept it. A kept base backup keeps the WAL it needs; older WAL goes at `prune`.
    Named snapshots are removed whatever the policy (no --keep-* with them).

    \b
    Examples:
      drsync forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
      drsync forget --json          # the [retention] section of the config file
      drsync forget 3fa1c2d0 9b2e41aa --dry-run
    """
    from drsync.errors import UsageError
    from drsync.repo.forget import forget

    given = (keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly,
             keep_within)
    if snapshots and (any(v is not None for v in given) or keep_tags):
        raise UsageError("forget takes snapshot ids or --keep-* options, not both")
    settings = settings_from(
        ctx, keep_last=keep_last, keep_hourly=keep_hourly, keep_daily=keep_daily,
        keep_weekly=keep_weekly, keep_monthly=keep_monthly, keep_yearly=keep_yearly,
        keep_within=keep_within, keep_tags=list(keep_tags) or None)
    policy = settings.retention_policy()
    repo = open_repo(ctx, settings)
    journal = open_journal(ctx)
    # Removed on purpose: the catalog's rollback check must not report them missing, even
    # when the forget is cut short after some deletes.
    result = forget(repo, policy, dry_run=dry_run, snapshots=snapshots,
                    on_removed=lambda sid: journal.record_forgotten(repo.url, [sid]))
    if as_json:
        print_json(result.to_json())
        return
    verb = "would remove" if dry_run else "removed"
    for group in result.groups:
        if snapshots and not group.removed:
            continue  # the groups of named snapshots only
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
    about = "about " if dry_run else ""
    click.echo(f"{would}delete {report.packs_deleted} pack(s), {would}repack "
               f"{report.packs_repacked} into {about}{report.packs_written} "
               f"({about}{human_bytes(report.bytes_rewritten)} written), "
               f"{would}remove {len(report.wal_expired)} WAL file(s)")
    if not dry_run:
        click.echo(f"freed {human_bytes(max(0, report.bytes_deleted - report.bytes_rewritten))}"
                   f"; index: {report.index_files_before} file(s) -> "
                   f"{report.index_files_written} written, {report.index_files_deleted} "
                   "deleted")


@click.group("repair")
def repair_group() -> None:
    """Take damaged objects out of the repository, keeping what still verifies."""


@repair_group.command("packs")
@click.argument("packs", nargs=-1, metavar="[PACK]...")
@click.option("--save-to", metavar="DIR", type=click.Path(file_okay=False),
              help="Where each damaged pack is saved before it leaves the store "
                   "[default: <state dir>/quarantine].")
@dry_run_option
@json_option
@click.pass_context
def repair_packs_cmd(ctx: click.Context, packs: tuple[str, ...], save_to: str | None,
                     dry_run: bool, as_json: bool) -> None:
    """Salvage the blobs of damaged packs into new ones and take the packs out of the store.

    PACK: an id, a prefix of 8 or more hex digits, or the object name `check
    --read-data` prints (data/xx/ID). With none, every pack is read and those
    whose bytes do not match their name are repaired. Each blob that still
    authenticates is copied into a new pack; the damaged pack is saved to
    --save-to, then deleted from the store, so that backups stop deduplicating
    against it. A blob that did not verify is lost: the next backup of a source
    that still has it stores it again, and every snapshot that needs it until
    then is named. An intact pack is never touched.

    \b
    Examples:
      drsync check --read-data        # names each damaged pack
      drsync repair packs data/3f/3fa1c2d0e4b5... --dry-run
      drsync repair packs 3fa1c2d0e4b5 --save-to /srv/quarantine --json
      drsync repair packs             # read every pack, repair the damaged ones
    Then: a backup of the tenant's source, and `drsync check`.
    """
    import os

    from drsync.repo.repair import repair_packs

    settings = settings_from(ctx)
    repo = open_repo(ctx, settings)
    quarantine = save_to or os.path.join(settings.state_dir, "quarantine")
    with on_record(ctx, repo, "repair", "repair packs" + (f" {' '.join(packs)}" if packs
                                                           else ""), enabled=not dry_run) as run:
        with progress_bar("read", enabled=not as_json) as (advance, set_total):
            report = repair_packs(repo, packs, save_to=quarantine, dry_run=dry_run,
                                  progress=advance, on_total=set_total)
        run.update(bytes_read=report.bytes_read, bytes_added=report.bytes_written)
        if report.blobs_lost:
            run.update(status="partial", error=f"{report.blobs_lost} blob(s) could not be "
                       f"salvaged; {len(report.snapshots_affected)} snapshot(s) need a backup "
                       "of their source to heal")
    if as_json:
        print_json(report.to_json())
        return
    would = "would be " if dry_run else ""
    damaged = [p for p in report.packs if p.status in ("repaired", "locked")]
    for fix in report.packs:
        name = f"pack {fix.pack_id[:12]}"
        if fix.status == "intact":
            click.echo(f"{name}: intact (its bytes match its name): left alone")
            continue
        if fix.status == "missing":
            click.echo(f"{name}: {fix.problems[0]}")
            continue
        click.echo(f"{name}: damaged: {fix.blobs_salvaged} blob(s) {would}salvaged, "
                   f"{fix.blobs_held} held by other packs, {fix.blobs_lost} lost")
        for problem in fix.problems:
            click.echo(f"  {problem}")
        if fix.saved_to:
            deleted = "deleted from the store" if fix.status == "repaired" else "NOT deleted"
            click.echo(f"  saved to {fix.saved_to}; {deleted}")
    if not damaged:
        click.echo("no damaged pack found" + (f" ({len(report.packs)} named)" if packs else ""))
        return
    click.echo(f"{len(damaged)} damaged pack(s): {report.blobs_salvaged} blob(s) {would}"
               f"salvaged into {report.packs_written} new pack(s) "
               f"({human_bytes(report.bytes_written)}), {report.blobs_lost} lost")
    for snap in report.snapshots_affected:
        tags = f" {','.join(snap['tags'])}" if snap["tags"] else ""
        click.echo(f"snapshot {snap['id'][:8]} ({snap['time'][:19].replace('T', ' ')}{tags}) "
                   f"of {snap['host']} {snap['source']} cannot be fully restored: "
                   f"{snap['blobs_lost']} blob(s) lost")
    if report.blobs_lost:
        click.echo("next: back up the tenant's source (it stores the lost blobs again if the "
                   "source still has them), then `drsync check`")
