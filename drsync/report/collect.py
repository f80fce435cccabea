"""Collecting the evidence: the catalog's runs and drills, each copy's store, the planner.

The I/O half of a report. A copy that cannot be opened (no repository
configured, no key, the store down) is a ``CopyEvidence`` with its
``read_error``, never an exception: the controls that need it say
NOT_EVALUATED and why.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from drsync.errors import DrsyncError
from drsync.report.evidence import (
    Check,
    CopyEvidence,
    Drill,
    Evidence,
    KeyWrapping,
    Period,
    PlanEvidence,
    Point,
    Run,
    TenantEvidence,
    WalRange,
)
from drsync.report.settings import Copy, ReportSettings

if TYPE_CHECKING:
    from drsync.catalog.db import Catalog, RunRecord
    from drsync.plan.fleet import Fleet
    from drsync.settings import Settings

__all__ = ["collect", "plan_evidence"]


def collect(fleet: Fleet, report: ReportSettings, catalog: Catalog, settings: Settings,
            period: Period, now: dt.datetime) -> Evidence:
    """Every tenant's evidence for ``period`` (up to ``now`` when the period is not over)."""
    from drsync.catalog.db import tenant_history

    until = min(period.end, now)
    drills_by_tenant: dict[str, list[Drill]] = {}
    for row in catalog.drills(limit=None):
        drill = _drill(row)
        if drill.started < until:
            drills_by_tenant.setdefault(str(row["tenant"]), []).append(drill)
    tenants = []
    for ts in report.tenants:
        records, ever = tenant_history(catalog, ts.name, period.start, until,
                                       _urls(c.repo for c in ts.copies))
        runs = tuple(_run(r) for r in records if r.kind != "drill")
        drills = tuple(sorted(drills_by_tenant.get(ts.name, []),
                              key=lambda d: (d.started, d.drill_id)))
        copies = tuple(_read_copy(fleet, c, settings) for c in ts.copies)
        tenants.append(TenantEvidence(ts.name, runs, ever, drills, copies))
    return Evidence(period, now, catalog.location, tuple(tenants), plan_evidence(fleet))


def plan_evidence(fleet: Fleet) -> PlanEvidence:
    """The planner's schedule for tonight's fleet: utilisation and who does not fit."""
    from drsync.plan.schedule import plan_fleet

    plan = plan_fleet(fleet)
    return PlanEvidence(
        fleet.window.start, fleet.window.minutes, plan.makespan_s, plan.fits,
        len(fleet.tenants), tuple((u.tenant.name, u.reason) for u in plan.unfit),
        tuple((lk.name, lk.utilisation) for lk in plan.links),
        tuple((s.tenant.name, s.start_s, s.ready_s, s.end_s) for s in plan.slots))


def _run(r: RunRecord) -> Run:
    return Run(r.id, r.kind, r.status, r.started, r.ended, r.snapshot_id, r.bytes_read,
               r.bytes_added, r.bytes_sent if r.bytes_sent is not None else r.bytes_added,
               r.error, r.repo, r.source)


def _time(text: Any) -> dt.datetime | None:
    if not text:
        return None
    when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _drill(row: dict[str, Any]) -> Drill:
    started = _time(row["started"])
    assert started is not None
    return Drill(str(row["id"]), str(row["status"]), started, _time(row.get("ended")),
                 row.get("snapshot_id"), row.get("snapshot_time"), float(row["rto_s"]),
                 None if row.get("rpo_s") is None else float(row["rpo_s"]), str(row["host"]),
                 tuple(Check(str(c["name"]), bool(c["ok"]), str(c["detail"]))
                       for c in row["checks"]))


def _urls(repos: Any) -> list[str]:
    """Each repository as a run records it (``store.url``: a local one absolute), and as
    written."""
    found = []
    for repo in repos:
        if not repo:
            continue
        found.append(repo)
        local = repo.removeprefix("file://") if repo.startswith("file://") else (
            repo if "://" not in repo else None)
        if local is not None:
            found += [os.path.abspath(local), os.path.realpath(local)]
    return found


def _local_path(url: str) -> str | None:
    if "://" not in url:
        return os.path.realpath(url)
    if url.startswith("file://"):
        return os.path.realpath(url.removeprefix("file://"))
    return None


def _read_copy(fleet: Fleet, copy: Copy, settings: Settings) -> CopyEvidence:
    base = CopyEvidence(copy.name, copy.repo, copy.site, copy.zone, copy.media, None, None,
                        (), (), copy.key_file, False, None, "not read")
    if not copy.repo:
        return replace(base, read_error="no repository configured")
    local = _local_path(copy.repo)
    key_with_data = bool(local and copy.key_file and os.path.realpath(copy.key_file)
                         .startswith(local.rstrip("/") + "/"))
    media = copy.media or ("local directory" if local else "object storage (S3)")
    base = replace(base, media=media, key_with_data=key_with_data)
    try:
        from drsync.repo import Repository
        from drsync.settings import store_for

        secret = _secret(fleet, copy)
        store = store_for(replace(settings, repo=copy.repo))
        repo = Repository.open(store, secret, warn=lambda _message: None)
        unreadable: list[str] = []
        snaps = repo.snapshots(warn=lambda _message: None, unreadable=unreadable)
        points = tuple(sorted((Point(s.id, _snapshot_time(s.time), s.source_kind,
                                     _recorded_source(s.source_kind, s.source_spec))
                               for s in snaps), key=lambda p: (p.time, p.snapshot_id)))
        newest = repo.generations()[-1]
        wrappings = tuple(KeyWrapping(w.key_id, w.kind, w.escrow_key, w.generation >= newest)
                          for w in repo.wrappings())
        until, how = _retention(store, points)
        return replace(base, repository_id=repo.config.id, points=points, wrappings=wrappings,
                       retained_until=until, lock_evidence=how,
                       wal_ranges=_wal_ranges(repo, points), unreadable=tuple(unreadable),
                       fleet_escrow_key=_escrow_id(fleet))
    except DrsyncError as err:
        text = str(err).strip()
        return replace(base, read_error=text.splitlines()[0] if text else type(err).__name__)


def _recorded_source(kind: str, spec: dict[str, Any]) -> str:
    """The source as a run names it, from the absolute path the snapshot recorded: what
    COVERAGE also matches, for runs that named a relative path (before drsync recorded
    them absolute). Only SQLite snapshots record one: a files snapshot keeps the paths as
    given, and the directory they were relative to is nowhere."""
    path = spec.get("path")
    if kind == "sqlite" and isinstance(path, str) and os.path.isabs(path):
        return f"sqlite:{path}"
    return ""


def _wal_ranges(repo: Any, points: tuple[Point, ...]) -> tuple[WalRange, ...]:
    """What ``pitr-range`` finds: per base backup whose WAL is complete, its consistent
    moment to the last commit in the unbroken WAL after it (read from the WAL itself)."""
    if not any(p.source_kind == "pg_base" for p in points):
        return ()
    from drsync.pgrestore import pitr_range

    ranges = []
    for row in pitr_range(repo)["base_backups"]:
        if row.get("complete") and row.get("latest") and row.get("consistent_at"):
            ranges.append(WalRange(str(row["snapshot_id"]), _snapshot_time(row["consistent_at"]),
                                   _snapshot_time(row["latest"]), str(row.get("last_wal") or "")))
    return tuple(sorted(ranges, key=lambda r: (r.start, r.snapshot_id)))


def _escrow_id(fleet: Fleet) -> str | None:
    """The key id of the fleet's [keys] escrow_key (None: none, or it cannot be read:
    opening the copies with it says why)."""
    if not fleet.escrow_key:
        return None
    from drsync.repo.escrow import EscrowKeyPair

    try:
        return EscrowKeyPair.load(fleet.escrow_key).public.key_id
    except DrsyncError:
        return None


def _secret(fleet: Fleet, copy: Copy) -> Any:
    from drsync.errors import ConfigError
    from drsync.repo.keys import KeyFile, Secret

    if copy.key_file:
        return Secret(key_file=KeyFile.load(copy.key_file), source=copy.key_file)
    if fleet.escrow_key:
        from drsync.repo.escrow import EscrowKeyPair

        return Secret(escrow_key=EscrowKeyPair.load(fleet.escrow_key), source=fleet.escrow_key)
    raise ConfigError("no key_file and no [keys] escrow_key to open it")


def _snapshot_time(text: str) -> dt.datetime:
    when = _time(text)
    assert when is not None
    return when


def _retention(store: Any, points: tuple[Point, ...]) -> tuple[dt.datetime | None, str]:
    """The Object Lock retain-until of the newest snapshot object, as the store says."""
    inner = store
    for _ in range(16):  # the wrapper chain (retry, throttle) down to the backend
        if hasattr(inner, "retained_until") and hasattr(inner, "head"):
            break
        inner = getattr(inner, "inner", None)
        if inner is None:
            return None, "the store has no object retention (a directory)"
    if not points:
        return None, "no snapshot object to ask about"
    name = f"snapshots/{points[-1].snapshot_id}"
    head = inner.head(name)
    if head is None:
        return None, f"{name} not found when asked for its retention"
    until = inner.retained_until(head)
    if until is None:
        return None, f"{name} has no Object Lock retention"
    return until, f"{name}: Object Lock {head.get('ObjectLockMode') or 'legal hold'}"
