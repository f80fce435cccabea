"""The ``drsync`` command line: parse, call one service function, render.

Options carry no environment variables and no defaults of their own: a flag
not given is None, and ``drsync.settings.resolve`` (through
``drsync.cli.context.settings_from``) layers flags, environment, config file
and defaults in one place.

Commands are loaded lazily (a name maps to ``module:attribute``) so that a
run that needs one command imports only that command's code: the fixed cost
of ``drsync wal-push`` or a tiny backup stays small.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from typing import Any

import click

from drsync import __version__
from drsync.errors import DrsyncError

__all__ = ["main"]

# name -> "module:attribute"; each module keeps its handlers thin.
COMMANDS: dict[str, str] = {
    "agent": "drsync.cli.agent_cmds:agent_cmd",
    "init": "drsync.cli.repo_cmds:init_cmd",
    "backup": "drsync.cli.repo_cmds:backup_cmd",
    "snapshots": "drsync.cli.repo_cmds:snapshots_cmd",
    "restore": "drsync.cli.repo_cmds:restore_cmd",
    "check": "drsync.cli.repo_cmds:check_cmd",
    "unlock": "drsync.cli.repo_cmds:unlock_cmd",
    "key": "drsync.cli.key_cmds:key_group",
    "forget": "drsync.cli.retention_cmds:forget_cmd",
    "prune": "drsync.cli.retention_cmds:prune_cmd",
    "repair": "drsync.cli.retention_cmds:repair_group",
    "runs": "drsync.cli.repo_cmds:runs_cmd",
    "demo": "drsync.cli.demo_cmd:demo_cmd",
    "plan": "drsync.cli.plan_cmd:plan_cmd",
    "fleet": "drsync.cli.fleet_cmd:fleet_cmd",
    "dr": "drsync.cli.dr_cmd:dr_cmd",
    "wal-push": "drsync.cli.wal_cmds:wal_push_cmd",
    "wal-receive": "drsync.cli.wal_cmds:wal_receive_cmd",
    "wal-ship": "drsync.cli.wal_cmds:wal_ship_cmd",
    "wal-recompress": "drsync.cli.wal_cmds:wal_recompress_cmd",
    "binlog-receive": "drsync.cli.wal_cmds:binlog_receive_cmd",
    "wal-fetch": "drsync.cli.wal_cmds:wal_fetch_cmd",
    "pitr-range": "drsync.cli.pg_cmds:pitr_range_cmd",
    "doctor": "drsync.cli.pg_cmds:doctor_cmd",
    "drill": "drsync.cli.drill_cmds:drill_cmd",
    "catalog": "drsync.cli.drill_cmds:catalog_group",
    "report": "drsync.cli.report_cmd:report_cmd",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drsync")
@click.option("--repo", "-r", help="Repository URL: a path, file:///path or s3://bucket/prefix "
              "(env DRSYNC_REPO).")
@click.option(
    "--password-file", type=click.Path(dir_okay=False),
    help="File holding the repository passphrase (env DRSYNC_PASSWORD_FILE).",
)
@click.option(
    "--key-file", type=click.Path(dir_okay=False),
    help="Key file for unattended agents, opens the repository without a KDF "
         "(env DRSYNC_KEY_FILE).",
)
@click.option(
    "--config", "config_path", metavar="FILE",  # checked when read: one line, exit 4
    help="TOML settings file (env DRSYNC_CONFIG); flags and environment override it.",
)
@click.option("--catalog", help="Catalog SQLAlchemy URL or SQLite path (env DRSYNC_CATALOG).")
@click.option(
    "--limit-upload", metavar="RATE",
    help="Cap on all uploads of this process together, in decimal units "
         "(e.g. --limit-upload 20Mbit, or 2.5MB/s; env DRSYNC_LIMIT_UPLOAD).",
)
@click.option(
    "--limit-download", metavar="RATE",
    help="Cap on all downloads of this process together (e.g. --limit-download 50Mbit; "
         "env DRSYNC_LIMIT_DOWNLOAD).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    repo: str | None,
    password_file: str | None,
    key_file: str | None,
    config_path: str | None,
    catalog: str | None,
    limit_upload: str | None,
    limit_download: str | None,
) -> None:
    """drsync: encrypted, deduplicating off-site backup and disaster recovery.

    \b
    Example (an S3 bucket in the secondary data center, on a 20 Mbit/s share):
      drsync --repo s3://dr-backups/registry --limit-upload 20Mbit backup /srv/exports
    """
    ctx.obj = {
        "repo": repo,
        "password_file": password_file,
        "key_file": key_file,
        "config_path": config_path,
        "catalog": catalog,
        "limit_upload": limit_upload,
        "limit_download": limit_download,
    }


class _WarningLines(logging.Handler):
    """Warnings of the layers below (a store lacking an optional feature, said once per
    process) as one ``drsync: warning: ...`` line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"drsync: warning: {record.getMessage()}", err=True)


# The global options' placeholders, for the hint below.
_GLOBAL_METAVARS = {"--repo": "URL", "-r": "URL", "--password-file": "FILE", "--key-file": "FILE",
                    "--config": "FILE", "--catalog": "URL", "--limit-upload": "RATE",
                    "--limit-download": "RATE"}


def _global_option_hint(err: click.exceptions.NoSuchOption) -> str | None:
    """For an option of drsync itself given after a command that has no such option
    (``drsync init --password-file pw``): one line that says where it goes instead of
    click's "No such option"."""
    name = err.option_name.split("=", 1)[0]
    option = next((p for p in cli.params if isinstance(p, click.Option) and name in p.opts),
                  None)
    if option is None or err.ctx is None or err.ctx.parent is None:
        return None
    command = err.ctx.command_path.split(" ", 1)[1] if " " in err.ctx.command_path else ""
    env = "DRSYNC_" + max(option.opts, key=len).lstrip("-").replace("-", "_").upper()
    example = f"drsync {name} {_GLOBAL_METAVARS.get(name, 'VALUE')} {command}".rstrip()
    return (f"{name} is an option of drsync itself, not of '{command}': give it before "
            f"the command, as in `{example} ...`, or set {env}")


def _forget_stdout() -> None:
    """After a failure, drop what standard output still buffers: it may be a pipe whose
    reader ended, and flushing it at exit would print a second error (Python's own)."""
    if sys.stdout is None:  # started with standard output closed: nothing buffered
        return
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: expected failures become one line and their exit code."""
    logger = logging.getLogger("drsync")
    if not any(isinstance(h, _WarningLines) for h in logger.handlers):
        logger.addHandler(_WarningLines(logging.WARNING))
    try:
        return cli.main(args=argv, prog_name="drsync", standalone_mode=False)
    except DrsyncError as err:
        click.echo(f"drsync: error: {err}", err=True)
        _forget_stdout()
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("drsync: aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoSuchOption as err:
        hint = _global_option_hint(err)
        if hint is None:
            err.show()
            sys.exit(err.exit_code)
        click.echo(f"drsync: error: {hint}", err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("drsync: interrupted", err=True)
        sys.exit(130)
