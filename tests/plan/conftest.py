"""Shared fixtures for the planner tests: the example fleets and a fleet builder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drsync.plan import Fleet, fleet_from_dict, load_fleet

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "config" / "examples"
TRIAL = EXAMPLES / "lgwan-2011.toml"
KYUSHU = EXAMPLES / "fleet-kyushu.toml"


@pytest.fixture
def trial() -> Fleet:
    return load_fleet(TRIAL)


@pytest.fixture
def kyushu() -> Fleet:
    return load_fleet(KYUSHU)


def make_fleet(
    tenants: list[dict[str, Any]],
    *,
    mbit: float = 8.0,
    minutes: float = 60,
    streams: int | None = None,
    stream_mbit: float | None = None,
    links: list[dict[str, Any]] | None = None,
    defaults: dict[str, Any] | None = None,
) -> Fleet:
    """A fleet from plain values; defaults: one 8 Mbit/s (1 MB/s) link, a 60-minute window."""
    link: dict[str, Any] = {"name": "wan", "mbit_per_s": mbit}
    if stream_mbit is not None:
        link["stream_mbit_per_s"] = stream_mbit
    raw: dict[str, Any] = {
        "window": {"start": "00:00", "minutes": minutes},
        "link": links or [link],
        "defaults": {"compress_mb_per_s": 1.0, "compression_ratio": 1.0, **(defaults or {})},
        "tenant": tenants,
    }
    if streams is not None:
        raw["receiver"] = {"max_streams": streams}
    return fleet_from_dict(raw, source="test.toml")
