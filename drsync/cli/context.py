"""From the command line's global options to settings, a store, a secret and a repository.

The settings come from :func:`drsync.settings.resolve` (flags given here,
``os.environ``, the config file); nothing in the CLI reads the environment
or restates a default.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from drsync.errors import UsageError
from drsync.repo.keys import KeyFile, Secret, read_password_file
from drsync.settings import Settings, resolve, store_for

FC = TypeVar("FC", bound=Callable[..., Any])

__all__ = ["open_catalog", "open_journal", "open_repo", "open_store_for", "read_new_passphrase",
           "resolve_secret", "settings_from"]

# ctx.obj keys that are Settings fields (the global flags)
GLOBAL_FLAGS = ("repo", "password_file", "key_file", "catalog", "limit_upload", "limit_download")


def settings_from(ctx: click.Context, **command_flags: Any) -> Settings:
    """The resolved settings: global flags, ``command_flags`` (e.g. ``spool``), environment,
    config file, defaults."""
    obj: dict[str, Any] = ctx.find_root().obj or {}
    flags = {name: obj.get(name) for name in GLOBAL_FLAGS}
    flags.update(command_flags)
    key = (obj.get("config_path"), tuple(sorted(flags.items())))
    cached = obj.get("_settings")
    if isinstance(cached, tuple) and cached[0] == key:
        return cached[1]  # type: ignore[no-any-return]
    settings = resolve(obj.get("config_path"), flags, os.environ)
    obj["_settings"] = (key, settings)
    from drsync.outbox import use_outbox

    use_outbox(os.path.join(settings.state_dir, "run-outbox"))
    return settings


def read_passphrase(settings: Settings, *, confirm: bool = False) -> tuple[str, str]:
    """(passphrase, where it came from)."""
    if settings.password_file:
        return read_password_file(settings.password_file), f"from {settings.password_file}"
    if settings.password:
        return settings.password, "from DRSYNC_PASSWORD"
    if sys.stdin.isatty():
        value = click.prompt("Repository passphrase", hide_input=True,
                             confirmation_prompt=confirm, err=True)
        return str(value), "typed"
    if confirm:  # init: a passphrase always wraps the new key; a key file is extra
        raise UsageError("no passphrase for the new repository: use `drsync --password-file "
                         "FILE init` or DRSYNC_PASSWORD (--new-key-file adds a key file for "
                         "agents)")
    raise UsageError("no passphrase: use drsync's --password-file FILE or --key-file FILE "
                     "(given before the command), DRSYNC_PASSWORD or DRSYNC_KEY_FILE")


def read_new_passphrase(path: str | None) -> str:
    """A passphrase for a new wrapping: from ``path``, else typed twice on a terminal."""
    if path:
        return read_password_file(path)
    if sys.stdin.isatty():
        return str(click.prompt("New passphrase", hide_input=True, confirmation_prompt=True,
                                err=True))
    raise UsageError("no new passphrase: use --new-password-file or run on a terminal")


def resolve_secret(settings: Settings) -> Secret:
    if settings.key_file:
        return Secret(key_file=KeyFile.load(settings.key_file), source=settings.key_file)
    passphrase, source = read_passphrase(settings)
    return Secret(passphrase=passphrase, source=source)


def repo_url(settings: Settings) -> str:
    if not settings.repo:
        raise UsageError("no repository: use --repo, DRSYNC_REPO or `repo` in the config file")
    return settings.repo


def open_store_for(settings: Settings) -> Any:
    """The store the settings name, wrapped as configured (see drsync.settings.store_for)."""
    return store_for(settings)


def open_repo(ctx: click.Context, settings: Settings | None = None,
              secret: Secret | None = None) -> Any:
    """Open the repository the options name (imports the format code only when needed),
    with ``secret`` when given (``key recover``: an escrow key), else the configured one."""
    from drsync.repo import Repository

    settings = settings or settings_from(ctx)
    store = store_for(settings)
    return Repository.open(store, secret or resolve_secret(settings), warn=_print_warning)


def _print_warning(message: str) -> None:
    click.echo(f"drsync: warning: {message}", err=True)


def open_catalog(ctx: click.Context) -> Any:
    """The catalog database (imports SQLAlchemy; ingests the run journal)."""
    from drsync.catalog.db import Catalog

    settings = settings_from(ctx)
    assert settings.catalog is not None  # resolve() fills in the default
    return Catalog(settings.catalog, state_dir=settings.state_dir)


def open_journal(ctx: click.Context) -> Any:
    """The cheap recorder for runs: the catalog's journal, ingested on the catalog's next open."""
    from drsync.catalog.journal import RunJournal

    settings = settings_from(ctx)
    assert settings.catalog is not None
    return RunJournal(settings.catalog, state_dir=settings.state_dir)


def _use_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """A subcommand's ``--config FILE`` works like the global ``--config`` (as
    archive_command lines and unit files are usually written)."""
    if value:
        root = ctx.find_root()
        root.obj = {**(root.obj or {}), "config_path": value}
        root.obj.pop("_settings", None)


def config_option(help_text: str = "TOML settings file (same as the global --config).",
                  ) -> Callable[[FC], FC]:
    """The ``--config FILE`` option of a subcommand."""
    return click.option("--config", metavar="FILE", expose_value=False,
                        is_eager=True, callback=_use_config, help=help_text)


@contextlib.contextmanager
def on_record(ctx: click.Context, repo: Any, kind: str, source: str, *,
               enabled: bool = True) -> Iterator[dict[str, Any]]:
    """The command as a run of ``kind`` in the catalog and, as a run record, in the store
    (``catalog rebuild`` brings it back): the caller updates the yielded outcome
    (``status``, ``error``, ``bytes_read``, ``bytes_added``); an exception is a failed
    run with its first line. A dry run (``enabled`` false) is not on record."""
    import socket
    from datetime import UTC, datetime

    from drsync import __version__
    from drsync.errors import StoreError
    from drsync.repo.runs import save_run_or_warn

    outcome: dict[str, Any] = {"status": "ok", "error": None, "bytes_read": 0,
                               "bytes_added": 0}
    if not enabled:
        yield outcome
        return
    settings = settings_from(ctx)
    host = settings.host or socket.gethostname()
    tenant = settings.tenant or host
    journal = open_journal(ctx)
    started = datetime.now(UTC)
    run_id = journal.start_run(repo.url, kind, source, host, tenant=tenant, started=started)
    record = {"run_id": run_id, "tenant": tenant, "host": host, "kind": kind,
              "source": source, "started": started.isoformat(), "drsync_version": __version__}
    try:
        yield outcome
    except Exception as err:
        failure = str(err).strip().split("\n")[0]
        finished = datetime.now(UTC)
        journal.finish_run(run_id, "failed", error=failure, finished=finished)
        save_run_or_warn(repo, {**record, "status": "failed", "error": failure,
                                "finished": finished.isoformat()}, quiet=True,
                         store_failed=isinstance(err, StoreError))
        raise
    finished = datetime.now(UTC)
    journal.finish_run(run_id, outcome["status"], error=outcome["error"],
                       bytes_read=outcome["bytes_read"], bytes_added=outcome["bytes_added"],
                       finished=finished)
    save_run_or_warn(repo, {**record, **outcome, "finished": finished.isoformat()},
                     quiet=True)
