"""The report package's public names."""

from __future__ import annotations

import drsync.report
from drsync.report.controls import STATUSES
from drsync.report.settings import CONTROLS


def test_exports() -> None:
    assert drsync.report.__all__ == ["CONTROLS", "STATUSES"]
    assert drsync.report.CONTROLS == CONTROLS == (
        "COVERAGE", "RPO", "RETENTION", "OFFSITE", "ENCRYPTION", "DRILL", "ZERO-ERRORS")
    assert STATUSES == ("PASS", "WARN", "FAIL", "NOT_EVALUATED", "EXEMPT")
