"""From the command line's global options to settings, a store, a secret and a repository."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from drsync.errors import ConfigError, UsageError
from drsync.repo.keys import KdfParams, KeyFile, Secret
from drsync.settings import Settings, default_catalog_url, load_settings

__all__ = ["open_catalog", "open_journal", "open_repo", "resolve_secret", "settings_from"]

# Tests only: a cheap scrypt so that suites do not spend seconds per `init`.
TEST_KDF_ENV = "DRSYNC_INSECURE_TEST_KDF"


def settings_from(ctx: click.Context) -> Settings:
    obj: dict[str, Any] = ctx.find_root().obj or {}
    cached = obj.get("_settings")
    if isinstance(cached, Settings):
        return cached
    settings = load_settings(obj.get("config_path")).override(
        repo=obj.get("repo"), password_file=obj.get("password_file"),
        key_file=obj.get("key_file"), catalog=obj.get("catalog"),
    )
    obj["_settings"] = settings
    return settings


def kdf_params() -> KdfParams:
    return KdfParams(n=1 << 10) if os.environ.get(TEST_KDF_ENV) == "1" else KdfParams()


def _read_password_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            line = fh.readline().rstrip("\r\n")
    except OSError as err:
        raise ConfigError(f"cannot read password file {path}: {err.strerror}") from None
    if not line:
        raise ConfigError(f"password file {path} is empty")
    return line


def read_passphrase(settings: Settings, *, confirm: bool = False) -> tuple[str, str]:
    """(passphrase, where it came from)."""
    if settings.password_file:
        return _read_password_file(settings.password_file), f"from {settings.password_file}"
    env = os.environ.get("DRSYNC_PASSWORD")
    if env:
        return env, "from DRSYNC_PASSWORD"
    if sys.stdin.isatty():
        value = click.prompt("Repository passphrase", hide_input=True,
                             confirmation_prompt=confirm, err=True)
        return str(value), "typed"
    raise UsageError("no passphrase: use --password-file, DRSYNC_PASSWORD or --key-file")


def resolve_secret(settings: Settings) -> Secret:
    if settings.key_file:
        return Secret(key_file=KeyFile.load(settings.key_file), source=settings.key_file)
    passphrase, source = read_passphrase(settings)
    return Secret(passphrase=passphrase, source=source)


def repo_url(settings: Settings) -> str:
    if not settings.repo:
        raise UsageError("no repository: use --repo, DRSYNC_REPO or `repo` in the config file")
    return settings.repo


def open_repo(ctx: click.Context) -> Any:
    """Open the repository the options name (imports the format code only when needed)."""
    from drsync.repo import Repository
    from drsync.store import open_store

    settings = settings_from(ctx)
    store = open_store(repo_url(settings))
    return Repository.open(store, resolve_secret(settings))


def open_catalog(ctx: click.Context) -> Any:
    """The catalog database (imports SQLAlchemy; ingests the run journal)."""
    from drsync.catalog.db import Catalog

    settings = settings_from(ctx)
    return Catalog(settings.catalog or default_catalog_url())


def open_journal(ctx: click.Context) -> Any:
    """The cheap recorder for runs: the catalog's journal, ingested on the catalog's next open."""
    from drsync.catalog.journal import RunJournal

    return RunJournal(settings_from(ctx).catalog or default_catalog_url())
