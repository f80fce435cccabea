"""Opening every tenant of a fleet file: its repository, its key, its latest restorable point.

The I/O half of ``drsync dr plan``: each tenant's ``repo`` is opened with the
global config's store options (``settings.store_for(replace(settings,
repo=url))``), with the tenant's ``key_file`` or else the fleet's ``[keys]
escrow_key``. A tenant that cannot be opened is a ``Probe`` with a reason,
never an exception: one lost key must not hide the rest of the fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drsync.dr.plan import Point, Probe
from drsync.errors import DrsyncError
from drsync.plan.fleet import Fleet, Tenant
from drsync.settings import Settings, store_for

if TYPE_CHECKING:
    from drsync.repo import Repository, Secret, Snapshot

__all__ = ["latest_point", "open_tenant", "probe_fleet", "probe_tenant", "snapshot_point",
           "tenant_secret"]

# What each kind of restore target takes (None: any snapshot).
DIRECTORY_KINDS = ("files", "sqlite", "stdin", "pg_dump")


def tenant_secret(fleet: Fleet, tenant: Tenant) -> Secret:
    """The tenant's key file, else the fleet's escrow key; ConfigError when neither."""
    from drsync.errors import ConfigError
    from drsync.repo.keys import KeyFile, Secret

    if tenant.key_file:
        return Secret(key_file=KeyFile.load(tenant.key_file), source=tenant.key_file)
    if fleet.escrow_key:
        from drsync.repo.escrow import EscrowKeyPair

        return Secret(escrow_key=EscrowKeyPair.load(fleet.escrow_key), source=fleet.escrow_key)
    raise ConfigError(f"{fleet.source}: tenant.{tenant.name}: no key_file and no "
                      "[keys] escrow_key")


def open_tenant(fleet: Fleet, tenant: Tenant, settings: Settings) -> Repository:
    """The tenant's repository, opened; DrsyncError (one line) when it cannot be."""
    from drsync.errors import ConfigError
    from drsync.repo import Repository

    if not tenant.repo:
        raise ConfigError(f"{fleet.source}: tenant.{tenant.name}.repo: no repository "
                          "configured")
    secret = tenant_secret(fleet, tenant)
    store = store_for(replace(settings, repo=tenant.repo))
    return Repository.open(store, secret)


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def snapshot_bytes(repo: Repository, snap: Snapshot) -> int:
    """The sizes of the packs holding the snapshot's blobs (what a restore fetches),
    else the snapshot's own size when the packs cannot be listed."""
    from drsync.repo import SnapshotReader

    index = repo.load_index()
    present = repo.stored_packs()
    packs: set[str] = set()
    with SnapshotReader(repo, index) as reader:
        ids = list(snap.tree)
        for entry in reader.entries(snap):
            ids.extend(entry.chunks)
    for hex_id in ids:
        loc = index.get(bytes.fromhex(hex_id))
        if loc is not None:
            packs.add(loc.pack_id)
    total = sum(present.get(p, 0) for p in packs)
    return total or int(snap.summary.get("bytes_read", 0))


def other_sources(snap: Snapshot, snaps: Iterable[Snapshot],
                  kinds: Iterable[str] | None = None) -> tuple[str, ...]:
    """The newest snapshot of every other source among ``snaps`` (of one of ``kinds``)
    than ``snap``'s: a tenant backing up a database and a directory each night, which
    a restore of its latest point alone would silently leave behind."""
    from drsync.repo.retention import group_key

    wanted = None if kinds is None else set(kinds)
    mine = group_key(snap)
    newest: dict[tuple[str, str], Snapshot] = {}
    for other in snaps:
        key = group_key(other)
        if key == mine or (wanted is not None and other.source_kind not in wanted):
            continue
        if key not in newest or (other.time, other.id) > (newest[key].time, newest[key].id):
            newest[key] = other
    return tuple(f"{_source(s)}: snapshot {s.short_id} of {s.time[:19].replace('T', ' ')}"
                 for s in sorted(newest.values(), key=lambda s: (s.time, s.id), reverse=True))


def _source(snap: Snapshot) -> str:
    spec = snap.source_spec
    where = spec.get("path") or spec.get("name") or spec.get("paths") or spec.get("dsn") or ""
    if isinstance(where, list):
        where = " ".join(str(p) for p in where)
    return f"{snap.source_kind} {where}".strip()


def snapshot_point(repo: Repository, snap: Snapshot, others: tuple[str, ...] = ()) -> Point:
    """The point a snapshot restores: its consistent time (databases) or start time;
    for a base backup with complete WAL after it, the last commit the WAL reaches."""
    spec = snap.source_spec
    at = _parse_time(spec.get("consistent_at")) or _parse_time(snap.start_time) \
        or _parse_time(snap.time)
    assert at is not None, "a snapshot always has a time"
    basis, wal_until = "snapshot", None
    if snap.source_kind == "pg_base":
        from drsync.pgrestore import pitr_range

        pitr = pitr_range(repo)
        for row in pitr["base_backups"]:
            if row["snapshot_id"] == snap.id and row["complete"] and row["latest"]:
                latest = _parse_time(row["latest"])
                if latest is not None:
                    at, basis, wal_until = latest, "base backup + WAL", row["latest"]
    return Point(snap.id, snap.source_kind, at, snapshot_bytes(repo, snap), basis, wal_until,
                 others)


def latest_point(repo: Repository, kinds: Iterable[str] | None = None,
                 ) -> tuple[Snapshot, Point]:
    """The newest snapshot (of one of ``kinds``: ``Repository.latest``) and the point it
    restores, naming the other sources it leaves behind; the snapshots are read once."""
    seen: list[Snapshot] = []
    snap = repo.latest(kinds, seen=seen)
    return snap, snapshot_point(repo, snap, other_sources(snap, seen, kinds))


def probe_tenant(fleet: Fleet, tenant: Tenant, settings: Settings,
                 kinds: Iterable[str] | None = None) -> Probe:
    """Open the tenant and find its latest point; a failure becomes the probe's reason."""
    base = Probe(tenant.name, tenant.priority, tenant.rto_hours, repo=tenant.repo)
    try:
        repo = open_tenant(fleet, tenant, settings)
        return replace(base, point=latest_point(repo, kinds)[1])
    except DrsyncError as err:
        return replace(base, reason=str(err))


def probe_fleet(fleet: Fleet, settings: Settings,
                kinds_for: Callable[[str], Iterable[str] | None] | None = None) -> list[Probe]:
    """Every tenant's probe, in the fleet file's order."""
    return [probe_tenant(fleet, t, settings, kinds_for(t.name) if kinds_for else None)
            for t in fleet.tenants]
