"""Fleet files: the examples load, bad files name file and key, --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from drsync.errors import ConfigError, UsageError
from drsync.plan import load_fleet

from .conftest import KYUSHU, TRIAL

GOOD = """
[window]
start = "22:00"
minutes = 240
[[link]]
name = "wan"
mbit_per_s = 10
[defaults]
compress_mb_per_s = 2
compression_ratio = 4
[[tenant]]
name = "A"
daily_mb = 100
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def test_trial_example_has_the_trials_rates() -> None:
    fleet = load_fleet(TRIAL)
    nobeoka = fleet.tenant("Nobeoka")
    assert nobeoka.compress_mb_per_s == pytest.approx(10.8 / 27)
    assert nobeoka.compression_ratio == pytest.approx(10.8 / 1.2)
    assert fleet.link("lgwan").mbit_per_s == pytest.approx(1.2 * 8 / 5)
    assert nobeoka.prep_s == pytest.approx(750.0)
    assert nobeoka.send_mb / fleet.link("lgwan").mb_per_s == pytest.approx(138.888, abs=1e-3)
    assert fleet.window.seconds == 10800


def test_kyushu_example_volumes_follow_population() -> None:
    fleet = load_fleet(KYUSHU)
    assert len(fleet.tenants) >= 30
    assert {t.link for t in fleet.tenants} == {"miyazaki", "kagoshima"}
    miyazaki, nishimera = fleet.tenant("Miyazaki"), fleet.tenant("Nishimera")
    assert miyazaki.daily_mb / nishimera.daily_mb == pytest.approx(
        miyazaki.population / nishimera.population)
    assert miyazaki.full_mb == pytest.approx(miyazaki.population * 0.1)


def test_times_are_relative_to_the_window_across_midnight(tmp_path: Path) -> None:
    text = GOOD.replace('daily_mb = 100', 'daily_mb = 100\nearliest = "23:30"\ndeadline = "01:00"')
    tenant = load_fleet(write(tmp_path, text)).tenant("A")
    assert (tenant.earliest_s, tenant.deadline_s) == (5400, 10800)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("mbit_per_s = 10", "mbit_per_s = -1"), "link.wan.mbit_per_s"),
        (("mbit_per_s = 10", "mbit_per_s = 'fast'"), "link.wan.mbit_per_s"),
        (("compress_mb_per_s = 2", "compress_mb_per_s = 0"), "defaults.compress_mb_per_s"),
        (("daily_mb = 100", "daily_mb = 100\nlink = 'lan'"), "tenant.A.link"),
        (("daily_mb = 100", "daily_mb = 100\ncompresion_ratio = 3"), "tenant.A.compresion_ratio"),
        (("daily_mb = 100", "daily_mb = 100\ndeadline = '03:00'"), "tenant.A.deadline"),
        (("daily_mb = 100", "daily_mb = 100\nearliest = '9pm'"), "tenant.A.earliest"),
        (("daily_mb = 100", "daily_mb = 100\noverlap = 'yes'"), "tenant.A.overlap"),
        (("daily_mb = 100", "daily_mb = 100\nfull_mb = 5"), "tenant.A.full_every_days"),
        (("daily_mb = 100", "population = 10"), "tenant.A.daily_mb"),
        (("minutes = 240", "minutes = 2000"), "window.minutes"),
        (("minutes = 240", ""), "window.minutes"),
        (('name = "A"', 'name = ""'), "tenant[0].name"),
        (("[defaults]", "[receiver]\nmax_streams = 2.5\n[defaults]"), "receiver.max_streams"),
    ],
)
def test_bad_fleet_names_file_and_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}:"), message
    assert "\n" not in message


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_fleet(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_fleet(write(tmp_path, "[window\n"))
    with pytest.raises(ConfigError, match="link: at least one"):
        load_fleet(write(tmp_path, "[window]\nminutes = 10\n"))


def test_set_overrides_any_value() -> None:
    fleet = load_fleet(TRIAL, [
        "link.lgwan.mbit_per_s=100", "defaults.compress_mb_per_s=150",
        "tenant.Nobeoka.daily_mb=600", "window.minutes=240", "receiver.max_streams=4",
        "tenant.Nobeoka.overlap=true", 'window.start=22:30',
    ])
    nobeoka = fleet.tenant("Nobeoka")
    assert fleet.link("lgwan").mbit_per_s == 100
    assert nobeoka.compress_mb_per_s == 150
    assert nobeoka.daily_mb == 600 and nobeoka.overlap is True
    assert fleet.window.seconds == 240 * 60 and fleet.window.start == "22:30"
    assert fleet.max_streams == 4


@pytest.mark.parametrize(
    ("flag", "match"),
    [
        ("link.lgwan.speed=3", "unknown key 'speed'"),
        ("link.wan.mbit_per_s=3", "no link named 'wan'"),
        ("tenant.Tokyo.daily_mb=3", "no tenant named 'Tokyo'"),
        ("defaults.colour=3", "unknown key 'colour'"),
        ("nonsense=3", "unknown key 'nonsense'"),
        ("window.minutes", "expected key=value"),
        ("link.lgwan.mbit_per_s=-5", r"--set link.lgwan.mbit_per_s=-5: .*must be > 0"),
        ("defaults.compress_mb_per_s=abc", r"--set defaults.compress_mb_per_s=abc: .*number"),
    ],
)
def test_bad_set_is_a_usage_error(flag: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        load_fleet(TRIAL, [flag])
