"""Every setting, resolved in one place: flags, environment, config file, defaults.

:func:`resolve` is the only reader of drsync's environment variables and the
only place that fills in defaults; the click commands and the click-free
``wal-push`` fast path (``drsync.entry``) both call it, so they cannot
disagree. Precedence, highest first: the command-line flag, its environment
variable, the config file, the built-in default. An empty variable counts
as unset. Every problem in a config file is one ``ConfigError`` naming the
file (and the key).

Environment variables (nothing else in drsync reads the environment; AWS_*
variables stay boto3's own business unless the config names credentials)::

    DRSYNC_CONFIG          the config file (a command's --config wins)
    DRSYNC_REPO            repo
    DRSYNC_PASSWORD_FILE   password_file
    DRSYNC_PASSWORD        the passphrase itself (no config key: use password_file)
    DRSYNC_KEY_FILE        key_file
    DRSYNC_CATALOG         catalog
    DRSYNC_SPOOL           [wal] spool
    DRSYNC_LIMIT_UPLOAD    [store] limit_upload
    DRSYNC_LIMIT_DOWNLOAD  [store] limit_download
    DRSYNC_PG_BINDIR       pg_bindir
    DRSYNC_PG_BASE_METHOD  [backup] pg_base_method
    XDG_STATE_HOME, HOME   the state directory: $XDG_STATE_HOME/drsync, else
                           ~/.local/state/drsync

Defaults under the state directory: ``catalog.sqlite`` (catalog),
``wal-spool/<repository id>`` (the WAL spool, one per repository),
``s3-spool`` (S3 uploads in flight), ``cache`` (an S3 repository's documents),
the journal of a catalog URL.

Config file keys::

    repo = "/srv/backup/tenant"            # path or file:///path
    password_file = "/etc/drsync/passphrase"
    key_file = "/etc/drsync/tenant.key"
    catalog = "/var/lib/drsync/catalog.sqlite"   # or any SQLAlchemy URL
    host = "registry-db-1"                 # recorded in snapshots (default: hostname)
    tenant = "Nobeoka"                     # the fleet file's name, recorded with every run
                                           # (default: host, else the hostname)
    pg_bindir = "/usr/lib/postgresql/15/bin"     # default: PATH, then Debian's newest

    [backup]
    compression_level = 3                  # zstd 0..22 (0 = store raw)
    workers = 2                            # sealing threads (default: CPUs, at most 4)
    tags = ["nightly"]
    pg_base_method = "auto"                # auto|direct|stream: read a local data directory
                                           # directly (auto: when readable), or pg_basebackup
    pg_base_reread = false                 # true: a base backup reads even unchanged files

    [wal]
    spool = "/var/spool/drsync/registry"   # wal-push's durable local spool (default: state dir)
    resident = true                        # wal-push leaves a resident pusher for the next
                                           # ones, with look-ahead (drsync.wal.resident)

    [restore]
    wal_prefetch = 8                       # wal-fetch keeps this many segments verified
                                           # ahead of recovery (0: off; drsync.wal.prefetch)

    [init]                                 # fixed when a repository is created
    chunk_avg_kib = 1024
    chunk_min_kib = 256
    chunk_max_kib = 4096
    pack_size_mib = 16
    escrow_pubkey = "/etc/drsync/escrow.pub"   # the fleet operator's escrow key (key escrow)

    [store]                                # any store; limits are for the whole process
    connections = 4                        # parallel transfers (pack uploads) on S3
    retry_deadline_s = 300                 # how long one request rides out transient failures
    limit_upload = "20Mbit"                # decimal units: 20Mbit, 2.5MB/s, 800kbit
    limit_download = "50Mbit"
    cache = true                           # S3: keep snapshots, index files, run and drill
                                           # records read or written (drsync.store.cache)
    cache_dir = "/var/cache/drsync"        # default: the state directory's cache/

    [s3]                                   # for repo = "s3://bucket/prefix"
    endpoint_url = "https://s3.dc2.example.lg.jp"   # default: AWS_ENDPOINT_URL(_S3), then AWS
    region = "ap-northeast-1"
    addressing_style = "path"              # auto | path | virtual
    credentials_file = "/etc/drsync/s3.credentials" # an AWS shared-credentials file
    profile = "drsync"                     # its section (default "default"); without
                                           # credentials_file: a profile of ~/.aws/config
    verify_tls = true
    ca_bundle = "/etc/drsync/dc2-ca.pem"
    part_size_mib = 8                      # multipart part size (S3's minimum is 5)
    conditional_writes = "auto"            # auto (probe) | on | off (claim protocol)
    object_lock_mode = "compliance"        # or "governance"; needs a bucket with Object Lock
    object_lock_days = 30
    spool_dir = "/var/lib/drsync/s3-spool"  # local copies of uploads in flight, for resuming

    [agent]                                # `drsync agent run`: one tenant's daemon
    tenant = "Nobeoka"                     # its name in the fleet file and the schedule
    schedule = "/etc/drsync/schedule.json" # a drsync-schedule v1 file, or s3://bucket/key
    ship_wal = true                        # run wal-ship inside the tenant's slot
    wal_interval_s = 60                    # and every 60 s outside it (0: only in the slot)
    recompress_every_s = 3600              # wal-recompress hourly outside the slot (0: never)
    recompress_cpu_budget = 0.5            # a share of one core; ended when the slot starts
    rpo_hours = 24                         # `agent status` is unhealthy beyond this RPO
    pitr = true                            # false (with rpo_hours >= 24 and a pg-base job):
                                           # ship WAL or a new base, whichever is fewer bytes
    drill_every_days = 7                   # after a slot, drill when the last drill is
                                           # older (0: never)
    metrics_file = "/var/lib/node_exporter/textfile/drsync.prom"

    [[agent.job]]                          # run in order at the slot's start
    source = "sqlite"                      # files|sqlite|stdin-command|pg-dump|pg-base|mariadb-dump
    target = "/var/lib/app/municipal.db"   # path(s) (a list for files), a DSN, or a command
    name = "registry.dump"                 # stdin-command only: the stream's name
    # defaults_file = "mariadb.cnf"        # mariadb-dump only: MariaDB option file (password)
    tags = ["nightly"]                     # added to [backup] tags

    [retention]                            # `drsync forget` (and the agent after each night);
    keep_last = 3                          # each --keep-* flag overrides its key
    keep_hourly = 0                        # 0: the rule is off
    keep_daily = 7
    keep_weekly = 4
    keep_monthly = 12
    keep_yearly = 5
    keep_within = "2d"                     # y, m, d, h: "1y2m", "30d"
    keep_tags = ["audit"]
    max_unused = "10%"                     # `drsync prune`: dead bytes tolerated ("unlimited")

Without ``credentials_file`` the credentials come from boto3's usual chain
(AWS_* variables, ~/.aws, instance metadata).
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drsync.errors import ConfigError

if TYPE_CHECKING:
    from drsync.repo.retention import RetentionPolicy
    from drsync.store import Store, StoreOptions
    from drsync.store.throttle import TokenBucket

__all__ = ["AGENT_SOURCES", "CONFIG_ENV", "ENVIRONMENT", "AgentJob", "Settings", "load_settings",
           "resolve", "store_for", "store_options"]

CONFIG_ENV = "DRSYNC_CONFIG"
# environment variable -> Settings field
ENVIRONMENT: dict[str, str] = {
    "DRSYNC_REPO": "repo",
    "DRSYNC_PASSWORD_FILE": "password_file",
    "DRSYNC_PASSWORD": "password",
    "DRSYNC_KEY_FILE": "key_file",
    "DRSYNC_CATALOG": "catalog",
    "DRSYNC_SPOOL": "spool",
    "DRSYNC_LIMIT_UPLOAD": "limit_upload",
    "DRSYNC_LIMIT_DOWNLOAD": "limit_download",
    "DRSYNC_PG_BINDIR": "pg_bindir",
    "DRSYNC_PG_BASE_METHOD": "pg_base_method",
}


AGENT_SOURCES = ("files", "sqlite", "stdin-command", "pg-dump", "pg-base", "mariadb-dump")


@dataclass(frozen=True)
class AgentJob:
    """One ``[[agent.job]]``: a source the agent backs up in the tenant's slot."""

    source: str  # one of AGENT_SOURCES
    targets: tuple[str, ...]  # paths (files: one or more), a DSN, or a command line
    name: str | None = None  # stdin-command: the stream's name (default: "stdin")
    tags: tuple[str, ...] = ()
    defaults_file: str | None = None  # mariadb-dump: a MariaDB option file (user, password)


@dataclass(frozen=True)
class Settings:
    repo: str | None = None
    password_file: str | None = None
    password: str | None = field(default=None, repr=False)  # DRSYNC_PASSWORD only
    key_file: str | None = None
    catalog: str | None = None
    host: str | None = None
    tenant: str | None = None
    pg_bindir: str | None = None
    pg_base_method: str = "auto"
    pg_base_reread: bool = False
    compression_level: int | None = None
    workers: int | None = None
    tags: list[str] = field(default_factory=list)
    chunk_avg_kib: int = 1024
    chunk_min_kib: int = 256
    chunk_max_kib: int = 4096
    pack_size_mib: int = 16
    escrow_pubkey: str | None = None
    spool: str | None = None
    wal_prefetch: int = 8  # drsync.wal.prefetch.DEFAULT_PREFETCH
    wal_resident: bool = True  # wal-push leaves a resident pusher (drsync.wal.resident)
    connections: int | None = None
    retry_deadline_s: float | None = None
    limit_upload: str | None = None
    limit_download: str | None = None
    cache: bool = True
    cache_dir: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_addressing_style: str | None = None
    s3_profile: str | None = None
    s3_credentials_file: str | None = None
    s3_verify_tls: bool = True
    s3_ca_bundle: str | None = None
    s3_part_size_mib: int | None = None
    s3_conditional_writes: str | None = None
    object_lock_mode: str | None = None
    object_lock_days: int | None = None
    s3_spool_dir: str | None = None
    agent_tenant: str | None = None
    agent_schedule: str | None = None
    agent_ship_wal: bool = False
    agent_wal_interval_s: float = 0.0
    agent_recompress_every_s: float = 0.0
    agent_pitr: bool = True
    agent_recompress_cpu_budget: float = 0.5
    agent_rpo_hours: float = 24.0
    agent_drill_every_days: float = 0.0
    agent_metrics_file: str | None = None
    agent_jobs: tuple[AgentJob, ...] = ()
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: str | None = None
    keep_tags: list[str] = field(default_factory=list)
    max_unused: str | None = None
    state_dir: str = ""  # filled in by resolve(): $XDG_STATE_HOME/drsync
    source: str = ""  # the config file these came from (absolute), for messages
    # The SHA-256 of that file's bytes as read, so a process that outlives the read (the
    # resident pusher) can tell an edit made since, even one within the same mtime tick.
    source_sha256: str = ""

    def override(self, **flags: Any) -> Settings:
        """Settings with every flag that was given (not None) taking precedence."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})

    def wal_spool(self) -> str:
        """The WAL spool: ``[wal] spool``, else one per repository in the state directory
        (named by the key file's repository id, or by a hash of the repository URL)."""
        if self.spool:
            return self.spool
        if self.key_file:
            from drsync.repo.keys import KeyFile

            tag = KeyFile.load(self.key_file).repo_id
        elif self.repo:
            import hashlib  # here: wal-push with [wal] spool never needs it

            tag = "url-" + hashlib.sha256(self.repo.encode()).hexdigest()[:16]
        else:
            raise ConfigError("no spool: use --spool, DRSYNC_SPOOL, [wal] spool in the config, "
                              "or --key-file/--repo for the default one")
        if not self.state_dir:
            raise ValueError("wal_spool() needs resolved settings (drsync.settings.resolve)")
        return os.path.join(self.state_dir, "wal-spool", tag)

    def retention_policy(self) -> RetentionPolicy:
        """The ``forget`` policy: ``[retention]`` keys, each overridden by its flag."""
        from drsync.repo.retention import RetentionPolicy, parse_duration

        return RetentionPolicy(
            keep_last=self.keep_last or 0, keep_hourly=self.keep_hourly or 0,
            keep_daily=self.keep_daily or 0, keep_weekly=self.keep_weekly or 0,
            keep_monthly=self.keep_monthly or 0, keep_yearly=self.keep_yearly or 0,
            keep_within=parse_duration(self.keep_within) if self.keep_within else None,
            keep_tags=tuple(self.keep_tags),
        ).validate()


# section -> key -> (Settings field, expected type)
_SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "": {"repo": ("repo", str), "password_file": ("password_file", str),
         "key_file": ("key_file", str), "catalog": ("catalog", str), "host": ("host", str),
         "tenant": ("tenant", str), "pg_bindir": ("pg_bindir", str)},
    "backup": {"compression_level": ("compression_level", int), "workers": ("workers", int),
               "tags": ("tags", list), "pg_base_method": ("pg_base_method", str),
               "pg_base_reread": ("pg_base_reread", bool)},
    "init": {"chunk_avg_kib": ("chunk_avg_kib", int), "chunk_min_kib": ("chunk_min_kib", int),
             "chunk_max_kib": ("chunk_max_kib", int), "pack_size_mib": ("pack_size_mib", int),
             "escrow_pubkey": ("escrow_pubkey", str)},
    "wal": {"spool": ("spool", str), "resident": ("wal_resident", bool)},
    "restore": {"wal_prefetch": ("wal_prefetch", int)},
    "store": {"connections": ("connections", int), "retry_deadline_s": ("retry_deadline_s", float),
              "limit_upload": ("limit_upload", str), "limit_download": ("limit_download", str),
              "cache": ("cache", bool), "cache_dir": ("cache_dir", str)},
    "s3": {"endpoint_url": ("s3_endpoint_url", str), "region": ("s3_region", str),
           "addressing_style": ("s3_addressing_style", str), "profile": ("s3_profile", str),
           "credentials_file": ("s3_credentials_file", str),
           "verify_tls": ("s3_verify_tls", bool), "ca_bundle": ("s3_ca_bundle", str),
           "part_size_mib": ("s3_part_size_mib", int),
           "conditional_writes": ("s3_conditional_writes", str),
           "object_lock_mode": ("object_lock_mode", str),
           "object_lock_days": ("object_lock_days", int),
           "spool_dir": ("s3_spool_dir", str)},
    "agent": {"tenant": ("agent_tenant", str), "schedule": ("agent_schedule", str),
              "ship_wal": ("agent_ship_wal", bool), "rpo_hours": ("agent_rpo_hours", float),
              "wal_interval_s": ("agent_wal_interval_s", float),
              "recompress_every_s": ("agent_recompress_every_s", float),
              "pitr": ("agent_pitr", bool),
              "recompress_cpu_budget": ("agent_recompress_cpu_budget", float),
              "drill_every_days": ("agent_drill_every_days", float),
              "metrics_file": ("agent_metrics_file", str)},
    "retention": {"keep_last": ("keep_last", int), "keep_hourly": ("keep_hourly", int),
                  "keep_daily": ("keep_daily", int), "keep_weekly": ("keep_weekly", int),
                  "keep_monthly": ("keep_monthly", int), "keep_yearly": ("keep_yearly", int),
                  "keep_within": ("keep_within", str), "keep_tags": ("keep_tags", list),
                  "max_unused": ("max_unused", str)},
}
# Values outside these are refused when the file is read, naming the key, not when used.
_RANGES = {"compression_level": (0, 22), "workers": (1, 64), "connections": (1, 64),
           "s3_part_size_mib": (1, 5120)}
_CHOICES = {"s3_addressing_style": ("auto", "path", "virtual"),
            "s3_conditional_writes": ("auto", "on", "off"),
            "object_lock_mode": ("compliance", "governance")}
_JOB_KEYS = ("source", "target", "name", "tags", "defaults_file")
# What botocore accepts as a region name (others fail when the store opens, exit 14).
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def endpoint_problem(url: str) -> str | None:
    """What is wrong with an S3 endpoint URL (None: nothing), before botocore says it
    with a traceback: it must be http:// or https:// and name a host."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number
    except ValueError as err:
        return f"not a valid URL ({err}): {url!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be http://HOST[:PORT] or https://HOST[:PORT], got {url!r}"
    del port
    return None
_FIELDS = {f.name for f in fields(Settings)}
_SECRET_FIELDS = ("key_file", "password_file", "password")  # given together, by one layer
# Paths in a config file are relative to the file.
_PATH_FIELDS = ("repo", "password_file", "key_file", "catalog", "pg_bindir", "s3_ca_bundle",
                "s3_credentials_file", "s3_spool_dir", "cache_dir", "spool", "escrow_pubkey",
                "agent_schedule", "agent_metrics_file")


def resolve(config_path: str | None, flags: Mapping[str, Any],
            environ: Mapping[str, str]) -> Settings:
    """The settings a command runs with.

    ``config_path`` is the ``--config`` flag (None: ``DRSYNC_CONFIG``, else no
    file); ``flags`` maps Settings fields to what the command line gave (None:
    not given); ``environ`` is the process environment (``os.environ``).
    """
    unknown = set(flags) - _FIELDS
    if unknown:
        raise ValueError(f"not settings: {sorted(unknown)}")
    path = config_path or environ.get(CONFIG_ENV) or None
    from_env = {name: environ[var] for var, name in ENVIRONMENT.items() if environ.get(var)}
    loaded = load_settings(path)
    # The repository's secret comes whole from the highest layer that gives one: a
    # --password-file flag (or DRSYNC_PASSWORD) is used, not passed over for the config
    # file's key_file, which would make a wrong passphrase look right.
    given = [layer for layer in (flags, from_env)  # an empty value gives none (it clears)
             if any(layer.get(name) for name in _SECRET_FIELDS)]
    if given:
        loaded = replace(loaded, key_file=None, password_file=None, password=None)
        if given[0] is flags:
            from_env = {k: v for k, v in from_env.items() if k not in _SECRET_FIELDS}
    settings = loaded.override(**from_env).override(**flags)
    state_dir = _state_dir(environ)
    return replace(
        settings, state_dir=state_dir,
        catalog=settings.catalog or os.path.join(state_dir, "catalog.sqlite"),
        tenant=settings.tenant or settings.host,
        s3_spool_dir=settings.s3_spool_dir or os.path.join(state_dir, "s3-spool"),
        cache_dir=settings.cache_dir or os.path.join(state_dir, "cache"),
    )


def _state_dir(environ: Mapping[str, str]) -> str:
    state = environ.get("XDG_STATE_HOME") or os.path.join(
        environ.get("HOME") or str(Path.home()), ".local", "state")
    return os.path.join(os.path.abspath(state), "drsync")


def load_settings(path: str | None) -> Settings:
    """Read a config file (or return defaults when ``path`` is None); nothing resolved."""
    if path is None:
        return Settings()
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        # A byte-order mark (Windows Notepad writes one) is no TOML, but nothing else either.
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    values: dict[str, Any] = {"source": os.path.abspath(path),
                              "source_sha256": hashlib.sha256(raw).hexdigest()}
    for key, value in data.items():
        if isinstance(value, dict) and key in _SCHEMA and key:
            for sub, sub_value in value.items():
                if key == "agent" and sub == "job":
                    values["agent_jobs"] = _agent_jobs(path, sub_value)
                else:
                    values.update(_check(path, key, sub, sub_value))
        else:
            values.update(_check(path, "", key, value))
    assert set(values) <= _FIELDS
    if values.get("object_lock_mode") and not values.get("object_lock_days"):
        raise ConfigError(f"config file {path}: key 's3.object_lock_mode' needs "
                          "'s3.object_lock_days' (the retention, at least 1 day)")
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
    if name in _RANGES:
        low, high = _RANGES[name]
        if not low <= value <= high:
            raise ConfigError(f"config file {path}: key {dotted!r} must be {low}..{high} "
                              f"(got {value})")
    if name in _CHOICES and value.lower() not in _CHOICES[name]:
        raise ConfigError(f"config file {path}: key {dotted!r} must be "
                          f"{' or '.join(_CHOICES[name])} (got {value!r})")
    if name == "s3_region" and not _REGION.fullmatch(value):
        raise ConfigError(f"config file {path}: key {dotted!r} must be a region name such as "
                          f"us-east-1 (letters, digits and '-'; got {value!r})")
    if name == "s3_endpoint_url":
        problem = endpoint_problem(value)
        if problem:
            raise ConfigError(f"config file {path}: key {dotted!r}: {problem}")
    if name in ("limit_upload", "limit_download"):
        from drsync.errors import UsageError
        from drsync.store.throttle import parse_rate

        try:
            parse_rate(value)
        except UsageError as err:
            raise ConfigError(f"config file {path}: key {dotted!r}: {err}") from None
    if name in ("keep_within", "max_unused"):
        from drsync.errors import UsageError
        from drsync.repo.prune import parse_max_unused
        from drsync.repo.retention import parse_duration

        try:
            (parse_duration if name == "keep_within" else parse_max_unused)(value)
        except UsageError as err:
            raise ConfigError(f"config file {path}: key {dotted!r}: {err}") from None
    if name in ("keep_tags", "tags") and any(not str(t).strip() for t in value):
        raise ConfigError(f"config file {path}: key {dotted!r}: an empty tag (it would match "
                          "no snapshot)")
    if name == "catalog":
        from drsync.catalog.journal import location_problem

        problem = location_problem(value)
        if problem:
            raise ConfigError(f"config file {path}: key {dotted!r}: {problem}")
    if name == "repo":
        from drsync.errors import UsageError
        from drsync.store import url_problem
        from drsync.store.base import parse_s3_url

        problem = url_problem(value)
        if problem:
            raise ConfigError(f"config file {path}: key {dotted!r}: {problem}")
        if value.startswith("s3://"):
            try:
                parse_s3_url(value)
            except UsageError as err:
                raise ConfigError(f"config file {path}: key {dotted!r}: {err}") from None
    if name in _PATH_FIELDS and isinstance(value, str):
        value = _relative_to(path, value)
    return {name: value}


def _agent_jobs(path: str, value: Any) -> tuple[AgentJob, ...]:
    """``[[agent.job]]`` tables, each checked; ConfigError naming ``agent.job[i].key``."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"config file {path}: key 'agent.job' must be an array of tables "
                          "([[agent.job]])")
    jobs = []
    for i, table in enumerate(value):
        where = f"agent.job[{i}]"
        for key in table:
            if key not in _JOB_KEYS:
                raise ConfigError(f"config file {path}: unknown key {where + '.' + key!r}")
        source = table.get("source")
        if source not in AGENT_SOURCES:
            raise ConfigError(f"config file {path}: key '{where}.source' must be one of "
                              f"{', '.join(AGENT_SOURCES)} (got {str(source)[:40]!r})")
        target = table.get("target")
        targets = [target] if isinstance(target, str) else target
        if not isinstance(targets, list) or not targets \
                or not all(isinstance(t, str) and t for t in targets):
            raise ConfigError(f"config file {path}: key '{where}.target' must be a "
                              "non-empty string" + (" or list of paths" if source == "files"
                                                    else ""))
        if len(targets) > 1 and source != "files":
            raise ConfigError(f"config file {path}: key '{where}.target': a {source} job "
                              "takes one target (a list is for files)")
        if source in ("files", "sqlite"):
            targets = [_relative_to(path, t) for t in targets]
        name = table.get("name")
        if name is not None and (source != "stdin-command" or not isinstance(name, str)
                                 or not name or "/" in name):
            raise ConfigError(f"config file {path}: key '{where}.name' is the plain stream "
                              "name of a stdin-command job")
        tags = table.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"config file {path}: key '{where}.tags' must be a list of strings")
        defaults_file = table.get("defaults_file")
        if defaults_file is not None and (source != "mariadb-dump"
                                          or not isinstance(defaults_file, str)
                                          or not defaults_file):
            raise ConfigError(f"config file {path}: key '{where}.defaults_file' is the option "
                              "file path of a mariadb-dump job")
        if defaults_file is not None:
            defaults_file = _relative_to(path, defaults_file)
        jobs.append(AgentJob(source, tuple(targets), name, tuple(tags), defaults_file))
    return tuple(jobs)


def _relative_to(config_path: str, value: str) -> str:
    """Paths in a config file are relative to the file, not to the working directory."""
    if "://" in value or os.path.isabs(value):
        return value
    return str(Path(config_path).absolute().parent / value)


def store_options(settings: Settings) -> StoreOptions:
    """The store's typed options from the settings (S3, retries, bandwidth limits)."""
    from drsync.store.options import MiB, S3Options, StoreOptions
    from drsync.store.throttle import parse_rate

    bundle = settings.s3_ca_bundle
    if bundle and (settings.repo or "").startswith("s3://") and not os.path.isfile(bundle):
        # Found when the store opens (an example config may name one not made yet), as a
        # setting: botocore would call it a TLS failure and advise setting ca_bundle.
        why = "is not a file" if os.path.exists(bundle) else "does not exist"
        where = f"config file {settings.source}: " if settings.source else ""
        raise ConfigError(f"{where}key 's3.ca_bundle': {bundle} {why} (the PEM file of the "
                          "CA that signed the endpoint's certificate)")
    s3 = S3Options(
        endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
        addressing_style=settings.s3_addressing_style or "auto", profile=settings.s3_profile,
        credentials_file=settings.s3_credentials_file,
        verify_tls=settings.s3_verify_tls, ca_bundle=settings.s3_ca_bundle,
        part_size=(settings.s3_part_size_mib or 8) * MiB,
        conditional_writes=settings.s3_conditional_writes or "auto",
        object_lock_mode=settings.object_lock_mode.upper() if settings.object_lock_mode else None,
        object_lock_days=settings.object_lock_days or 0,
        spool_dir=settings.s3_spool_dir,
    )
    defaults = StoreOptions()
    deadline = defaults.retry_deadline if settings.retry_deadline_s is None \
        else float(settings.retry_deadline_s)
    # One attempt that hangs (an endpoint that stopped answering) must not outlast the
    # retry deadline by far: botocore's read timeout is at most the deadline (10 s least).
    s3 = replace(s3, read_timeout=min(s3.read_timeout, max(10.0, deadline)),
                 connect_timeout=min(s3.connect_timeout, max(2.0, deadline)))
    return StoreOptions(
        s3=s3, connections=settings.connections or defaults.connections,
        retry_deadline=deadline,
        limit_upload=parse_rate(settings.limit_upload or "0"),
        limit_download=parse_rate(settings.limit_download or "0"),
        cache_dir=(settings.cache_dir or "") if settings.cache else "",
    )


def store_for(settings: Settings, *, upload: TokenBucket | None = None) -> Store:
    """The store the settings name, with every store option they carry: the one way
    every command (wal-push and wal-fetch included) opens its store. ``upload``: the
    agent's own upload bucket (see ``drsync.store.open_store``)."""
    from drsync.errors import UsageError
    from drsync.store import open_store

    if not settings.repo:
        raise UsageError("no repository: use --repo, DRSYNC_REPO or `repo` in the config file")
    return open_store(settings.repo, store_options(settings), upload=upload)
