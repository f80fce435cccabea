"""The controls: each tenant's evidence judged against its thresholds. Pure, no I/O.

Statuses, in the order a summary counts them::

    PASS           the evidence shows the requirement met
    WARN           met, with a weakness the auditor should see (named)
    FAIL           the evidence shows the requirement not met
    NOT_EVALUATED  the evidence needed is missing: never a PASS
    EXEMPT         a FAIL/WARN/NOT_EVALUATED under an exemption that names its approver
                   and has not expired (an expired one leaves the status as evaluated,
                   with a note)

The controls (docs: README "BCP audit report"), all measured at ``as_of``,
the end of the period or the report's time when the period is not over:

COVERAGE     a repository is configured and an ok backup ran in the period, of every
             dataset's ``source`` where one is given (named by the run, or by its
             snapshot's absolute path: _names); WARN when the job success rate is below
             ``job_success_min``
RPO          the newest point (in a store that was read) and every gap between good
             points in the period are within ``rpo_hours``
RETENTION    the oldest point a store holds is at least ``retention_days`` old
OFFSITE      ``min_offsite_copies`` copies, read and holding points, in a zone other
             than ``primary_zone``; one under Object Lock when ``require_immutable``
ENCRYPTION   every copy read (every point in it authenticated by the tenant's key: a
             snapshot object that fails to open is a FAIL), an escrow wrapping for the
             fleet's [keys] escrow_key (when set) at the newest key generation, no
             key file inside the copy's own directory, an escrow wrapping present (no
             point in any copy read: NOT_EVALUATED)
DRILL        a successful drill within the tenant's drill age (tier 1:
             ``drill_max_age_days_tier1``), within ``rto_hours``, its data validated
ZERO-ERRORS  no failed check or drill in the period (none at all, or only checks of
             copies that all hold no point: NOT_EVALUATED)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from drsync.report.evidence import CopyEvidence, Drill, Evidence, Period, Run, TenantEvidence
from drsync.report.settings import CONTROLS, Exemption, ReportSettings, TenantSettings

__all__ = ["DATA_CHECKS", "STATUSES", "Assessment", "Facts", "Gap", "Result", "apply_exemption",
           "assess", "assess_tenant", "gaps", "last_day", "seen_at"]

STATUSES = ("PASS", "WARN", "FAIL", "NOT_EVALUATED", "EXEMPT")
# Drill checks that look at the data itself, not only at the bytes coming back.
DATA_CHECKS = ("files", "table counts", "sqlite integrity_check")
HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class Result:
    control: str
    status: str
    summary: str  # one line: why this status
    evidence: tuple[str, ...] = ()  # run:<id>, drill:<id>, snapshot:<copy>/<id>, copy:<name>
    evaluated: str | None = None  # under EXEMPT: the status the evidence gave
    exemption: Exemption | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        ex = self.exemption
        return {"control": self.control, "status": self.status, "summary": self.summary,
                "evidence": list(self.evidence), "evaluated": self.evaluated,
                "exemption": None if ex is None else {
                    "approver": ex.approver, "expires": ex.expires.isoformat(),
                    "reason": ex.reason},
                "note": self.note}


@dataclass(frozen=True)
class Gap:
    start: dt.datetime  # a good point (or the period's start, when none came before it)
    end: dt.datetime  # the next good point (or as_of)
    from_point: bool  # False: the gap opens at the period's start, with no point before

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / HOUR


@dataclass(frozen=True)
class Facts:
    """The measured values a tenant's section shows beside its statuses."""

    as_of: dt.datetime
    backups: int  # finished backup runs in the period
    backups_ok: int
    success_rate: float | None
    newest_point: dt.datetime | None
    newest_verified: bool
    rpo_now_hours: float | None
    worst_gap: Gap | None
    oldest_point: dt.datetime | None
    last_drill: Drill | None
    last_good_drill: Drill | None
    stored_bytes: int  # bytes the period's ok backups added to the store
    sent_bytes: int


@dataclass(frozen=True)
class Assessment:
    tenant: str
    facts: Facts
    results: tuple[Result, ...]

    def status(self, control: str) -> str:
        for r in self.results:
            if r.control == control:
                return r.status
        raise KeyError(control)

    @property
    def compliant(self) -> bool:
        """Every control PASS, WARN, or EXEMPT: nothing failed, nothing unknown."""
        return all(r.status in ("PASS", "WARN", "EXEMPT") for r in self.results)


def assess(evidence: Evidence, settings: ReportSettings) -> tuple[Assessment, ...]:
    as_of = min(evidence.period.end, evidence.generated)
    return tuple(assess_tenant(evidence.tenant(ts.name), ts, evidence.period, as_of)
                 for ts in settings.tenants)


def seen_at(ev: TenantEvidence, as_of: dt.datetime) -> TenantEvidence:
    """The copies as they stood at ``as_of``: the stores are read when the report is made,
    so a report of a past period would count points made after it (an "oldest point"
    days in the future, an encrypted point in a month that had none)."""
    def copy(c: CopyEvidence) -> CopyEvidence:
        ranges = tuple(replace(w, end=min(w.end, as_of)) for w in c.wal_ranges
                       if w.start <= as_of)
        return replace(c, points=tuple(p for p in c.points if p.time <= as_of),
                       wal_ranges=ranges)

    return replace(ev, copies=tuple(copy(c) for c in ev.copies))


def assess_tenant(ev: TenantEvidence, ts: TenantSettings, period: Period,
                  as_of: dt.datetime) -> Assessment:
    ev = seen_at(ev, as_of)
    facts = _facts(ev, period, as_of)
    results = [
        _coverage(ev, ts, facts, period),
        _rpo(ev, ts, facts, period),
        _retention(ev, ts, facts),
        _offsite(ev, ts),
        _encryption(ev),
        _drill(ev, ts, facts),
        _zero_errors(ev, period, as_of),
    ]
    assert tuple(r.control for r in results) == CONTROLS
    exempt = {e.control: e for e in ts.exemptions}
    return Assessment(ev.name, facts, tuple(apply_exemption(r, exempt.get(r.control), as_of,
                                                            period.timezone)
                                            for r in results))


def last_day(as_of: dt.datetime, timezone: str = "UTC") -> dt.date:
    """The day (in ``timezone``) of the last instant evaluated: as_of is the first instant
    after it."""
    from zoneinfo import ZoneInfo

    return (as_of - dt.timedelta(microseconds=1)).astimezone(ZoneInfo(timezone)).date()


def apply_exemption(result: Result, exemption: Exemption | None, as_of: dt.datetime,
                    timezone: str = "UTC") -> Result:
    """EXEMPT while the exemption runs (its expiry day, in the period's time zone,
    included); a PASS needs none."""
    if exemption is None or result.status == "PASS":
        return result
    if last_day(as_of, timezone) > exemption.expires:
        return replace(result, note=f"exemption approved by {exemption.approver} expired on "
                                    f"{exemption.expires.isoformat()}: not applied")
    return replace(result, status="EXEMPT", evaluated=result.status, exemption=exemption)


# -- facts -------------------------------------------------------------------------------

def _in(period: Period, when: dt.datetime) -> bool:
    return period.start <= when < period.end


def _good_backups(ev: TenantEvidence, as_of: dt.datetime) -> list[Run]:
    return sorted((r for r in ev.runs if r.kind == "backup" and r.status == "ok"
                   and r.started < as_of), key=lambda r: (r.started, r.run_id))


def gaps(points: Iterable[dt.datetime], period: Period, as_of: dt.datetime,
         ranges: Iterable[tuple[dt.datetime, dt.datetime]] = ()) -> list[Gap]:
    """The stretches between good points that fall in the period, the last one open until
    ``as_of``. A point before the period opens the first gap; without one, the period's
    start does. ``ranges`` are stretches restorable at every moment (a base backup and its
    unbroken WAL): inside one there is no gap, and its end is the point the next gap
    opens from."""
    spans = sorted([(p, p) for p in points] + [(a, b) for a, b in ranges if a <= b])
    before = [end for start, end in spans if start < period.start]
    if before:
        prev, from_point = max(before), True
    else:
        prev, from_point = period.start, False
    out = []
    for start, end in spans:
        if end < period.start or start >= as_of:
            continue
        if start > prev:
            out.append(Gap(prev, start, from_point))
        if end > prev:
            prev, from_point = min(end, as_of), True
    if prev < as_of:
        out.append(Gap(prev, as_of, from_point))
    return out or [Gap(as_of, as_of, True)]


def _wal_ranges(ev: TenantEvidence, as_of: dt.datetime) -> list[tuple[dt.datetime,
                                                                        dt.datetime]]:
    """The WAL-covered stretches of every copy read, cut at ``as_of``, by end."""
    spans = [(w.start, min(w.end, as_of)) for c in ev.copies if c.read for w in c.wal_ranges
             if w.start < as_of]
    return sorted(spans, key=lambda s: (s[1], s[0]))


def _store_ids(ev: TenantEvidence) -> set[str] | None:
    """Snapshot ids the copies hold; None when no copy was read."""
    read = [c for c in ev.copies if c.read]
    if not read:
        return None
    return {p.snapshot_id for c in read for p in c.points}


def _facts(ev: TenantEvidence, period: Period, as_of: dt.datetime) -> Facts:
    finished = [r for r in ev.runs if r.kind == "backup" and _in(period, r.started)
                and r.status != "running"]
    ok = [r for r in finished if r.status == "ok"]
    good = _good_backups(ev, as_of)
    held = _store_ids(ev)
    verified = [r for r in good if held is not None and r.snapshot_id in held]
    newest = verified[-1] if verified else (good[-1] if good and held is None else None)
    wal = _wal_ranges(ev, as_of)
    newest_at = newest.started if newest else None
    if wal and (newest_at is None or wal[-1][1] > newest_at):
        newest_at = max(end for _start, end in wal)  # read from the archived WAL: verified
    worst = max(gaps((r.started for r in good), period, as_of, wal), key=lambda g: g.hours) \
        if good or wal else None
    oldest = min((c.points[0].time for c in ev.copies if c.read and c.points), default=None)
    drills = [d for d in ev.drills if d.started < as_of]
    return Facts(
        as_of=as_of, backups=len(finished), backups_ok=len(ok),
        success_rate=len(ok) / len(finished) if finished else None,
        newest_point=newest_at,
        newest_verified=bool(verified) or bool(wal and newest_at == wal[-1][1]),
        rpo_now_hours=(as_of - newest_at).total_seconds() / HOUR if newest_at else None,
        worst_gap=worst, oldest_point=oldest,
        last_drill=drills[-1] if drills else None,
        last_good_drill=next((d for d in reversed(drills) if d.status == "ok"), None),
        stored_bytes=sum(r.bytes_added for r in ok),
        sent_bytes=sum(r.bytes_sent for r in finished))


# -- the controls ------------------------------------------------------------------------

def _coverage(ev: TenantEvidence, ts: TenantSettings, facts: Facts, period: Period) -> Result:
    c = "COVERAGE"
    if not any(cp.repo for cp in ts.copies):
        return Result(c, "FAIL", "no repository configured (tenant.repo): no backup policy")
    if ev.runs_ever == 0:
        return Result(c, "NOT_EVALUATED", "no run of this tenant was ever recorded in the "
                                          "catalog")
    ok = [r for r in ev.runs if r.kind == "backup" and r.status == "ok"
          and _in(period, r.started)]
    if not ok:
        return Result(c, "FAIL", f"no successful backup in the period ({facts.backups} "
                                 "backup run(s))")
    ids = tuple(f"run:{r.run_id}" for r in ok[-3:])
    # A dataset mapped to a source is covered only by a successful backup of that source.
    recorded = _recorded_sources(ev)
    names = [name for r in ok for name in _run_sources(r, recorded)]
    missing = [d for d in ts.datasets if d.source and not any(_names(name, d.source)
                                                              for name in names)]
    if missing:
        return Result(c, "FAIL", "; ".join(f"dataset {d.name}: no successful backup of "
                                           f"{d.source} in the period" for d in missing), ids)
    rate = facts.success_rate or 0.0
    text = f"{facts.backups_ok} of {facts.backups} backup runs ok ({rate:.0%})"
    unmapped = [d.name for d in ts.datasets if not d.source]
    if unmapped:
        text += f"; not mapped to a source: {', '.join(unmapped)}"
    if rate < ts.thresholds.job_success_min:
        return Result(c, "WARN", f"{text}, below {ts.thresholds.job_success_min:.0%}", ids)
    return Result(c, "PASS", text, ids)


def _recorded_sources(ev: TenantEvidence) -> dict[str, str]:
    """Per snapshot id, the absolute source its snapshot records, from every copy read."""
    return {p.snapshot_id: p.source for cp in ev.copies if cp.read for p in cp.points
            if p.source}


def _run_sources(run: Run, recorded: dict[str, str]) -> list[str]:
    """What a run backed up: its own source and, for a run that named a relative path
    (drsync before it recorded them absolute), the absolute path its snapshot records,
    when that path ends with the run's (the same file: the run's directory joined to it)."""
    names = [run.source]
    kind, sep, path = run.source.partition(":")
    found = recorded.get(run.snapshot_id or "", "")
    if sep and path and not path.startswith("/") and found.startswith(f"{kind}:/"):
        rel = PurePosixPath(path).parts
        if PurePosixPath(found[len(kind) + 1:]).parts[-len(rel):] == rel:
            names.append(found)
    return names


def _names(source: str, wanted: str) -> bool:
    """Whether a run's ``source`` names the dataset's ``wanted``: found in it whole, from
    the start, after ``/``, ``:`` or a space (or ``wanted`` starts with ``/``), up to the
    end or a space (a files run names its paths with spaces between). "juki.db" and
    "/srv/juki.db" name "sqlite:/srv/juki.db"; "sqlite:/srv/juki.db" does not name
    "sqlite:/srv/juki.db.old", nor "/srv" a backup of "/srv/data"."""
    start = source.find(wanted)
    while start >= 0:
        end = start + len(wanted)
        if (start == 0 or wanted.startswith("/") or source[start - 1] in "/: ") \
                and (end == len(source) or source[end] == " "):
            return True
        start = source.find(wanted, start + 1)
    return False


def _rpo(ev: TenantEvidence, ts: TenantSettings, facts: Facts, period: Period) -> Result:
    c = "RPO"
    target = ts.thresholds.rpo_hours
    good = _good_backups(ev, facts.as_of)
    wal = [(cp, w) for cp in ev.copies if cp.read for w in cp.wal_ranges]
    if not good and not wal:
        if ev.runs_ever == 0:
            return Result(c, "NOT_EVALUATED", "no run recorded: no recovery point known")
        return Result(c, "FAIL", "no good recovery point on record")
    if facts.newest_point is None:
        return Result(c, "FAIL", "no recovery point of the runs is held by any store read")
    newest = next((r for r in reversed(good) if r.started == facts.newest_point), None)
    if newest is not None:
        ids: tuple[str, ...] = (f"run:{newest.run_id}",)
    else:  # the newest point is the last commit in archived WAL
        cp, w = max(wal, key=lambda x: x[1].end)
        ids = (f"wal:{cp.name}/{w.last_wal}",)
    assert facts.rpo_now_hours is not None and facts.worst_gap is not None
    worst = facts.worst_gap
    if facts.rpo_now_hours > target:
        return Result(c, "FAIL", f"newest point {facts.rpo_now_hours:.1f} h old at the "
                                 f"period's end (target {target:g} h)", ids)
    if worst.hours > target:
        where = "the period's start" if not worst.from_point else \
            f"{worst.start:%Y-%m-%d %H:%M}"
        return Result(c, "FAIL", f"gap of {worst.hours:.1f} h from {where} to "
                                 f"{worst.end:%Y-%m-%d %H:%M} UTC (target {target:g} h)", ids)
    text = (f"newest point {facts.rpo_now_hours:.1f} h old, worst gap {worst.hours:.1f} h "
            f"(target {target:g} h)")
    if not facts.newest_verified:
        return Result(c, "WARN", f"{text}; the point was not verified in a store (none "
                                 "could be read)", ids)
    return Result(c, "PASS", text, ids)


def _retention(ev: TenantEvidence, ts: TenantSettings, facts: Facts) -> Result:
    c = "RETENTION"
    target = ts.thresholds.retention_days
    read = [cp for cp in ev.copies if cp.read]
    if not read:
        return Result(c, "NOT_EVALUATED", "no copy could be read: "
                      + "; ".join(f"{cp.name}: {cp.read_error}" for cp in ev.copies))
    if facts.oldest_point is None:
        return Result(c, "FAIL", "the stores hold no recovery point")
    holder = next(cp for cp in read if cp.points and cp.points[0].time == facts.oldest_point)
    age = (facts.as_of - facts.oldest_point).total_seconds() / DAY
    ids = (f"snapshot:{holder.name}/{holder.points[0].snapshot_id}",)
    text = f"oldest point {age:.1f} days old in copy {holder.name} (target {target:g} days)"
    return Result(c, "PASS" if age >= target else "FAIL", text, ids)


def _offsite(ev: TenantEvidence, ts: TenantSettings) -> Result:
    c = "OFFSITE"
    th = ts.thresholds
    if th.primary_zone is None:
        return Result(c, "NOT_EVALUATED", "the primary site's hazard zone is not set "
                                          "([report] primary_zone)")
    offsite: list[CopyEvidence] = []
    unknown: list[str] = []
    for cp in ev.copies:
        if not cp.read:
            unknown.append(f"{cp.name} not read ({cp.read_error})")
        elif not cp.points:
            unknown.append(f"{cp.name} holds no point")
        elif cp.zone is None:
            unknown.append(f"{cp.name} has no hazard zone declared")
        elif cp.zone != th.primary_zone:
            offsite.append(cp)
    ids = tuple(f"copy:{cp.name}" for cp in offsite)
    names = ", ".join(f"{cp.name} ({cp.zone})" for cp in offsite) or "none"
    if len(offsite) < th.min_offsite_copies:
        status = "NOT_EVALUATED" if unknown else "FAIL"
        return Result(c, status, f"{len(offsite)} off-site cop(ies) outside zone "
                      f"{th.primary_zone} (need {th.min_offsite_copies}): {names}"
                      + (f"; {'; '.join(unknown)}" if unknown else ""), ids)
    locked = [cp for cp in offsite if cp.retained_until is not None]
    if locked:
        cp = locked[0]
        assert cp.retained_until is not None
        return Result(c, "PASS", f"{len(offsite)} off-site: {names}; {cp.name} under Object "
                                 f"Lock until {cp.retained_until:%Y-%m-%d}", ids)
    why = "; ".join(f"{cp.name}: {cp.lock_evidence}" for cp in offsite)
    return Result(c, "FAIL" if th.require_immutable else "WARN",
                  f"{len(offsite)} off-site: {names}; none immutable ({why})", ids)


def _encryption(ev: TenantEvidence) -> Result:
    c = "ENCRYPTION"
    read = [cp for cp in ev.copies if cp.read]
    if not read:
        return Result(c, "NOT_EVALUATED", "no copy could be read to see its encryption")
    ids = tuple(f"copy:{cp.name}" for cp in read)
    problems = []
    for cp in read:
        if cp.unreadable:
            more = f" (and {len(cp.unreadable) - 1} more)" if len(cp.unreadable) > 1 else ""
            problems.append(f"{cp.name}: {len(cp.unreadable)} snapshot object(s) failed to "
                            f"open with the tenant's key, a newer point among them may be "
                            f"lost: {cp.unreadable[0]}{more}")
        if cp.key_with_data:
            problems.append(f"{cp.name}: the key file {cp.key_file} is stored inside the copy")
        escrows = [w for w in cp.wrappings if w.kind == "escrow"]
        ours = [w for w in escrows if cp.fleet_escrow_key in (None, w.escrow_key)]
        if not escrows:
            problems.append(f"{cp.name}: no escrow wrapping (a key lost with the town hall "
                            "loses the data)")
        elif not ours:
            problems.append(f"{cp.name}: its escrow wrapping is for escrow key "
                            f"{escrows[0].escrow_key}, not the fleet's [keys] escrow_key "
                            f"{cp.fleet_escrow_key}: the operator cannot recover it")
        elif not any(w.current for w in ours):
            problems.append(f"{cp.name}: the escrow wrapping predates the last key rotation "
                            "(one cut short): a recovery with the escrow key cannot read what "
                            "was sealed since (run `drsync key rotate` again: it re-wraps "
                            "every escrow key)")
    if problems:
        return Result(c, "FAIL", "; ".join(problems), ids)
    points = sum(len(cp.points) for cp in read)
    if not points:  # nothing sealed to see: an empty copy proves no encryption
        return Result(c, "NOT_EVALUATED", "no recovery point to see encrypted: "
                      + ", ".join(f"{cp.name} holds none" for cp in read)
                      + "".join(f", {cp.name} not read ({cp.read_error})"
                                for cp in ev.copies if not cp.read), ids)
    unread = [cp for cp in ev.copies if not cp.read]
    text = (f"{points} point(s) in {len(read)} cop(ies), each sealed with AES-256-GCM and "
            "authenticated on reading; key held apart; escrow present")
    if unread:
        return Result(c, "WARN", text + "; not read: " + ", ".join(
            f"{cp.name} ({cp.read_error})" for cp in unread), ids)
    return Result(c, "PASS", text, ids)


def _validated(drill: Drill) -> bool:
    return any(ch.name in DATA_CHECKS and ch.ok for ch in drill.checks)


def _drill(ev: TenantEvidence, ts: TenantSettings, facts: Facts) -> Result:
    c = "DRILL"
    limit = ts.drill_max_age_days
    rto = ts.thresholds.rto_hours
    if facts.last_drill is None:
        if ev.runs_ever == 0:  # not even a backup: is the tenant reporting to this catalog?
            return Result(c, "NOT_EVALUATED", "nothing was ever recorded for the tenant")
        return Result(c, "FAIL", "never drilled")
    recent = [d for d in ev.drills if d.started < facts.as_of
              and (facts.as_of - d.started).total_seconds() <= limit * DAY]
    good = [d for d in recent if d.status == "ok"]
    last = facts.last_drill
    if not good:
        if last.status != "ok":
            failed = next((ch for ch in last.checks if not ch.ok), None)
            why = f"{failed.name}: {failed.detail}" if failed else "no check passed"
            return Result(c, "FAIL", f"last drill {last.started:%Y-%m-%d} failed ({why}); no "
                                     f"successful drill within {limit:g} days",
                          (f"drill:{last.drill_id}",))
        age = (facts.as_of - last.started).total_seconds() / DAY
        return Result(c, "FAIL", f"last successful drill {age:.0f} days old (limit "
                                 f"{limit:g} days)", (f"drill:{last.drill_id}",))
    best = good[-1]
    ids = (f"drill:{best.drill_id}",)
    text = (f"drill {best.started:%Y-%m-%d} ok, restore {best.rto_s:.2f} s "
            f"(RTO {rto:g} h)")
    if best.rto_s > rto * HOUR:
        return Result(c, "FAIL", f"{text}: longer than the RTO", ids)
    if not _validated(best):
        return Result(c, "WARN", f"{text}; data not validated (no "
                                 f"{'/'.join(DATA_CHECKS)} check)", ids)
    if last.status != "ok":
        return Result(c, "WARN", f"{text}; the latest drill {last.started:%Y-%m-%d} failed",
                      (*ids, f"drill:{last.drill_id}"))
    return Result(c, "PASS", text, ids)


def _zero_errors(ev: TenantEvidence, period: Period, as_of: dt.datetime) -> Result:
    c = "ZERO-ERRORS"
    drills = [d for d in ev.drills if _in(period, d.started) and d.started < as_of]
    checks = [r for r in ev.runs if r.kind == "check" and _in(period, r.started)
              and r.status != "running"]
    if not drills and not checks:
        return Result(c, "NOT_EVALUATED", "no drill or check ran in the period")
    bad = [f"drill:{d.drill_id}" for d in drills if d.status != "ok"]
    bad += [f"run:{r.run_id}" for r in checks if r.status != "ok"]
    total = len(drills) + len(checks)
    if bad:
        return Result(c, "FAIL", f"{len(bad)} of {total} verification(s) in the period "
                                 "failed", tuple(bad))
    ids = tuple(f"drill:{d.drill_id}" for d in drills) + tuple(f"run:{r.run_id}"
                                                               for r in checks)
    if not drills and ev.copies and all(cp.read and not cp.points for cp in ev.copies):
        # Checks of repositories without a snapshot verified no recovery point.
        return Result(c, "NOT_EVALUATED", f"{len(checks)} check(s) in the period, none "
                      "failed, but no recovery point to verify: "
                      + ", ".join(f"{cp.name} holds none" for cp in ev.copies), ids)
    return Result(c, "PASS", f"{total} verification(s) in the period, none failed", ids)
