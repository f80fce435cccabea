"""The retention policy, pure: snapshots in, decisions out (no store, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drsync.errors import UsageError
from drsync.repo.retention import (
    Duration,
    RetentionPolicy,
    apply_policy,
    expired_wal,
    group_key,
    parse_duration,
)
from drsync.repo.snapshot import Snapshot

GOLDEN = Path(__file__).parent / "golden" / "retention_year.txt"


def snap(at: datetime, *, host: str = "town-hall", tags: tuple[str, ...] = (),
         kind: str = "files", spec: dict[str, object] | None = None) -> Snapshot:
    stamp = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return Snapshot(time=stamp, start_time=stamp, host=host, source_kind=kind,
                    source_spec=spec if spec is not None else {"paths": ["/srv/registry"]},
                    tree=[], tags=list(tags), id=f"{host}-{stamp}")


def nightly(first: datetime, nights: int) -> list[Snapshot]:
    return [snap(first + timedelta(days=i)) for i in range(nights)]


YEAR = nightly(datetime(2026, 1, 1, 3, 0, tzinfo=UTC), 365)
GFS = RetentionPolicy(keep_last=2, keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=3)


def table(policy: RetentionPolicy, snaps: list[Snapshot]) -> str:
    lines = []
    for group in apply_policy(snaps, policy):
        for d in reversed(group.decisions):
            if d.keep:
                lines.append(f"{d.snapshot.time[:10]} {','.join(d.reasons)}")
    return "\n".join(lines) + "\n"


def kept_days(policy: RetentionPolicy, snaps: list[Snapshot]) -> set[str]:
    return {d.snapshot.time[:10] for g in apply_policy(snaps, policy) for d in g.kept}


def test_a_year_of_nightly_snapshots_under_gfs_matches_the_golden_table() -> None:
    assert table(GFS, YEAR) == GOLDEN.read_text()


def test_gfs_over_a_year_keeps_what_the_calendar_says() -> None:
    # Worked out by hand: 2026 ends on a Thursday (ISO week 53, Dec 28-31).
    month_ends = {f"2026-{m:02d}-{d}" for m, d in
                  [(1, 31), (2, 28), (3, 31), (4, 30), (5, 31), (6, 30), (7, 31), (8, 31),
                   (9, 30), (10, 31), (11, 30), (12, 31)]}
    last_week = {f"2026-12-{d}" for d in range(25, 32)}
    weeks = {"2026-12-31", "2026-12-27", "2026-12-20", "2026-12-13"}
    assert kept_days(GFS, YEAR) == month_ends | last_week | weeks
    assert len(kept_days(GFS, YEAR)) == 20
    newest = apply_policy(YEAR, GFS)[0].decisions[0]
    assert newest.reasons == ["last", "daily", "weekly", "monthly", "yearly"]


def test_a_missed_night_does_not_shorten_the_daily_history() -> None:
    snaps = [s for s in nightly(datetime(2026, 3, 1, 3, tzinfo=UTC), 10)
             if not s.time.startswith("2026-03-08")]
    assert kept_days(RetentionPolicy(keep_daily=3), snaps) == {"2026-03-10", "2026-03-09",
                                                               "2026-03-07"}


def test_only_the_newest_of_a_bucket_is_kept() -> None:
    day = datetime(2026, 5, 4, tzinfo=UTC)
    snaps = [snap(day + timedelta(hours=h)) for h in (1, 5, 23)]
    [group] = apply_policy(snaps, RetentionPolicy(keep_daily=5, keep_hourly=2))
    assert [(d.snapshot.time[11:13], d.reasons) for d in group.decisions] == [
        ("23", ["hourly", "daily"]), ("05", ["hourly"]), ("01", [])]


def test_unlimited_keeps_every_bucket() -> None:
    assert len(kept_days(RetentionPolicy(keep_monthly=-1), YEAR)) == 12
    assert len(kept_days(RetentionPolicy(keep_last=-1), YEAR)) == 365


def test_keep_within_counts_back_from_the_newest_snapshot_not_from_now() -> None:
    old = nightly(datetime(2020, 1, 1, 3, tzinfo=UTC), 60)  # backups stopped years ago
    kept = kept_days(RetentionPolicy(keep_within=parse_duration("7d")), old)
    assert kept == {f"2020-02-{d:02d}" for d in range(23, 30)}
    [group] = apply_policy(old, RetentionPolicy(keep_within=parse_duration("1m")))
    assert group.kept[-1].snapshot.time.startswith("2020-01-30")  # Feb 29 - 1 month = Jan 29
    assert group.kept[0].reasons == ["within 1m"]


@pytest.mark.parametrize("text", ["0d", "0h", "0y0m", "0d0h"])
def test_a_zero_keep_within_is_refused_rather_than_keeping_nothing(text: str) -> None:
    with pytest.raises(UsageError, match=f"duration '{text}' is zero: it would keep no "):
        parse_duration(text)


def test_keep_tag_keeps_every_tagged_snapshot() -> None:
    snaps = nightly(datetime(2026, 1, 1, 3, tzinfo=UTC), 30)
    snaps[3].tags = ["audit"]
    snaps[9].tags = ["audit", "nightly"]
    [group] = apply_policy(snaps, RetentionPolicy(keep_last=1, keep_tags=("audit",)))
    assert [(d.snapshot.time[:10], d.reasons) for d in group.kept] == [
        ("2026-01-30", ["last"]), ("2026-01-10", ["tag audit"]), ("2026-01-04", ["tag audit"])]
    assert len(group.removed) == 27


def test_groups_are_per_host_and_source() -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    snaps = [snap(at, host="a"), snap(at + timedelta(days=1), host="a"),
             snap(at, host="b"),
             snap(at, spec={"paths": ["/etc"]}, host="a"),
             snap(at, kind="pg_base", spec={"system_identifier": "7", "start_wal": "x"}),
             snap(at + timedelta(days=2), kind="pg_base",
                  spec={"system_identifier": "7", "start_wal": "y"})]
    groups = apply_policy(snaps, RetentionPolicy(keep_last=1))
    assert [(g.host, g.source, len(g.kept), len(g.removed)) for g in groups] == [
        ("a", 'files {"paths": ["/etc"]}', 1, 0),
        ("a", 'files {"paths": ["/srv/registry"]}', 1, 1),
        ("b", 'files {"paths": ["/srv/registry"]}', 1, 0),
        ("town-hall", 'pg_base {"system_identifier": "7"}', 1, 1),
    ]
    # The order of the paths given does not split a group.
    assert group_key(snap(at, spec={"paths": ["/b", "/a"]})) == group_key(
        snap(at, spec={"paths": ["/a", "/b"]}))


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", Duration(days=30)), ("1y2m", Duration(1, 2)), ("12h", Duration(hours=12)),
    ("1y1y", Duration(2)), ("2m3d4h", Duration(0, 2, 3, 4))])
def test_durations(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "1w", "30 days", "-1d", "1.5d"])
def test_bad_durations_name_the_text(text: str) -> None:
    with pytest.raises(UsageError, match="is not like 30d"):
        parse_duration(text)


def test_month_arithmetic_clamps_to_the_month_end() -> None:
    assert Duration(months=1).before(datetime(2026, 3, 31, tzinfo=UTC)) == datetime(
        2026, 2, 28, tzinfo=UTC)
    assert Duration(years=1, days=1).before(datetime(2024, 2, 29, tzinfo=UTC)) == datetime(
        2023, 2, 27, tzinfo=UTC)


def test_empty_and_invalid_policies() -> None:
    assert RetentionPolicy().empty and not RetentionPolicy(keep_tags=("x",)).empty
    with pytest.raises(UsageError, match="--keep-daily"):
        RetentionPolicy(keep_daily=-2).validate()


def test_wal_expires_only_before_the_earliest_kept_base_backup() -> None:
    names = ["000000010000000000000001", "000000010000000000000002",
             "000000010000000000000002.00000028.backup", "000000010000000000000003",
             "000000010000000000000004", "00000002.history", "000000020000000000000004",
             "000000020000000000000005.partial"]
    assert expired_wal([("000000010000000000000003", 16 << 20)], names) == [
        "000000010000000000000001", "000000010000000000000002",
        "000000010000000000000002.00000028.backup"]
    # A base backup on a later timeline that starts earlier keeps more.
    assert expired_wal([("000000010000000000000003", 16 << 20),
                        ("000000020000000000000002", 16 << 20)], names) == [
        "000000010000000000000001"]
    assert expired_wal([], names) == []  # no base backup: nothing can be judged
