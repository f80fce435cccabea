"""Learning volumes and rates from past nights, and flagging overruns."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from drsync.errors import ConfigError
from drsync.plan import Fleet, History, learn, plan_fleet, read_history_csv

HEADER = "tenant,date,bytes_in,bytes_out,prep_s,send_s\n"


def nights(n: int, mb: float, ratio: float = 9.0, rate: float = 0.4) -> list[History]:
    day = dt.date(2024, 4, 1)
    return [History("Nobeoka", day + dt.timedelta(days=i), int(mb * 1e6),
                    int(mb * 1e6 / ratio), mb / rate, 100.0) for i in range(n)]


def test_volume_is_a_high_percentile_and_rates_a_weighted_mean(trial: Fleet) -> None:
    odd = History("Nobeoka", dt.date(2024, 5, 1), 600_000_000, 60_000_000, 1500.0, 250.0)
    history = [*nights(9, 300), odd]
    learned = learn(trial, history)
    est = learned.estimates[0]
    assert est.nights == 10
    assert est.daily_mb == pytest.approx(300)  # p90 of ten nights: the ninth largest
    assert 9.0 < est.compression_ratio < 9.5  # pulled toward 10 by the last night, not to it
    assert est.compress_mb_per_s == pytest.approx(0.4)
    assert learned.fleet.tenant("Nobeoka").compression_ratio == est.compression_ratio


def test_latest_night_longer_than_its_slot_is_flagged(trial: Fleet) -> None:
    slot = plan_fleet(trial).slot("Nobeoka")
    ok = learn(trial, nights(5, 300))
    assert not ok.estimates[0].overran  # 750 + 100 s < 888.9 s
    slow = learn(trial, nights(5, 300, rate=0.3))
    assert slow.estimates[0].latest_s > slot.end_s - slot.start_s
    assert slow.estimates[0].overran


def test_unknown_tenants_are_reported(trial: Fleet) -> None:
    history = [History("Atlantis", dt.date(2024, 1, 1), 1, 1, 1.0, 1.0)]
    learned = learn(trial, history)
    assert learned.unknown == ("Atlantis",) and not learned.estimates
    assert learned.fleet == trial


def test_csv_round_trip_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "h.csv"
    good.write_text(HEADER + "Nobeoka,2024-04-01,300000000,33333333,750,139\n")
    [night] = read_history_csv(good)
    assert night.bytes_in == 300_000_000 and night.date == dt.date(2024, 4, 1)
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "Nobeoka,yesterday,1,1,1,1\n")
    with pytest.raises(ConfigError, match=r"bad.csv:2: date"):
        read_history_csv(bad)
    cols = tmp_path / "cols.csv"
    cols.write_text("tenant,date\nNobeoka,2024-04-01\n")
    with pytest.raises(ConfigError, match="missing column"):
        read_history_csv(cols)


def test_history_from_catalog_runs_one_night_per_tenant_and_date() -> None:
    from drsync.catalog.db import RunRecord
    from drsync.plan import history_from_runs

    start = dt.datetime(2024, 4, 1, 0, 0, tzinfo=dt.UTC)

    def run(host: str, minutes: int, read: int, added: int, status: str = "ok",
            kind: str = "backup", day: int = 0) -> RunRecord:
        began = start + dt.timedelta(days=day)
        return RunRecord("id", "/repo", kind, "src", host, began,
                         began + dt.timedelta(minutes=minutes), status, read, added, None, None)

    runs = [run("Nobeoka", 10, 300_000_000, 30_000_000),
            run("Nobeoka", 2, 10_000_000, 1_000_000),  # a second run the same night adds up
            run("Nobeoka", 12, 320_000_000, 32_000_000, day=1),
            run("Nobeoka", 99, 1, 1, status="failed", day=2),  # not a night's work
            run("Nobeoka", 5, 1, 1, status="running", day=3),
            run("Nobeoka", 5, 1, 1, kind="restore", day=4),
            run("Hyuga", 3, 50_000_000, 5_000_000, status="partial")]
    history = history_from_runs(runs, tz=dt.UTC)
    assert [(h.tenant, h.date.day) for h in history] == [("Hyuga", 1), ("Nobeoka", 1),
                                                         ("Nobeoka", 2)]
    first = history[1]
    assert (first.bytes_in, first.bytes_out, first.prep_s, first.send_s) == (
        310_000_000, 31_000_000, 720.0, 0.0)


def test_a_window_crossing_midnight_is_one_night() -> None:
    from drsync.catalog.db import RunRecord
    from drsync.plan import history_from_runs

    jst = dt.timezone(dt.timedelta(hours=9))

    def at(day: int, clock: str) -> dt.datetime:
        h, m = (int(x) for x in clock.split(":"))
        return dt.datetime(2024, 12, day, h, m, tzinfo=jst)

    def run(day: int, clock: str, mb: int, slot: tuple[int, str] | None = None,
            kind: str = "backup") -> RunRecord:
        began = at(day, clock)
        return RunRecord("id", "/repo", kind, "src", "Nobeoka", began.astimezone(dt.UTC),
                         began + dt.timedelta(minutes=5), "ok", mb * 1_000_000,
                         mb * 100_000, None, None,
                         planned_start=None if slot is None else at(*slot))

    def nights(runs: list[RunRecord]) -> list[tuple[str, int]]:
        return [(f"{h.date:%m-%d}", h.bytes_in // 1_000_000)
                for h in history_from_runs(runs, "23:00", jst)]

    # no slot (drsync backup from cron): 23:50 and 00:05 started in one window
    cron = [run(1, "23:50", 200), run(2, "00:05", 300),
            run(2, "23:50", 200), run(3, "00:05", 300)]
    assert nights(cron) == [("12-01", 500), ("12-02", 500)]
    # WAL shipped between slots, before the next window opens, is the last night's
    assert nights([*cron[:2], run(2, "14:00", 40, kind="wal-ship")]) == [("12-01", 540)]
    # an agent's slots: each job's night is its slot's, whenever the job started; two
    # slots planned on one calendar date (00:30 and 23:30) are two nights
    late, early = (2, "23:30"), (2, "00:30")
    agent = [run(2, "00:40", 200, early), run(2, "01:10", 300, early),
             run(2, "23:35", 200, late), run(3, "00:20", 300, late),
             run(2, "23:59", 10, late), run(2, "23:58", 1, late, kind="restore")]
    assert nights(agent) == [("12-01", 500), ("12-02", 510)]
    # no window given: the fleet file's default, "00:00"
    assert [h.date.day for h in history_from_runs(cron[:2], tz=jst)] == [1, 2]


def test_catalog_runs_are_matched_by_the_tenant_they_recorded_not_their_host() -> None:
    from drsync.catalog.db import RunRecord
    from drsync.plan import history_from_runs

    began = dt.datetime(2024, 4, 1, 1, 0, tzinfo=dt.UTC)
    ended = began + dt.timedelta(minutes=10)

    def run(host: str, tenant: str | None, status: str = "ok") -> RunRecord:
        return RunRecord("id", "/repo", "backup", "src", host, began, ended, status,
                         100_000_000, 10_000_000, None, None, tenant=tenant)

    # the agent of Nobeoka runs on a machine called vm; an old catalog's run has no tenant
    history = history_from_runs([run("vm", "Nobeoka"), run("vm", "Nobeoka", "overrun"),
                                 run("Hyuga", None)], tz=dt.UTC)
    assert [(h.tenant, h.bytes_in, h.complete) for h in history] == [
        ("Hyuga", 100_000_000, True), ("Nobeoka", 200_000_000, False)]


def test_shipped_wal_counts_for_volume_and_ratio_not_for_the_preparation_rate(
        trial: Fleet) -> None:
    from drsync.catalog.db import RunRecord
    from drsync.plan import history_from_runs

    start = dt.datetime(2024, 4, 1, 1, 0, tzinfo=dt.UTC)

    def run(kind: str, minutes: int, read: int, added: int, status: str = "ok",
            hour: int = 0) -> RunRecord:
        began = start + dt.timedelta(hours=hour)
        return RunRecord("id", "/repo", kind, "src", "Nobeoka", began,
                         began + dt.timedelta(minutes=minutes), status, read, added, None, None)

    runs = [run("backup", 10, 100_000_000, 10_000_000),
            # the day's WAL: 300 MB raw, 50 MB on the wire once recompressed (6:1)
            run("wal-ship", 2, 200_000_000, 33_000_000, hour=9),
            run("wal-ship", 1, 100_000_000, 17_000_000, hour=15),
            run("wal-ship", 1, 0, 5_000_000, hour=16),  # recorded before raw sizes: 1:1
            run("wal-ship", 1, 9, 9, status="failed", hour=17)]
    [night] = history_from_runs(runs, tz=dt.UTC)
    assert (night.bytes_in, night.bytes_out) == (405_000_000, 65_000_000)
    assert (night.prep_s, night.send_s, night.prep_bytes) == (600.0, 240.0, 100_000_000)
    [est] = learn(trial, [night]).estimates
    assert est.daily_mb == 405.0
    assert est.compression_ratio == pytest.approx(405 / 65)
    # the rate is the backup's own: 100 MB in (600 s - setup)
    setup = trial.tenant("Nobeoka").setup_s
    assert est.compress_mb_per_s == pytest.approx(100 / (600 - setup))


def test_an_overrun_night_counts_as_a_lower_bound_of_its_volume(trial: Fleet) -> None:
    from drsync.catalog.db import RunRecord
    from drsync.plan import history_from_runs

    planned = trial.tenant("Nobeoka").daily_mb
    start = dt.datetime(2024, 4, 1, 1, 0, tzinfo=dt.UTC)

    def run(day: int, minutes: int, read: int, added: int, status: str) -> RunRecord:
        began = start + dt.timedelta(days=day)
        return RunRecord("id", "/repo", "backup", "src", "Nobeoka", began,
                         began + dt.timedelta(minutes=minutes), status, read, added, None, None)

    small = int(planned * 0.5e6)  # stopped at the deadline halfway through a planned night
    big = int(planned * 1.6e6)  # stopped having read more than was planned
    done = [run(d, 10, int(planned * 0.8e6), int(planned * 0.8e6 / 9), "ok") for d in range(8)]
    history = history_from_runs([*done, run(8, 30, small, small // 9, "overrun")], tz=dt.UTC)
    assert [h.complete for h in history] == [True] * 8 + [False]
    [est] = learn(trial, history).estimates
    assert (est.nights, est.overrun_nights) == (9, 1)
    # the half-read night counts as the planned volume, not as half of it
    assert est.daily_mb == pytest.approx(planned)
    # its rate is what it did: bytes read over its preparation time
    assert est.overran  # the latest night is the overrun one

    history = history_from_runs([*done, run(8, 30, big, big // 9, "overrun")], tz=dt.UTC)
    [est] = learn(trial, history).estimates
    assert est.daily_mb == pytest.approx(planned * 1.6)  # at least what it read
    ignored = history_from_runs([*done, run(8, 30, big, big // 9, "failed")], tz=dt.UTC)
    [est] = learn(trial, ignored).estimates
    assert (est.nights, est.overrun_nights) == (8, 0)
    assert est.daily_mb == pytest.approx(planned * 0.8)
