"""[report], [costs] and the tenants' report keys: defaults, overrides, one-line errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from drsync.errors import ConfigError
from drsync.plan.fleetfile import load_fleet
from drsync.report.settings import load_report_settings

BASE = """
[window]
minutes = 180
[[link]]
name = "wan"
mbit_per_s = 20
[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "fleet.toml"
    path.write_text(BASE + text, encoding="utf-8")
    return load_report_settings(load_fleet(path))


def test_defaults_and_per_tenant_overrides(tmp_path: Path) -> None:
    report = _load(tmp_path, """
[report]
primary_zone = "coast"
drill_max_age_days = 200
signing_key = "keys/r.key"
[[tenant]]
name = "A"
repo = "repos/a"
key_file = "a.key"
rpo_hours = 12
code = 452033
datasets = [{name = "住民記録", business = "住民基本台帳事務", tier = 1}]
[[tenant]]
name = "B"
population = 500
[tenant.report]
drill_max_age_days = 30
[[tenant.report.copies]]
name = "tokyo"
repo = "s3://b/t"
zone = "kanto"
""")
    a, b = report.tenants  # type: ignore[attr-defined]
    assert a.code == "452033" and a.thresholds.rpo_hours == 12
    assert a.tier == 1 and a.drill_max_age_days == 90  # tier 1
    assert b.drill_max_age_days == 30 and b.population == 500
    assert a.copies[0].repo == str(tmp_path / "repos" / "a")
    assert [c.name for c in b.copies] == ["repo", "tokyo"] and b.copies[1].zone == "kanto"
    assert report.signing_key == str(tmp_path / "keys" / "r.key")  # type: ignore[attr-defined]
    assert report.costs is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "message"), [
    ('[report]\nretention = 3\n[[tenant]]\nname = "A"\n',
     "report.retention: unknown key"),
    ('[report]\nretention_days = -1\n[[tenant]]\nname = "A"\n',
     "report.retention_days: must be > 0, got -1"),
    ('[[tenant]]\nname = "A"\n[tenant.report]\nexempt = [{control = "DRILL", '
     'expires = 2026-12-31}]\n', "tenant.A.report.exempt[0].approver: must be a non-empty"),
    ('[[tenant]]\nname = "A"\n[tenant.report]\nexempt = [{control = "DRILL", '
     'approver = "x"}]\n', "tenant.A.report.exempt[0].expires: must be a date"),
    ('[[tenant]]\nname = "A"\n[tenant.report]\nexempt = [{control = "BACKUP", '
     'approver = "x", expires = 2026-12-31}]\n', "unknown control 'BACKUP'"),
    ('[costs]\nyearly_yen = 100\nsplit = {equal = 0.4, population = 0.5}\n'
     '[[tenant]]\nname = "A"\n', "costs.split: weights must sum to 1, got 0.9"),
    ('[costs]\nyearly_yen = 100\nsplit = {equal = 0.4, area = 0.6}\n[[tenant]]\nname = "A"\n',
     "costs.split.area: unknown key"),
    ('[[tenant]]\nname = "A"\ndatasets = [{business = "x"}]\n',
     "tenant.A.datasets[0].name: is required"),
    ('[report]\ntimezone = "Japan/Miyazaki"\n[[tenant]]\nname = "A"\n',
     "report.timezone: unknown time zone 'Japan/Miyazaki'"),
])
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert str(err.value).startswith(f"{tmp_path / 'fleet.toml'}: ")
    assert message in str(err.value)


def test_an_exemption_carries_its_expiry(tmp_path: Path) -> None:
    report = _load(tmp_path, '[[tenant]]\nname = "A"\n[tenant.report]\nexempt = [{control = '
                   '"DRILL", approver = "総務課長", expires = 2026-12-31}]\n')
    (ex,) = report.tenants[0].exemptions  # type: ignore[attr-defined]
    assert ex.expires == dt.date(2026, 12, 31) and ex.approver == "総務課長"


def test_the_readme_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## BCP audit report"):]
    example = section[section.index("```toml\n") + 8:]
    example = example[:example.index("```")]
    report = _load(tmp_path, example)
    (nobeoka,) = report.tenants  # type: ignore[attr-defined]
    assert nobeoka.code == "452033" and nobeoka.tier == 1
    assert [c.name for c in nobeoka.copies] == ["repo", "tokyo"]
    assert nobeoka.exemptions[0].approver == "総務課長 山田"
    assert report.costs.split == (("equal", 0.4), ("population", 0.6))  # type: ignore[attr-defined]
