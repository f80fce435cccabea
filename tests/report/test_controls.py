"""Each control on hand-made evidence, without I/O: the edges of every rule, and a golden
table of a small fleet where a table says more than assertions."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import pytest

from drsync.report.controls import Result, apply_exemption, assess_tenant, gaps
from drsync.report.evidence import (
    Check,
    CopyEvidence,
    Drill,
    KeyWrapping,
    Period,
    Point,
    Run,
    TenantEvidence,
    WalRange,
)
from drsync.report.settings import Copy, Dataset, Exemption, TenantSettings, Thresholds

PERIOD = Period(dt.date(2026, 11, 1), dt.date(2026, 11, 30))
AS_OF = PERIOD.end  # 2026-12-01T00:00Z: the period is over
GOLDEN = Path(__file__).parent / "golden" / "controls_table.json"


def at(day: int, hour: int = 23) -> dt.datetime:
    """Day ``day`` of November 2026 (0 and below: the days before it), at ``hour``."""
    return PERIOD.start + dt.timedelta(days=day - 1, hours=hour)


def backup(n: int, when: dt.datetime, status: str = "ok", error: str | None = None) -> Run:
    return Run(f"run{n:04d}", "backup", status, when, when + dt.timedelta(minutes=10),
               f"snap{n:04d}" if status == "ok" else None, 10, 5, 4, error, "/r")


def nightly(days: range, skip: tuple[int, ...] = ()) -> tuple[Run, ...]:
    return tuple(backup(d + 100, at(d)) for d in days if d not in skip)


def drill(n: int, when: dt.datetime, ok: bool = True, rto_s: float = 600.0,
          checks: tuple[Check, ...] | None = None) -> Drill:
    checks = checks if checks is not None else (
        Check("snapshot", True, "s"), Check("restore", True, "r"),
        Check("table counts", ok, "3 tables" if ok else "tax: rows 2, recorded 3"))
    return Drill(f"drill{n}", "ok" if ok else "failed", when, when + dt.timedelta(seconds=rto_s),
                 f"snap{n}", when.isoformat(), rto_s, 3600.0, "dc2", checks)


def copy(name: str = "repo", zone: str | None = "saga", points: tuple[Point, ...] | None = None,
         *, read_error: str | None = None, escrow: bool = True, locked: bool = False,
         key_with_data: bool = False, ids: tuple[str, ...] = ()) -> CopyEvidence:
    if points is None:
        points = (Point("old", at(-40), "files"),
                  *(Point(i, at(30), "files") for i in ids))
    wrappings = (KeyWrapping("k1", "keyfile", None),) + (
        (KeyWrapping("k2", "escrow", "e1"),) if escrow else ())
    return CopyEvidence(name, f"/srv/{name}", "Saga DC", zone, "disk", read_error, "id",
                        points if read_error is None else (),
                        wrappings if read_error is None else (), "/etc/k", key_with_data,
                        at(30) + dt.timedelta(days=30) if locked else None,
                        "locked" if locked else "a directory")


def settings(**thresholds: object) -> TenantSettings:
    th = replace(Thresholds(rpo_hours=26, rto_hours=4, primary_zone="miyazaki",
                            retention_days=30, require_immutable=False), **thresholds)
    return TenantSettings("T", "450000", 1000, (Dataset("住民記録", "住民基本台帳事務", 2),),
                          th, (Copy("repo", "/srv/repo", "/etc/k", "Saga DC", "saga", None),),
                          ())


def evidence(runs: tuple[Run, ...] | None = None, drills: tuple[Drill, ...] | None = None,
             copies: tuple[CopyEvidence, ...] | None = None,
             runs_ever: int | None = None) -> TenantEvidence:
    runs = nightly(range(1, 31)) if runs is None else runs
    drills = (drill(1, at(15)),) if drills is None else drills
    copies = (copy(ids=("snap0130",)),) if copies is None else copies
    return TenantEvidence("T", runs, len(runs) if runs_ever is None else runs_ever, drills,
                          copies)


def status(ev: TenantEvidence, control: str, ts: TenantSettings | None = None) -> Result:
    a = assess_tenant(ev, ts or settings(), PERIOD, AS_OF)
    return next(r for r in a.results if r.control == control)


def test_a_well_kept_tenant_passes_everything_but_immutability() -> None:
    a = assess_tenant(evidence(), settings(), PERIOD, AS_OF)
    assert {r.control: r.status for r in a.results} == {
        "COVERAGE": "PASS", "RPO": "PASS", "RETENTION": "PASS", "OFFSITE": "WARN",
        "ENCRYPTION": "PASS", "DRILL": "PASS", "ZERO-ERRORS": "PASS"}
    assert a.compliant
    assert a.facts.worst_gap is not None and a.facts.worst_gap.hours == 24
    assert a.facts.rpo_now_hours == 1.0  # 23:00 on the 30th to the end of the period


# -- COVERAGE ----------------------------------------------------------------------------

def test_coverage() -> None:
    no_repo = replace(settings(), copies=(Copy("repo", None, None, None, None, None),))
    assert status(evidence(), "COVERAGE", no_repo).status == "FAIL"
    assert status(evidence(runs=(), runs_ever=0), "COVERAGE").status == "NOT_EVALUATED"
    # Runs exist (earlier), none in the period: a known absence.
    assert status(evidence(runs=(), runs_ever=12), "COVERAGE").status == "FAIL"
    failing = (*nightly(range(1, 31), skip=(3, 4)), backup(1, at(3), "failed", "disk full"),
               backup(2, at(4), "missed"))
    r = status(evidence(runs=failing), "COVERAGE")
    assert r.status == "WARN" and "28 of 30" in r.summary
    assert status(evidence(runs=failing), "COVERAGE",
                  settings(job_success_min=0.9)).status == "PASS"
    # A dataset mapped to a source needs a backup of that source.
    mapped = replace(settings(), datasets=(Dataset("住民記録", "住民基本台帳事務", 1, "juki.db"),
                                           Dataset("税務", "課税事務", 2)))
    r = status(evidence(), "COVERAGE", mapped)
    assert r.status == "FAIL" and "dataset 住民記録: no successful backup of juki.db" in r.summary
    runs = (*nightly(range(1, 30)), replace(backup(9, at(30)), source="sqlite:/srv/juki.db"))
    r = status(evidence(runs=runs), "COVERAGE", mapped)
    assert r.status == "PASS" and "not mapped to a source: 税務" in r.summary
    # Named whole: a longer path, or a directory above the one backed up, is another source.
    juki = replace(settings(), datasets=(
        Dataset("住民記録", "住民基本台帳事務", 1, "sqlite:/srv/juki.db"),))
    old = (*nightly(range(1, 30)), replace(backup(9, at(30)), source="sqlite:/srv/juki.db.old"))
    assert status(evidence(runs=old), "COVERAGE", juki).status == "FAIL"
    srv = replace(settings(), datasets=(Dataset("住民記録", "住民基本台帳事務", 1, "/srv"),))
    data = (*nightly(range(1, 30)), replace(backup(9, at(30)), source="/srv/data /etc"))
    assert status(evidence(runs=data), "COVERAGE", srv).status == "FAIL"
    both = (*nightly(range(1, 30)), replace(backup(9, at(30)), source="/etc /srv"))
    assert status(evidence(runs=both), "COVERAGE", srv).status == "PASS"
    # A run still running is not counted either way.
    running = (*nightly(range(1, 31)), backup(3, at(30, 23), "running"))
    assert "30 of 30" in status(evidence(runs=running), "COVERAGE").summary


def test_coverage_of_a_run_named_by_a_relative_path() -> None:
    """An older run named the path it was given ("sqlite:src/saiki.db"); its snapshot
    records the absolute one, which covers the dataset only when it ends with the run's."""
    ts = replace(settings(), datasets=(
        Dataset("住民記録", "住民基本台帳事務", 1, "sqlite:/tmp/walkC/src/saiki.db"),))
    runs = (*nightly(range(1, 30)), replace(backup(9, at(30)), source="sqlite:src/saiki.db"))

    def held(recorded: str) -> tuple[CopyEvidence, ...]:
        return (copy(points=(Point("old", at(-40), "files"),
                             Point("snap0009", at(30), "sqlite", recorded))),)

    r = status(evidence(runs=runs, copies=held("sqlite:/tmp/walkC/src/saiki.db")), "COVERAGE",
               ts)
    assert r.status == "PASS", r.summary
    # Without the snapshot's path, or with one of another file, the run names another source.
    assert status(evidence(runs=runs, copies=held("")), "COVERAGE", ts).status == "FAIL"
    for other in ("sqlite:/tmp/walkC/src/other.db", "sqlite:/tmp/walkC/lib/saiki.db"):
        assert status(evidence(runs=runs, copies=held(other)), "COVERAGE", ts).status \
            == "FAIL"
    elsewhere = replace(ts, datasets=(
        Dataset("住民記録", "住民基本台帳事務", 1, "sqlite:/tmp/walkD/src/saiki.db"),))
    assert status(evidence(runs=runs, copies=held("sqlite:/tmp/walkC/src/saiki.db")),
                  "COVERAGE", elsewhere).status == "FAIL"


# -- RPO ---------------------------------------------------------------------------------

def test_rpo_gap_inside_the_period() -> None:
    r = status(evidence(runs=nightly(range(1, 31), skip=(10, 11))), "RPO")
    assert r.status == "FAIL" and "gap of 72.0 h from 2026-11-09 23:00" in r.summary


def test_rpo_exactly_at_the_target_passes() -> None:
    runs = (backup(1, at(0, 0)), *(backup(n, at(n, 0)) for n in range(2, 31, 2)))
    # gaps of 48 h, the last one 24 h (to the period's end)
    ev = evidence(runs=runs, copies=(copy(ids=("run0030",)),))
    r = status(ev, "RPO", settings(rpo_hours=48))
    assert r.status == "FAIL" and "held by any store" in r.summary
    ev = evidence(runs=runs, copies=(copy(ids=("snap0030",)),))
    assert status(ev, "RPO", settings(rpo_hours=48)).status == "PASS"
    assert status(ev, "RPO", settings(rpo_hours=47.9)).status == "FAIL"


def test_rpo_first_gap_starts_at_the_newest_point_before_the_period() -> None:
    runs = (backup(1, at(-3)), *nightly(range(2, 31)))
    r = status(evidence(runs=runs), "RPO")
    assert r.status == "FAIL" and "from 2026-10-28 23:00" in r.summary
    # No point before the period: the period's start opens the first gap.
    r = status(evidence(runs=nightly(range(2, 31))), "RPO")
    assert r.status == "FAIL" and "from the period's start" in r.summary


def test_rpo_newest_point_must_be_in_a_store_that_was_read() -> None:
    assert status(evidence(copies=(copy(ids=()),)), "RPO").status == "FAIL"
    unread = (copy(read_error="store unreachable"),)
    r = status(evidence(copies=unread), "RPO")
    assert r.status == "WARN" and "not verified" in r.summary
    # The newest run's snapshot is gone, the one before is held: RPO counts from that one.
    ev = evidence(copies=(copy(ids=("snap0129",)),))
    assert status(ev, "RPO").status == "PASS"
    assert assess_tenant(ev, settings(), PERIOD, AS_OF).facts.rpo_now_hours == 25.0
    assert status(ev, "RPO", settings(rpo_hours=24.5)).status == "FAIL"


def test_rpo_without_evidence() -> None:
    assert status(evidence(runs=(), runs_ever=0), "RPO").status == "NOT_EVALUATED"
    failed_only = (backup(1, at(5), "failed", "boom"),)
    assert status(evidence(runs=failed_only), "RPO").status == "FAIL"


def test_gaps_end_at_as_of_and_ignore_later_points() -> None:
    points = [at(-1), at(10), at(20)]
    found = gaps(points, PERIOD, at(15, 0))
    assert [(g.start, g.end) for g in found] == [(at(-1), at(10)), (at(10), at(15, 0))]


def test_gaps_inside_wal_ranges_are_closed() -> None:
    # Restorable at every moment from the 5th to the 12th (a base and its WAL), and a
    # nightly point on the 20th: gaps only before the 5th, from the 12th to the 20th, and
    # from the 20th to as_of.
    found = gaps([at(20)], PERIOD, at(25, 0), [(at(5), at(12))])
    assert [(g.start, g.end, g.from_point) for g in found] == [
        (PERIOD.start, at(5), False), (at(12), at(20), True), (at(20), at(25, 0), True)]
    # A range straddling the period's start opens the first gap at its end.
    found = gaps([], PERIOD, at(3, 0), [(at(-2), at(1, 12))])
    assert [(g.start, g.end) for g in found] == [(at(1, 12), at(3, 0))]
    # A range past as_of is cut there: no gap at all.
    assert [g.hours for g in gaps([], PERIOD, at(3, 0), [(at(-2), at(9))])] == [0.0]


def _pitr_copy(ranges: tuple[WalRange, ...]) -> CopyEvidence:
    return replace(copy(points=(Point("base1", at(-3), "pg_base"),)), wal_ranges=ranges)


def test_rpo_of_a_pitr_tenant_counts_its_archived_wal() -> None:
    """Weekly base backups and WAL archived all the time: the last commit in the WAL is the
    newest point and the stretches the WAL covers are no gaps, where the backup runs alone
    would show a week-long gap and fail."""
    weekly = tuple(backup(n, at(d)) for n, d in ((1, -3), (2, 4), (3, 11), (4, 18), (5, 25)))
    ranges = (WalRange("base1", at(-3), at(30, 22), "000000010000000000000042"),)
    ev = evidence(runs=weekly, copies=(_pitr_copy(ranges),))
    r = status(ev, "RPO")
    assert r.status == "PASS", r
    assert r.evidence == ("wal:repo/000000010000000000000042",)
    a = assess_tenant(ev, settings(), PERIOD, AS_OF)
    assert a.facts.newest_point == at(30, 22) and a.facts.rpo_now_hours == 2.0
    # The WAL chain broke on the 8th (nothing after the last commit then): the gap to the
    # next base backup's range is a week and fails the 26 h target.
    broken = (WalRange("base1", at(-3), at(8, 6), "000000010000000000000010"),
              WalRange("base3", at(11), at(30, 22), "000000010000000000000042"))
    r = status(evidence(runs=weekly, copies=(_pitr_copy(broken),)), "RPO")
    assert r.status == "FAIL" and "gap of 89.0 h from 2026-11-08 06:00" in r.summary, r
    # Without WAL evidence the same runs fail on the weekly gaps.
    assert status(evidence(runs=weekly, copies=(_pitr_copy(()),)), "RPO").status == "FAIL"


# -- RETENTION ---------------------------------------------------------------------------

def test_retention() -> None:
    assert status(evidence(), "RETENTION").status == "PASS"
    young = (copy(points=(Point("snap0130", at(20), "files"),)),)
    r = status(evidence(copies=young), "RETENTION")
    assert r.status == "FAIL" and "oldest point 10.0 days old" in r.summary
    assert status(evidence(copies=(copy(points=()),)), "RETENTION").status == "FAIL"
    unread = (copy(read_error="wrong key"),)
    r = status(evidence(copies=unread), "RETENTION")
    assert r.status == "NOT_EVALUATED" and "wrong key" in r.summary


# -- OFFSITE -----------------------------------------------------------------------------

def test_offsite() -> None:
    assert status(evidence(), "OFFSITE", settings(primary_zone=None)).status == "NOT_EVALUATED"
    same_zone = (copy(zone="miyazaki", ids=("snap0130",)),)
    assert status(evidence(copies=same_zone), "OFFSITE").status == "FAIL"
    undeclared = (copy(zone=None, ids=("snap0130",)),)
    r = status(evidence(copies=undeclared), "OFFSITE")
    assert r.status == "NOT_EVALUATED" and "no hazard zone declared" in r.summary
    assert status(evidence(), "OFFSITE", settings(require_immutable=True)).status == "FAIL"
    locked = (copy(ids=("snap0130",)), copy("tokyo", "kanto", locked=True))
    r = status(evidence(copies=locked), "OFFSITE", settings(require_immutable=True,
                                                            min_offsite_copies=2))
    assert r.status == "PASS" and "tokyo under Object Lock until 2026-12-30" in r.summary
    r = status(evidence(copies=locked[:1]), "OFFSITE", settings(min_offsite_copies=2))
    assert r.status == "FAIL"
    # A copy that could not be read proves nothing: not a pass, not a known fail either.
    down = (copy(ids=("snap0130",)), copy("tokyo", "kanto", read_error="timeout"))
    r = status(evidence(copies=down), "OFFSITE", settings(min_offsite_copies=2))
    assert r.status == "NOT_EVALUATED" and "tokyo not read (timeout)" in r.summary


# -- ENCRYPTION --------------------------------------------------------------------------

def test_encryption() -> None:
    assert status(evidence(), "ENCRYPTION").status == "PASS"
    r = status(evidence(copies=(copy(escrow=False, ids=("snap0130",)),)), "ENCRYPTION")
    assert r.status == "FAIL" and "no escrow wrapping" in r.summary
    r = status(evidence(copies=(copy(key_with_data=True, ids=("snap0130",)),)), "ENCRYPTION")
    assert r.status == "FAIL" and "stored inside the copy" in r.summary
    one_down = (copy(ids=("snap0130",)), copy("tokyo", "kanto", read_error="timeout"))
    assert status(evidence(copies=one_down), "ENCRYPTION").status == "WARN"
    all_down = (copy(read_error="timeout"),)
    assert status(evidence(copies=all_down), "ENCRYPTION").status == "NOT_EVALUATED"
    # No snapshot in any copy read: nothing was seen sealed.
    r = status(evidence(runs=(), runs_ever=0, copies=(copy(points=()),)), "ENCRYPTION")
    assert r.status == "NOT_EVALUATED"
    assert r.summary == "no recovery point to see encrypted: repo holds none"
    empty_and_down = (copy(points=()), copy("tokyo", "kanto", read_error="timeout"))
    r = status(evidence(copies=empty_and_down), "ENCRYPTION")
    assert r.status == "NOT_EVALUATED" and "tokyo not read (timeout)" in r.summary
    # A key kept with the data is a failure whether or not there is data yet.
    r = status(evidence(copies=(copy(points=(), key_with_data=True),)), "ENCRYPTION")
    assert r.status == "FAIL"
    # An escrow wrapping the fleet's escrow key cannot open, or one a rotation cut short
    # left at the older generation: "escrow present" was a PASS the operator could not use.
    foreign = replace(copy(ids=("snap0130",)), fleet_escrow_key="e9")
    r = status(evidence(copies=(foreign,)), "ENCRYPTION")
    assert r.status == "FAIL" and ("its escrow wrapping is for escrow key e1, not the fleet's "
                                   "[keys] escrow_key e9") in r.summary
    assert status(evidence(copies=(replace(foreign, fleet_escrow_key="e1"),)),
                  "ENCRYPTION").status == "PASS"
    stale = replace(copy(ids=("snap0130",)), wrappings=(
        KeyWrapping("k1", "keyfile", None), KeyWrapping("k2", "escrow", "e1", current=False)))
    r = status(evidence(copies=(stale,)), "ENCRYPTION")
    assert r.status == "FAIL" and "predates the last key rotation" in r.summary
    # A snapshot object that failed to open: not authenticated by the key, and perhaps
    # the newest point (its time is inside it). Read and dropped before, so: PASS.
    damaged = replace(copy(ids=("snap0130",)), unreadable=(
        "object snapshots/9f3e: sealed document failed authentication", "object snapshots/a1"))
    r = status(evidence(copies=(damaged,)), "ENCRYPTION")
    assert r.status == "FAIL" and r.summary == (
        "repo: 2 snapshot object(s) failed to open with the tenant's key, a newer point among "
        "them may be lost: object snapshots/9f3e: sealed document failed authentication "
        "(and 1 more)")


# -- DRILL -------------------------------------------------------------------------------

def test_drill() -> None:
    assert status(evidence(drills=()), "DRILL").summary == "never drilled"
    assert status(evidence(drills=()), "DRILL").status == "FAIL"
    failed = (drill(1, at(15), ok=False),)
    r = status(evidence(drills=failed), "DRILL")
    assert r.status == "FAIL" and "table counts: tax: rows 2, recorded 3" in r.summary
    slow = (drill(1, at(15), rto_s=4 * 3600 + 1),)
    assert "longer than the RTO" in status(evidence(drills=slow), "DRILL").summary
    assert status(evidence(drills=(drill(1, at(15), rto_s=4 * 3600),)), "DRILL").status \
        == "PASS"
    unvalidated = (drill(1, at(15), checks=(Check("snapshot", True, ""),
                                            Check("restore", True, ""))),)
    assert status(evidence(drills=unvalidated), "DRILL").status == "WARN"
    then_failed = (drill(1, at(10)), drill(2, at(20), ok=False))
    r = status(evidence(drills=then_failed), "DRILL")
    assert r.status == "WARN" and r.evidence == ("drill:drill1", "drill:drill2")
    # Age: 365 days for tier 2; tier 1 is held to 90.
    old = (drill(1, dt.datetime(2026, 8, 1, tzinfo=dt.UTC)),)
    assert status(evidence(drills=old), "DRILL").status == "PASS"
    tier1 = replace(settings(), datasets=(Dataset("住民記録", "住民基本台帳事務", 1),))
    r = status(evidence(drills=old), "DRILL", tier1)
    assert r.status == "FAIL" and "limit 90 days" in r.summary
    # A drill after the period's end is not evidence for it.
    later = (drill(1, dt.datetime(2026, 12, 5, tzinfo=dt.UTC)),)
    assert status(evidence(drills=later), "DRILL").summary == "never drilled"


# -- ZERO-ERRORS -------------------------------------------------------------------------

def test_zero_errors() -> None:
    assert status(evidence(drills=()), "ZERO-ERRORS").status == "NOT_EVALUATED"
    before = (drill(1, at(-5)),)
    assert status(evidence(drills=before), "ZERO-ERRORS").status == "NOT_EVALUATED"
    checks = (Run("chk1", "check", "ok", at(3), at(3), None, 0, 0, 0, None, "/r"),
              Run("chk2", "check", "failed", at(4), at(4), None, 0, 0, 0, "pack bad", "/r"))
    r = status(evidence(runs=(*nightly(range(1, 31)), checks[0]), drills=()), "ZERO-ERRORS")
    assert r.status == "PASS" and r.evidence == ("run:chk1",)
    r = status(evidence(runs=(*nightly(range(1, 31)), *checks)), "ZERO-ERRORS")
    assert r.status == "FAIL" and r.evidence == ("run:chk2",)
    assert "1 of 3" in r.summary
    # Checks of a repository holding no snapshot verified no recovery point; a failed one
    # is still a failure.
    empty = (copy(points=()),)
    r = status(evidence(runs=(checks[0],), drills=(), copies=empty), "ZERO-ERRORS")
    assert r.status == "NOT_EVALUATED" and r.evidence == ("run:chk1",)
    assert "no recovery point to verify: repo holds none" in r.summary
    assert status(evidence(runs=checks, drills=(), copies=empty), "ZERO-ERRORS").status \
        == "FAIL"
    # One copy not read: the checks may have verified its points.
    unread = (copy(points=()), copy("tokyo", "kanto", read_error="timeout"))
    assert status(evidence(runs=(checks[0],), drills=(), copies=unread),
                  "ZERO-ERRORS").status == "PASS"


# -- EXEMPT ------------------------------------------------------------------------------

def test_exemptions() -> None:
    failing = Result("DRILL", "FAIL", "never drilled")
    ex = Exemption("DRILL", "総務課長", dt.date(2026, 11, 30), "cut-over")
    assert apply_exemption(failing, ex, AS_OF - dt.timedelta(seconds=1)).status == "EXEMPT"
    assert apply_exemption(failing, ex, AS_OF - dt.timedelta(seconds=1)).evaluated == "FAIL"
    expired = apply_exemption(failing, ex, AS_OF + dt.timedelta(days=1))
    assert expired.status == "FAIL" and "expired on 2026-11-30" in str(expired.note)
    passing = Result("DRILL", "PASS", "ok")
    assert apply_exemption(passing, ex, AS_OF) == passing
    ts = replace(settings(), exemptions=(ex,))
    assert status(evidence(drills=()), "DRILL", ts).status == "EXEMPT"


# -- a small fleet as a table ------------------------------------------------------------

CASES: dict[str, tuple[TenantEvidence, TenantSettings]] = {
    "kept": (evidence(), settings()),
    "gap": (evidence(runs=nightly(range(1, 31), skip=(12, 13, 14))), settings()),
    "never-drilled": (evidence(drills=()), settings()),
    "drill-failed": (evidence(drills=(drill(1, at(15), ok=False),)), settings()),
    "exempt-expired": (evidence(drills=()), replace(settings(), exemptions=(
        Exemption("DRILL", "総務課長", dt.date(2026, 11, 20), "cut-over"),))),
    "nothing-recorded": (evidence(runs=(), drills=(), runs_ever=0,
                                  copies=(copy(read_error="no repository configured"),)),
                         settings()),
    "store-down": (evidence(copies=(copy(read_error="store unreachable"),)), settings()),
    "no-snapshot": (evidence(runs=(Run("chk1", "check", "ok", at(3), at(3), None, 0, 0, 0,
                                       None, "/r"),), drills=(), copies=(copy(points=()),)),
                    settings()),
    "locked-offsite": (evidence(copies=(copy(ids=("snap0130",)),
                                        copy("tokyo", "kanto", locked=True))),
                       settings(require_immutable=True)),
}


def table() -> dict[str, dict[str, str]]:
    return {name: {r.control: r.status for r in assess_tenant(ev, ts, PERIOD, AS_OF).results}
            for name, (ev, ts) in CASES.items()}


def test_golden_table() -> None:
    assert table() == json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", list(CASES))
def test_no_missing_evidence_is_ever_a_pass(name: str) -> None:
    ev, ts = CASES[name]
    for r in assess_tenant(ev, ts, PERIOD, AS_OF).results:
        if r.status == "PASS":
            assert r.evidence, f"{name} {r.control}: a PASS names its evidence"


def test_a_period_of_japanese_days() -> None:
    jst = Period(dt.date(2026, 11, 1), dt.date(2026, 11, 30), "Asia/Tokyo")
    assert jst.start == dt.datetime(2026, 10, 31, 15, tzinfo=dt.UTC)
    assert jst.end == dt.datetime(2026, 11, 30, 15, tzinfo=dt.UTC)
    # 23:00 UTC on 31 October is 08:00 JST on 1 November: inside the JST period.
    ev = evidence(runs=(backup(1, at(0)), *nightly(range(1, 30))))
    a = assess_tenant(ev, settings(), jst, jst.end)
    assert a.facts.backups == 30
    # An exemption until 30 November runs to the end of that day in Japan.
    ex = Exemption("DRILL", "総務課長", dt.date(2026, 11, 30), "cut-over")
    failing = Result("DRILL", "FAIL", "never drilled")
    assert apply_exemption(failing, ex, jst.end, "Asia/Tokyo").status == "EXEMPT"
    assert apply_exemption(failing, ex, jst.end + dt.timedelta(hours=1),
                           "Asia/Tokyo").status == "FAIL"


def test_a_past_period_does_not_count_points_made_after_it() -> None:
    """The stores are read when the report is made: for a past period, points made since
    counted (RETENTION "oldest point -7.4 days old", ENCRYPTION and OFFSITE passing for a
    month that had no point). Found by an edge hunt."""
    later = (Point("next-month", AS_OF + dt.timedelta(days=7), "files"),)
    ev = evidence(runs=(), runs_ever=3, copies=(copy(points=later),))
    assert status(ev, "ENCRYPTION").status == "NOT_EVALUATED"
    assert status(ev, "OFFSITE").status == "NOT_EVALUATED"  # a copy holding no point
    assert status(ev, "RETENTION").status == "FAIL"
    a = assess_tenant(ev, settings(), PERIOD, AS_OF)
    assert a.facts.oldest_point is None
    # What was there by then still counts.
    both = evidence(copies=(copy(points=(Point("old", at(-40), "files"), *later)),))
    assert status(both, "ENCRYPTION").status == "PASS"
    assert assess_tenant(both, settings(), PERIOD, AS_OF).facts.oldest_point == at(-40)
