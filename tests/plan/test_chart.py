"""--chart writes a real, valid PNG or SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from drsync.plan import Fleet, plan_fleet
from drsync.plan.chart import link_load, write_chart


def test_png_and_svg(tmp_path: Path, kyushu: Fleet) -> None:
    plan = plan_fleet(kyushu)
    png = write_chart(plan, tmp_path / "night.png")
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    svg = write_chart(plan, tmp_path / "night.svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert "Miyazaki" in svg.read_text()


def test_link_load_is_the_sum_of_sends(trial: Fleet) -> None:
    times, rates = link_load(plan_fleet(trial), "lgwan")
    assert list(zip(times, rates, strict=True))[:3] == [(0.0, 0.0), (750.0, 1.92),
                                                          (times[2], 0.0)]
