"""One typed settings model: TOML in, validated, flags and environment on top.

Precedence, highest first: command-line flag, its environment variable (both
handled by the CLI), the config file, the built-in default. Every problem in
a config file is one ``ConfigError`` naming the file and the key.

Config file keys::

    repo = "/srv/backup/tenant"            # path or file:///path
    password_file = "/etc/drsync/passphrase"
    key_file = "/etc/drsync/tenant.key"
    catalog = "/var/lib/drsync/catalog.sqlite"   # or any SQLAlchemy URL
    host = "registry-db-1"                 # recorded in snapshots (default: hostname)

    [backup]
    compression_level = 3                  # zstd 0..22 (0 = store raw)
    workers = 2                            # sealing threads (default: CPUs, at most 4)
    tags = ["nightly"]

    [wal]
    spool = "/var/spool/drsync/registry"   # wal-push's durable local spool (default: state dir)

    [init]                                 # fixed when a repository is created
    chunk_avg_kib = 1024
    chunk_min_kib = 256
    chunk_max_kib = 4096
    pack_size_mib = 16

    [store]                                # any store; limits are for the whole process
    connections = 4                        # parallel transfers (pack uploads) on S3
    retry_deadline_s = 300                 # how long one request rides out transient failures
    limit_upload = "20Mbit"                # decimal units: 20Mbit, 2.5MB/s, 800kbit
    limit_download = "50Mbit"

    [s3]                                   # for repo = "s3://bucket/prefix"
    endpoint_url = "https://s3.dc2.example.lg.jp"   # default: AWS_ENDPOINT_URL(_S3), then AWS
    region = "ap-northeast-1"
    addressing_style = "path"              # auto | path | virtual
    profile = "drsync"                     # in ~/.aws/config; default: the usual boto3 chain
    verify_tls = true
    ca_bundle = "/etc/drsync/dc2-ca.pem"
    part_size_mib = 8                      # multipart part size (S3's minimum is 5)
    conditional_writes = "auto"            # auto (probe) | on | off (claim protocol)
    object_lock_mode = "compliance"        # or "governance"; needs a bucket with Object Lock
    object_lock_days = 30
    spool_dir = "/var/lib/drsync/s3-spool"  # local copies of uploads in flight, for resuming
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from drsync.errors import ConfigError

__all__ = ["Settings", "default_catalog_url", "load_settings"]


@dataclass(frozen=True)
class Settings:
    repo: str | None = None
    password_file: str | None = None
    key_file: str | None = None
    catalog: str | None = None
    host: str | None = None
    compression_level: int | None = None
    workers: int | None = None
    tags: list[str] = field(default_factory=list)
    chunk_avg_kib: int = 1024
    chunk_min_kib: int = 256
    chunk_max_kib: int = 4096
    pack_size_mib: int = 16
    spool: str | None = None
    connections: int | None = None
    retry_deadline_s: float | None = None
    limit_upload: str | None = None
    limit_download: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_addressing_style: str | None = None
    s3_profile: str | None = None
    s3_verify_tls: bool = True
    s3_ca_bundle: str | None = None
    s3_part_size_mib: int | None = None
    s3_conditional_writes: str | None = None
    object_lock_mode: str | None = None
    object_lock_days: int | None = None
    s3_spool_dir: str | None = None
    source: str = ""  # the config file these came from, for messages

    def override(self, **flags: Any) -> Settings:
        """Settings with every flag that was given (not None) taking precedence."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})


# section -> key -> (Settings field, expected type)
_SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "": {"repo": ("repo", str), "password_file": ("password_file", str),
         "key_file": ("key_file", str), "catalog": ("catalog", str), "host": ("host", str)},
    "backup": {"compression_level": ("compression_level", int), "workers": ("workers", int),
               "tags": ("tags", list)},
    "init": {"chunk_avg_kib": ("chunk_avg_kib", int), "chunk_min_kib": ("chunk_min_kib", int),
             "chunk_max_kib": ("chunk_max_kib", int), "pack_size_mib": ("pack_size_mib", int)},
    "wal": {"spool": ("spool", str)},
    "store": {"connections": ("connections", int), "retry_deadline_s": ("retry_deadline_s", float),
              "limit_upload": ("limit_upload", str), "limit_download": ("limit_download", str)},
    "s3": {"endpoint_url": ("s3_endpoint_url", str), "region": ("s3_region", str),
           "addressing_style": ("s3_addressing_style", str), "profile": ("s3_profile", str),
           "verify_tls": ("s3_verify_tls", bool), "ca_bundle": ("s3_ca_bundle", str),
           "part_size_mib": ("s3_part_size_mib", int),
           "conditional_writes": ("s3_conditional_writes", str),
           "object_lock_mode": ("object_lock_mode", str),
           "object_lock_days": ("object_lock_days", int),
           "spool_dir": ("s3_spool_dir", str)},
}
_FIELDS = {f.name for f in fields(Settings)}


def load_settings(path: str | None) -> Settings:
    """Read a config file (or return defaults when ``path`` is None)."""
    if path is None:
        return Settings()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    values: dict[str, Any] = {"source": path}
    for key, value in data.items():
        if isinstance(value, dict) and key in _SCHEMA and key:
            for sub, sub_value in value.items():
                values.update(_check(path, key, sub, sub_value))
        else:
            values.update(_check(path, "", key, value))
    assert set(values) <= _FIELDS
    return Settings(**values)


def _check(path: str, section: str, key: str, value: Any) -> dict[str, Any]:
    dotted = f"{section}.{key}" if section else key
    spec = _SCHEMA.get(section, {}).get(key)
    if spec is None:
        raise ConfigError(f"config file {path}: unknown key {dotted!r}")
    name, kind = spec
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"config file {path}: key {dotted!r} must be an integer")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"config file {path}: key {dotted!r} must be a string")
    if kind is list and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ConfigError(f"config file {path}: key {dotted!r} must be a list of strings")
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"config file {path}: key {dotted!r} must be true or false")
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"config file {path}: key {dotted!r} must be a number")
    if kind in (int, float) and value < 0:
        raise ConfigError(f"config file {path}: key {dotted!r} must not be negative")
    if name in ("limit_upload", "limit_download"):
        from drsync.errors import UsageError
        from drsync.store.throttle import parse_rate

        try:
            parse_rate(value)
        except UsageError as err:
            raise ConfigError(f"config file {path}: key {dotted!r}: {err}") from None
    if name in ("repo", "password_file", "key_file", "catalog", "s3_ca_bundle", "s3_spool_dir",
                "spool") \
            and isinstance(value, str):
        value = _relative_to(path, value)
    return {name: value}


def _relative_to(config_path: str, value: str) -> str:
    """Paths in a config file are relative to the file, not to the working directory."""
    if "://" in value or os.path.isabs(value):
        return value
    return str(Path(config_path).absolute().parent / value)


def default_catalog_url() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(state, "drsync", "catalog.sqlite")
