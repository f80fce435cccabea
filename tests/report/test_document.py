"""The document and the report directory, in-process on hand-made evidence: canonical
bytes, escaping, nothing half-written."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from drsync.plan.fleetfile import load_fleet
from drsync.report.build import write_report
from drsync.report.document import canonical_json
from drsync.report.evidence import (
    CopyEvidence,
    Evidence,
    KeyWrapping,
    Period,
    Point,
    Run,
    TenantEvidence,
)
from drsync.report.html import render_html
from drsync.report.seal import generate_key, load_private_key, verify_report
from drsync.report.settings import load_report_settings

HOSTILE = '<img src=x onerror="alert(1)">&'
FLEET = f"""
[window]
minutes = 180
[[link]]
name = "wan"
mbit_per_s = 20
[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300
[report]
primary_zone = "coast"
[costs]
yearly_yen = 1000
split = {{equal = 1.0}}
[[tenant]]
name = '{HOSTILE}'
repo = "/srv/x"
code = "452033"
datasets = [{{name = "住民記録", business = "<b>住民基本台帳事務</b>", tier = 1}}]
"""


def _evidence() -> Evidence:
    period = Period(dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    when = dt.datetime(2026, 11, 30, 23, tzinfo=dt.UTC)
    run = Run("r1", "backup", "ok", when, when, "s1", 10, 5, 4, None, "/srv/x")
    copy = CopyEvidence("repo", "/srv/x", "DC2", "inland", "disk", None, "id",
                        (Point("s1", when, "files"),), (KeyWrapping("k", "escrow", "e"),),
                        "/etc/k", False, None, "a directory")
    return Evidence(period, dt.datetime(2026, 12, 1, 1, tzinfo=dt.UTC), "catalog.sqlite",
                    (TenantEvidence(HOSTILE, (run,), 1, (), (copy,)),), None)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[object, object]:
    fleet_path = tmp_path / "fleet.toml"
    fleet_path.write_text(FLEET, encoding="utf-8")
    report = load_report_settings(load_fleet(fleet_path))
    private, _public = generate_key(tmp_path / "keys")
    return report, load_private_key(private)


def test_canonical_bytes_and_escaped_html(tmp_path: Path, setup: tuple[object, object]) -> None:
    report, key = setup
    out = tmp_path / "r"
    built = write_report(_evidence(), report, out, formats=("json", "csv"), key=key,  # type: ignore[arg-type]
                         previous=None, report_id="0" * 32)
    data = (out / "report.json").read_bytes()
    assert data == canonical_json(json.loads(data))  # one byte form
    assert "住民基本台帳事務".encode() in data  # Japanese as is, not \\u escapes
    doc = built.document
    assert doc["tenants"][0]["controls"]["DRILL"]["status"] == "FAIL"
    assert doc["costs"]["tenants"][0]["yen"] == 1000
    html = render_html(json.loads(data), charts=False)
    assert HOSTILE not in html and "<b>住民基本台帳事務</b>" not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;" in html
    assert verify_report(out).ok


class _UnpluggedKey:
    """A signing key whose signing fails (a token pulled out mid-report)."""

    def __init__(self, real: object) -> None:
        self.real = real

    def public_key(self) -> object:
        return self.real.public_key()  # type: ignore[attr-defined]

    def sign(self, data: bytes) -> bytes:
        raise OSError("signing token removed")


def test_a_report_that_cannot_be_sealed_leaves_nothing(tmp_path: Path,
                                                      setup: tuple[object, object]) -> None:
    report, key = setup
    out = tmp_path / "r"
    with pytest.raises(OSError, match="signing token removed"):
        write_report(_evidence(), report, out, formats=("json", "csv"),  # type: ignore[arg-type]
                     key=_UnpluggedKey(key), previous=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.toml", "keys"]
