"""``drsync agent run`` (the tenant's daemon) and ``drsync agent status``."""

from __future__ import annotations

import click

from drsync.cli.context import config_option as cli_config_option
from drsync.cli.context import settings_from
from drsync.cli.render import human_bytes, print_json

config_option = cli_config_option(
    "TOML settings file with an [agent] section (same as the global --config).")


@click.group("agent")
def agent_cmd() -> None:
    """The tenant's unattended daemon, which follows the planner's schedule."""


@agent_cmd.command("run")
@config_option
@click.pass_context
def run_cmd(ctx: click.Context) -> int:
    """Run the tenant's jobs in its slot of the schedule, every night, until SIGTERM.

    Uploads follow the schedule's send segments; a slot missed while the host
    was down runs at once if it still fits before the deadline (else it is
    recorded as missed); a run still going at the deadline stops after its
    current pack and is recorded as overrun. SIGHUP reloads the config and
    the schedule; SIGTERM stops after the current pack and exits 0. Logs are
    JSON lines on stdout (human lines on a terminal).

    \b
    Example:
      drsync agent run --config /etc/drsync/agent.toml
    """
    from drsync.agent.daemon import Agent
    from drsync.agent.logs import setup_logging

    def load() -> object:
        root = ctx.find_root()
        (root.obj or {}).pop("_settings", None)
        return settings_from(ctx)

    agent = Agent(load)  # type: ignore[arg-type]
    setup_logging(agent.fields)
    return agent.run_forever()


@agent_cmd.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> int:
    """The tenant's last run, next run, WAL spool, RPO now and planned slot.

    Exit 0 when healthy; 1 when the last run failed (or was missed or overran)
    or the RPO exceeds [agent] rpo_hours (default 24).

    \b
    Examples:
      drsync agent status --config /etc/drsync/agent.toml
      drsync agent status --config /etc/drsync/agent.toml --json
    """
    from drsync.agent.config import agent_config, tenant_slot
    from drsync.agent.runner import open_agent_repo
    from drsync.agent.status import agent_status
    from drsync.wal.spool import Spool

    settings = settings_from(ctx)
    config = agent_config(settings)
    doc = agent_status(config, tenant_slot(config), open_agent_repo(settings),
                       Spool.if_present(settings.wal_spool()))
    if as_json:
        print_json(doc)
    else:
        _render(doc)
    return 0 if doc["healthy"] else 1


def _render(doc: dict[str, object]) -> None:
    run = doc["last_run"]
    spool = doc["spool"]
    slot = doc["slot"]
    assert isinstance(spool, dict) and isinstance(slot, dict)
    click.echo(f"tenant {doc['tenant']}: {'healthy' if doc['healthy'] else 'UNHEALTHY'}"
               + "".join(f"; {p}" for p in doc["problems"]))  # type: ignore[attr-defined]
    if isinstance(run, dict):
        click.echo(f"last run: {run['status']}, snapshot {str(run['snapshot_id'] or '-')[:8]}, "
                   f"{run['started']} .. {run['finished']}, read {human_bytes(run['bytes_read'])}"
                   f", sent {human_bytes(run['bytes_sent'])}, {run['mb_per_s']} MB/s"
                   + (f"\n  error: {run['error']}" if run["error"] else ""))
        night = run.get("night")
        if isinstance(night, dict):
            click.echo(f"  shipped {night['ship']}: {night['reason']}")
    else:
        click.echo("last run: none yet")
    click.echo(f"next run: {doc['next_run']} ({doc['next_run_reason']})")
    click.echo(f"WAL spool: {spool['files']} file(s), {human_bytes(spool['bytes'])}, "
               f"oldest {spool['oldest'] or '-'}")
    rpo = doc["rpo_s"]
    click.echo(f"RPO now: {'unknown' if rpo is None else f'{float(rpo):.0f} s'} "  # type: ignore[arg-type]
               f"(target {doc['rpo_hours_target']} h; newest point "
               f"{doc['newest_restorable'] or 'none: nothing restorable yet'})")
    click.echo(f"planned slot: {slot['start']} for {slot['planned_s']} s, deadline "
               f"+{slot['deadline_s']} s after the window opens at {slot['window_start']}")
