"""The canonical report document: the source of truth every rendering is made from.

``build_document`` is pure: evidence, assessments, costs and attestations in,
one JSON-ready dict out (``format`` ``drsync-bcp-report``, ``schema_version``
1; docs/FORMAT.md §14 lists its fields). ``canonical_json`` is its one byte
form: keys sorted, UTF-8 (Japanese as is), two-space indent, a final newline;
the same document always gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from drsync import __version__
from drsync.report.attest import Attestation
from drsync.report.controls import STATUSES, Assessment, last_day, seen_at
from drsync.report.costs import Sharing
from drsync.report.evidence import CopyEvidence, Drill, Evidence, Run, iso
from drsync.report.labels import ATTEST_ITEMS, CONTROL_INFO, GLOSSARY, STATUS_LABELS
from drsync.report.settings import CONTROLS, ReportSettings, TenantSettings

__all__ = ["FORMAT", "SCHEMA_VERSION", "build_document", "canonical_json", "record_sha256"]

FORMAT = "drsync-bcp-report"
SCHEMA_VERSION = 1
JST = dt.timezone(dt.timedelta(hours=9), "JST")


def canonical_json(doc: Any) -> bytes:
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False, indent=2) + "\n").encode()


def record_sha256(record: Any) -> str:
    """The hash a piece of evidence is indexed by: SHA-256 of its compact sorted JSON."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _run_json(r: Run) -> dict[str, Any]:
    return {"run_id": r.run_id, "kind": r.kind, "status": r.status, "started": iso(r.started),
            "finished": iso(r.finished), "snapshot_id": r.snapshot_id,
            "bytes_read": r.bytes_read, "bytes_added": r.bytes_added,
            "bytes_sent": r.bytes_sent, "error": r.error, "source": r.source}


def _drill_json(d: Drill) -> dict[str, Any]:
    return {"drill_id": d.drill_id, "status": d.status, "started": iso(d.started),
            "finished": iso(d.finished), "snapshot_id": d.snapshot_id,
            "snapshot_time": d.snapshot_time, "rto_s": _r(d.rto_s), "rpo_s": _r(d.rpo_s),
            "host": d.host,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in d.checks]}


def _copy_json(c: CopyEvidence, as_of: dt.datetime) -> dict[str, Any]:
    newest = c.points[-1] if c.points else None
    oldest = c.points[0] if c.points else None
    return {"name": c.name, "repo": c.repo, "site": c.site, "zone": c.zone, "media": c.media,
            "read": c.read, "read_error": c.read_error, "repository_id": c.repository_id,
            "points": len(c.points),
            "last_good_point": None if newest is None else {
                "snapshot_id": newest.snapshot_id, "time": iso(newest.time),
                "age_hours": _r((as_of - newest.time).total_seconds() / 3600, 2)},
            "oldest_point": None if oldest is None else {
                "snapshot_id": oldest.snapshot_id, "time": iso(oldest.time)},
            "immutable_until": iso(c.retained_until), "immutability": c.lock_evidence,
            "key_ids": [w.key_id for w in c.wrappings],
            "key_kinds": sorted({w.kind for w in c.wrappings}),
            "escrow_keys": sorted({w.escrow_key for w in c.wrappings if w.escrow_key}),
            "key_held_at": c.key_file, "key_with_data": c.key_with_data,
            "wal_restorable": [{"snapshot_id": w.snapshot_id, "from": iso(w.start),
                                "to": iso(w.end), "last_wal": w.last_wal}
                               for w in c.wal_ranges],
            "unreadable_snapshots": len(c.unreadable)}


def _attested(ts: TenantSettings, attestations: Sequence[Attestation]) -> dict[str, Any]:
    """Per item, the latest statement about this tenant (or the whole fleet); None: never."""
    out: dict[str, Any] = dict.fromkeys(ATTEST_ITEMS)
    for a in sorted(attestations, key=lambda a: (a.date, a.recorded)):
        if a.tenant in (None, ts.name):
            out[a.item] = {"by": a.by, "date": a.date.isoformat(),
                           "recorded": iso(a.recorded), "fleet_wide": a.tenant is None}
    return out


def _tenant_json(ts: TenantSettings, a: Assessment, evidence: Evidence,
                 attestations: Sequence[Attestation]) -> dict[str, Any]:
    f = a.facts
    ev = seen_at(evidence.tenant(ts.name), f.as_of)
    th = ts.thresholds
    last = f.last_drill
    return {
        "name": ts.name, "code": ts.code, "population": ts.population, "tier": ts.tier,
        "datasets": [{"name": d.name, "business": d.business, "tier": d.tier,
                      "source": d.source} for d in ts.datasets],
        "targets": {"rpo_hours": th.rpo_hours, "rto_hours": th.rto_hours,
                    "retention_days": th.retention_days,
                    "drill_max_age_days": ts.drill_max_age_days,
                    "min_offsite_copies": th.min_offsite_copies,
                    "require_immutable": th.require_immutable,
                    "primary_zone": th.primary_zone,
                    "job_success_min": th.job_success_min},
        "compliant": a.compliant,
        "controls": {r.control: r.to_json() for r in a.results},
        "facts": {
            "as_of": iso(f.as_of), "backups": f.backups, "backups_ok": f.backups_ok,
            "job_success_rate": _r(f.success_rate, 4),
            "newest_point": iso(f.newest_point), "newest_point_verified": f.newest_verified,
            "rpo_now_hours": _r(f.rpo_now_hours, 2),
            "worst_gap": None if f.worst_gap is None else {
                "hours": _r(f.worst_gap.hours, 2), "from": iso(f.worst_gap.start),
                "to": iso(f.worst_gap.end), "from_point": f.worst_gap.from_point},
            "oldest_point": iso(f.oldest_point),
            "stored_bytes": f.stored_bytes, "sent_bytes": f.sent_bytes,
            "last_integrity_check": _last_check(ev.runs)},
        "last_drill": None if last is None else {
            **_drill_json(last),
            "within_rto": last.rto_s <= th.rto_hours * 3600,
            "evidence_sha256": record_sha256(_drill_json(last))},
        "copies": [_copy_json(c, f.as_of) for c in ev.copies],
        "points": [{"copy": c.name, "snapshot_id": p.snapshot_id, "time": iso(p.time)}
                   for c in ev.copies for p in c.points],
        "backup_runs": [_run_json(r) for r in ev.runs if r.kind == "backup"],
        "attested": _attested(ts, attestations),
    }


def _last_check(runs: Sequence[Run]) -> dict[str, Any] | None:
    checks = [r for r in runs if r.kind == "check"]
    if not checks:
        return None
    r = checks[-1]
    return {"run_id": r.run_id, "status": r.status, "started": iso(r.started),
            "error": r.error}


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    # the nearest-rank percentile: a value that was measured, not an interpolation
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _summary(assessments: Sequence[Assessment], settings: ReportSettings,
             evidence: Evidence) -> dict[str, Any]:
    n = len(assessments)
    per_control: dict[str, dict[str, Any]] = {}
    for c in CONTROLS:
        counts = {s: sum(a.status(c) == s for a in assessments) for s in STATUSES}
        per_control[c] = {"counts": counts,
                          "pass_rate": _r(counts["PASS"] / n if n else None, 4)}
    ratios, seconds = [], []
    by_name = {ts.name: ts for ts in settings.tenants}
    for a in assessments:
        d = a.facts.last_good_drill
        if d is not None:
            seconds.append(d.rto_s)
            ratios.append(d.rto_s / (by_name[a.tenant].thresholds.rto_hours * 3600))
    causes: Counter[str] = Counter()
    for t in evidence.tenants:
        for r in t.runs:
            if r.status not in ("ok", "running") and r.started >= evidence.period.start:
                causes[f"{r.kind} {r.status}: {(r.error or 'no error recorded')[:100]}"] += 1
        for d in t.drills:
            if d.status != "ok" and d.started >= evidence.period.start:
                for ch in d.checks:
                    if not ch.ok:
                        causes[f"drill check {ch.name}: {ch.detail[:100]}"] += 1
    plan = evidence.plan
    return {
        "tenants": n,
        "compliant": sum(a.compliant for a in assessments),
        "compliant_pct": _r(100 * sum(a.compliant for a in assessments) / n if n else None, 1),
        "controls": per_control,
        "rpo_attainment_pct": _r(100 * per_control["RPO"]["counts"]["PASS"] / n
                                 if n else None, 1),
        "drill_coverage_pct": _r(100 * sum(a.status("DRILL") in ("PASS", "WARN")
                                           for a in assessments) / n if n else None, 1),
        "restore_vs_rto": {
            "drills": len(seconds),
            "median_s": _r(statistics.median(seconds) if seconds else None),
            "p95_s": _r(_percentile(seconds, 95)),
            "median_ratio": _r(statistics.median(ratios) if ratios else None, 4),
            "p95_ratio": _r(_percentile(ratios, 95), 4)},
        "top_failure_causes": [{"cause": k, "count": v} for k, v in
                               sorted(causes.items(), key=lambda kv: (-kv[1], kv[0]))[:5]],
        "window": None if plan is None else {
            "start": plan.window_start, "minutes": plan.window_minutes,
            "used_pct": _r(100 * plan.makespan_s / (plan.window_minutes * 60), 1),
            "fits": plan.fits, "tenants": plan.tenants,
            "link_utilisation_pct": {k: _r(100 * u, 1) for k, u in plan.link_utilisation},
            "unfit": [{"tenant": t, "reason": why} for t, why in plan.unfit],
            "slots": [{"tenant": t, "start_s": _r(a), "ready_s": _r(b), "end_s": _r(c)}
                      for t, a, b, c in plan.slots]},
    }


def _exceptions(settings: ReportSettings, assessments: Sequence[Assessment],
                as_of: dt.datetime, timezone: str) -> list[dict[str, Any]]:
    out = []
    day = last_day(as_of, timezone)
    results = {(a.tenant, r.control): r for a in assessments for r in a.results}
    for ts in settings.tenants:
        for ex in ts.exemptions:
            r = results[(ts.name, ex.control)]
            out.append({"tenant": ts.name, "control": ex.control, "approver": ex.approver,
                        "expires": ex.expires.isoformat(), "reason": ex.reason,
                        "expired": day > ex.expires,
                        "days_left": (ex.expires - day).days,
                        "status": r.status, "evaluated": r.evaluated or r.status})
    return out


def _actions(assessments: Sequence[Assessment]) -> list[dict[str, Any]]:
    """What needs a corrective action: every FAIL and NOT_EVALUATED."""
    return [{"tenant": a.tenant, "control": r.control, "status": r.status,
             "finding": r.summary}
            for a in assessments for r in a.results if r.status in ("FAIL", "NOT_EVALUATED")]


def build_document(evidence: Evidence, settings: ReportSettings,
                   assessments: Sequence[Assessment], sharing: Sharing | None,
                   attestations: Sequence[Attestation], *, report_id: str, config_sha256: str,
                   signer_key_id: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    as_of = min(evidence.period.end, evidence.generated)
    by_name = {a.tenant: a for a in assessments}
    drills = sorted(((t.name, d) for t in evidence.tenants for d in t.drills
                     if d.started >= evidence.period.start),
                    key=lambda td: (td[1].started, td[0]))
    index = []
    for t in evidence.tenants:
        index += [{"ref": f"run:{r.run_id}", "tenant": t.name,
                   "sha256": record_sha256(_run_json(r))} for r in t.runs]
        index += [{"ref": f"drill:{d.drill_id}", "tenant": t.name,
                   "sha256": record_sha256(_drill_json(d))} for d in t.drills]
    in_period = [a for a in attestations if a.date <= evidence.period.last]
    return {
        "format": FORMAT, "schema_version": SCHEMA_VERSION, "report_id": report_id,
        "period": {"first": evidence.period.first.isoformat(),
                   "last": evidence.period.last.isoformat(),
                   "timezone": evidence.period.timezone,
                   "start": iso(evidence.period.start), "end": iso(evidence.period.end)},
        "generated": {"utc": iso(evidence.generated),
                      "jst": evidence.generated.astimezone(JST).isoformat()},
        "as_of": iso(as_of), "drsync_version": __version__,
        "fleet_file": settings.source, "config_sha256": config_sha256,
        "catalog": evidence.catalog, "signer": {"key_id": signer_key_id},
        "previous": previous,
        # The JSON's keys are sorted: these lists keep the order the renderings show.
        "order": {"controls": list(CONTROLS), "statuses": list(STATUSES),
                  "attestations": list(ATTEST_ITEMS)},
        "labels": {
            "controls": {c: {"en": CONTROL_INFO[c][0], "ja": CONTROL_INFO[c][1],
                             "maps": CONTROL_INFO[c][2]} for c in CONTROLS},
            "statuses": {s: {"en": en, "ja": ja} for s, (en, ja) in STATUS_LABELS.items()},
            "attestations": {k: {"en": en, "ja": ja} for k, (en, ja) in ATTEST_ITEMS.items()}},
        "summary": _summary(assessments, settings, evidence),
        "tenants": [_tenant_json(ts, by_name[ts.name], evidence, in_period)
                    for ts in settings.tenants],
        "drills": [{"tenant": name, **_drill_json(d),
                    "evidence_sha256": record_sha256(_drill_json(d))} for name, d in drills],
        "exceptions": _exceptions(settings, assessments, as_of, evidence.period.timezone),
        "actions": _actions(assessments),
        "attestations": [a.to_json() for a in in_period],
        "costs": None if sharing is None else sharing.to_json(),
        "evidence_index": index,
        "glossary": [{"term": t, "ja": ja, "en": en} for t, ja, en in GLOSSARY],
    }
