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
        limit_upload=obj.get("limit_upload"), limit_download=obj.get("limit_download"),
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


def store_options(settings: Settings) -> Any:
    """The store's typed options from the settings (S3, retries, bandwidth limits)."""
    from drsync.store.options import MiB, S3Options, StoreOptions
    from drsync.store.throttle import parse_rate

    s3 = S3Options(
        endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
        addressing_style=settings.s3_addressing_style or "auto", profile=settings.s3_profile,
        verify_tls=settings.s3_verify_tls, ca_bundle=settings.s3_ca_bundle,
        part_size=(settings.s3_part_size_mib or 8) * MiB,
        conditional_writes=settings.s3_conditional_writes or "auto",
        object_lock_mode=settings.object_lock_mode.upper() if settings.object_lock_mode else None,
        object_lock_days=settings.object_lock_days or 0,
        spool_dir=settings.s3_spool_dir
        or os.path.join(os.path.dirname(default_catalog_url()), "s3-spool"),
    )
    defaults = StoreOptions()
    return StoreOptions(
        s3=s3, connections=settings.connections or defaults.connections,
        retry_deadline=defaults.retry_deadline if settings.retry_deadline_s is None
        else float(settings.retry_deadline_s),
        limit_upload=parse_rate(settings.limit_upload or "0"),
        limit_download=parse_rate(settings.limit_download or "0"),
    )


def open_store_for(settings: Settings) -> Any:
    """The store the settings name, wrapped as configured."""
    from drsync.store import open_store

    return open_store(repo_url(settings), store_options(settings))


def open_repo(ctx: click.Context) -> Any:
    """Open the repository the options name (imports the format code only when needed)."""
    from drsync.repo import Repository

    settings = settings_from(ctx)
    store = open_store_for(settings)
    return Repository.open(store, resolve_secret(settings), warn=_print_warning)


def _print_warning(message: str) -> None:
    click.echo(f"drsync: warning: {message}", err=True)


def open_catalog(ctx: click.Context) -> Any:
    """The catalog database (imports SQLAlchemy; ingests the run journal)."""
    from drsync.catalog.db import Catalog

    settings = settings_from(ctx)
    return Catalog(settings.catalog or default_catalog_url())


def open_journal(ctx: click.Context) -> Any:
    """The cheap recorder for runs: the catalog's journal, ingested on the catalog's next open."""
    from drsync.catalog.journal import RunJournal

    return RunJournal(settings_from(ctx).catalog or default_catalog_url())
