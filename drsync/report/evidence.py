"""The evidence a report is built from, as plain frozen dataclasses.

Only what was recorded: the catalog's runs and drills (which the stores can
rebuild) and what each copy's store holds now (its snapshots, its key
wrappings, the retention of its newest snapshot object). Nothing here is a
verdict; ``drsync.report.controls`` judges it. Collecting it (``collect``)
is the only I/O of a report besides writing the files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

__all__ = ["Check", "CopyEvidence", "Drill", "Evidence", "KeyWrapping", "Period", "PlanEvidence",
           "Point", "Run", "TenantEvidence"]


@dataclass(frozen=True)
class Period:
    """Whole days, first to last inclusive, in ``timezone`` (an IANA name, "UTC" by
    default; "Asia/Tokyo" for a municipality's own days)."""

    first: dt.date
    last: dt.date
    timezone: str = "UTC"

    def _midnight(self, day: dt.date) -> dt.datetime:
        from zoneinfo import ZoneInfo

        return dt.datetime.combine(day, dt.time(), ZoneInfo(self.timezone)).astimezone(dt.UTC)

    @property
    def start(self) -> dt.datetime:
        return self._midnight(self.first)

    @property
    def end(self) -> dt.datetime:
        """The first instant after the period."""
        return self._midnight(self.last + dt.timedelta(days=1))

    def __str__(self) -> str:
        return f"{self.first.isoformat()}..{self.last.isoformat()}"


@dataclass(frozen=True)
class Run:
    """A run of the catalog: a backup, restore, check or WAL shipping."""

    run_id: str
    kind: str
    status: str  # running, ok, partial, failed, missed, overrun
    started: dt.datetime
    finished: dt.datetime | None
    snapshot_id: str | None
    bytes_read: int
    bytes_added: int
    bytes_sent: int
    error: str | None
    repo: str
    source: str = ""  # what was backed up, as the run describes it


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Drill:
    drill_id: str
    status: str  # ok, failed
    started: dt.datetime
    finished: dt.datetime | None
    snapshot_id: str | None
    snapshot_time: str | None
    rto_s: float
    rpo_s: float | None
    host: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Point:
    """A snapshot the store holds."""

    snapshot_id: str
    time: dt.datetime  # when the backup finished
    source_kind: str
    # the absolute path the snapshot records, as a run names it ("sqlite:/srv/juki.db"):
    # "" when it records none (files record the paths as given; the databases a DSN)
    source: str = ""


@dataclass(frozen=True)
class WalRange:
    """A stretch a base backup and the unbroken WAL after it can restore to any moment of
    (``pitr-range``: from the backup's consistent moment to the last commit archived)."""

    snapshot_id: str
    start: dt.datetime
    end: dt.datetime
    last_wal: str


@dataclass(frozen=True)
class KeyWrapping:
    key_id: str
    kind: str  # passphrase, keyfile, escrow
    escrow_key: str | None
    current: bool = True  # wraps the repository's newest master-key generation


@dataclass(frozen=True)
class CopyEvidence:
    """One copy: its declared place, and what its store showed when read."""

    name: str
    repo: str | None
    site: str | None  # declared in the fleet file
    zone: str | None  # declared
    media: str | None  # declared, else the store's kind
    read_error: str | None  # None: the store was opened and read
    repository_id: str | None
    points: tuple[Point, ...]  # oldest first
    wrappings: tuple[KeyWrapping, ...]
    key_file: str | None  # where the key that opened it is held
    key_with_data: bool  # the key file lies inside the copy's own directory
    retained_until: dt.datetime | None  # Object Lock of the newest snapshot object
    lock_evidence: str  # how retention was (or could not be) seen
    wal_ranges: tuple[WalRange, ...] = ()  # PostgreSQL base backups with archived WAL
    # Snapshot objects there that failed to open (damaged, not authenticated by the key):
    # what is wrong with each. A point among them may be the newest.
    unreadable: tuple[str, ...] = ()
    fleet_escrow_key: str | None = None  # the id of the fleet's [keys] escrow_key, if any

    @property
    def read(self) -> bool:
        return self.read_error is None


@dataclass(frozen=True)
class TenantEvidence:
    name: str
    runs: tuple[Run, ...]  # in the period, plus the newest ok backup before it; oldest first
    runs_ever: int  # runs of any kind ever recorded for the tenant
    drills: tuple[Drill, ...]  # every drill up to the period's end, oldest first
    copies: tuple[CopyEvidence, ...]


@dataclass(frozen=True)
class PlanEvidence:
    """The planner's night for the fleet file as it stands."""

    window_start: str
    window_minutes: float
    makespan_s: float
    fits: int
    tenants: int
    unfit: tuple[tuple[str, str], ...]  # (tenant, reason)
    link_utilisation: tuple[tuple[str, float], ...]
    slots: tuple[tuple[str, float, float, float], ...]  # (tenant, start_s, ready_s, end_s)


@dataclass(frozen=True)
class Evidence:
    period: Period
    generated: dt.datetime
    catalog: str
    tenants: tuple[TenantEvidence, ...]
    plan: PlanEvidence | None

    def tenant(self, name: str) -> TenantEvidence:
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        raise KeyError(name)


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def evidence_to_json(evidence: Evidence) -> dict[str, Any]:
    """Everything collected, as JSON: the ``evidence.json`` file the manifest seals."""
    def run(r: Run) -> dict[str, Any]:
        return {"run_id": r.run_id, "kind": r.kind, "status": r.status,
                "started": iso(r.started), "finished": iso(r.finished),
                "snapshot_id": r.snapshot_id, "bytes_read": r.bytes_read,
                "bytes_added": r.bytes_added, "bytes_sent": r.bytes_sent, "error": r.error,
                "repo": r.repo, "source": r.source}

    def drill(d: Drill) -> dict[str, Any]:
        return {"drill_id": d.drill_id, "status": d.status, "started": iso(d.started),
                "finished": iso(d.finished), "snapshot_id": d.snapshot_id,
                "snapshot_time": d.snapshot_time, "rto_s": d.rto_s, "rpo_s": d.rpo_s,
                "host": d.host, "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail}
                                           for c in d.checks]}

    def copy(c: CopyEvidence) -> dict[str, Any]:
        return {"name": c.name, "repo": c.repo, "site": c.site, "zone": c.zone,
                "media": c.media, "read_error": c.read_error,
                "repository_id": c.repository_id,
                "points": [{"snapshot_id": p.snapshot_id, "time": iso(p.time),
                            "source_kind": p.source_kind, "source": p.source}
                           for p in c.points],
                "wrappings": [{"key_id": w.key_id, "kind": w.kind, "escrow_key": w.escrow_key,
                               "current": w.current} for w in c.wrappings],
                "fleet_escrow_key": c.fleet_escrow_key,
                "key_file": c.key_file, "key_with_data": c.key_with_data,
                "retained_until": iso(c.retained_until), "lock_evidence": c.lock_evidence,
                "wal_ranges": [{"snapshot_id": w.snapshot_id, "start": iso(w.start),
                                "end": iso(w.end), "last_wal": w.last_wal}
                               for w in c.wal_ranges],
                "unreadable_snapshots": list(c.unreadable)}

    plan = evidence.plan
    return {
        "period": str(evidence.period), "timezone": evidence.period.timezone,
        "generated": iso(evidence.generated),
        "catalog": evidence.catalog,
        "tenants": [{"name": t.name, "runs_ever": t.runs_ever,
                     "runs": [run(r) for r in t.runs], "drills": [drill(d) for d in t.drills],
                     "copies": [copy(c) for c in t.copies]} for t in evidence.tenants],
        "plan": None if plan is None else {
            "window_start": plan.window_start, "window_minutes": plan.window_minutes,
            "makespan_s": round(plan.makespan_s, 3), "fits": plan.fits,
            "tenants": plan.tenants, "unfit": [list(u) for u in plan.unfit],
            "link_utilisation": [[n, round(u, 6)] for n, u in plan.link_utilisation],
            "slots": [[n, round(a, 3), round(b, 3), round(c, 3)] for n, a, b, c in plan.slots]},
    }
