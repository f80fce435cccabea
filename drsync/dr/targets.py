"""TARGETS.toml: where each tenant of a fleet is rebuilt by ``drsync dr restore``.

::

    [[target]]
    tenant = "Nobeoka"
    directory = "/srv/restore/nobeoka"          # files and SQLite (and a dump, as a file)
    # pg_restore = "host=db2 dbname=registry"   # a logical PostgreSQL restore
    # pgdata = "/srv/pg/nobeoka"                # a base backup + WAL, started on `port`
    # port = 5433

Exactly one of ``directory``, ``pg_restore`` and ``pgdata`` per target;
relative paths are relative to the file. Every problem is one ConfigError
naming the file and the key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drsync.errors import ConfigError
from drsync.plan.fleetfile import read_toml

__all__ = ["Target", "load_targets"]

_KINDS = ("directory", "pg_restore", "pgdata")
_KEYS = {"tenant", *_KINDS, "port"}


@dataclass(frozen=True)
class Target:
    tenant: str
    kind: str  # directory, pg_restore, pgdata
    where: str  # the directory, DSN or data directory
    port: int | None = None

    @property
    def snapshot_kinds(self) -> tuple[str, ...]:
        """The snapshots this target can take."""
        if self.kind == "pg_restore":
            return ("pg_dump",)
        if self.kind == "pgdata":
            return ("pg_base",)
        return ("files", "sqlite", "stdin", "pg_dump")

    def describe(self) -> str:
        return f"{self.kind} {self.where}" + (f" port {self.port}" if self.port else "")


def load_targets(path: str | Path, tenants: Iterable[str]) -> dict[str, Target]:
    """Every ``[[target]]`` by tenant; each must name a tenant of the fleet."""
    path = Path(path)
    raw = read_toml(path, "targets file")
    known = set(tenants)
    for key in raw:
        if key != "target":
            raise ConfigError(f"{path}: {key}: unknown key (known: target)")
    items = raw.get("target")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: target: at least one [[target]] table is required")
    out: dict[str, Target] = {}
    for i, item in enumerate(items):
        out_target = _target(path, i, item, known)
        if out_target.tenant in out:
            raise ConfigError(f"{path}: target.{out_target.tenant}: is defined twice")
        out[out_target.tenant] = out_target
    _refuse_shared(path, list(out.values()))
    return out


def _refuse_shared(path: Path, targets: list[Target]) -> None:
    """Two tenants restored into one directory (or one inside another's) mix their files,
    and one's retry, a delta restore, deletes what the other restored."""
    places = [(t, Path(os.path.normpath(t.where))) for t in targets if t.kind != "pg_restore"]
    for i, (a, pa) in enumerate(places):
        for b, pb in places[i + 1:]:
            if pa == pb or pa in pb.parents or pb in pa.parents:
                how = "the same directory" if pa == pb else "directories one inside the other"
                raise ConfigError(f"{path}: target.{a.tenant} and target.{b.tenant} are "
                                  f"{how} ({pa}, {pb}): give each tenant its own")


def _target(path: Path, i: int, item: Any, known: set[str]) -> Target:
    where = f"target[{i}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{path}: {where}: must be a table")
    name = item.get("tenant")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}: {where}.tenant: is required (a tenant of the fleet file)")
    where = f"target.{name}"
    if name not in known:
        raise ConfigError(f"{path}: {where}.tenant: no tenant {name!r} in the fleet file")
    for key in item:
        if key not in _KEYS:
            raise ConfigError(f"{path}: {where}.{key}: unknown key "
                              f"(known: {', '.join(sorted(_KEYS))})")
    given = [k for k in _KINDS if k in item]
    if len(given) != 1:
        raise ConfigError(f"{path}: {where}: needs exactly one of directory, pg_restore, "
                          f"pgdata (got {', '.join(given) or 'none'})")
    kind = given[0]
    value = item[kind]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: {where}.{kind}: must be a non-empty string")
    if kind != "pg_restore" and not os.path.isabs(value):
        value = str(path.absolute().parent / value)
    port = item.get("port")
    if port is not None:
        if kind != "pgdata":
            raise ConfigError(f"{path}: {where}.port: goes with pgdata only")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"{path}: {where}.port: must be a TCP port, got {port!r}")
    return Target(name, kind, value, port)
