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
