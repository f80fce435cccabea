"""The example fleets' answers, kept as golden JSON files.

A change to the scheduler that moves any start, rate or end shows up here
as a diff a reviewer can read. To accept a deliberate change, regenerate:

    DRSYNC_REGEN_GOLDEN=1 .venv/bin/pytest -q tests/plan/test_golden.py

and review ``git diff tests/plan/golden/`` before committing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drsync.plan import (
    cycle_to_dict,
    load_fleet,
    max_fit,
    maxfit_to_dict,
    plan_cycle,
    plan_fleet,
    plan_to_dict,
)

from .conftest import KYUSHU, TRIAL

GOLDEN = Path(__file__).parent / "golden"


def _strip_paths(doc: Any) -> Any:
    """Fleet paths differ between checkouts; keep the file name only."""
    if isinstance(doc, dict):
        return {k: Path(v).name if k == "fleet" else _strip_paths(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_strip_paths(v) for v in doc]
    return doc


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "lgwan-2011.plan.json": lambda: plan_to_dict(plan_fleet(load_fleet(TRIAL))),
    "lgwan-2011.max-fit.json": lambda: maxfit_to_dict(max_fit(load_fleet(TRIAL), "Nobeoka")),
    "lgwan-2011.max-fit-serial.json": lambda: maxfit_to_dict(
        max_fit(load_fleet(TRIAL), "Nobeoka", "serial")),
    "fleet-kyushu.plan.json": lambda: plan_to_dict(plan_fleet(load_fleet(KYUSHU))),
    "fleet-kyushu.cycle.json": lambda: cycle_to_dict(plan_cycle(load_fleet(KYUSHU))),
    "fleet-kyushu.tight.plan.json": lambda: plan_to_dict(plan_fleet(load_fleet(
        KYUSHU, ["link.miyazaki.mbit_per_s=0.5", "link.kagoshima.mbit_per_s=0.3"]))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    doc = _strip_paths(CASES[name]())
    path = GOLDEN / name
    if os.environ.get("DRSYNC_REGEN_GOLDEN"):
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    assert doc == json.loads(path.read_text()), f"{name} changed; see this module's docstring"
