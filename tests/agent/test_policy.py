"""The agent's pure decisions: when a slot runs, missed slots, rates, health."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from drsync.agent.config import Send, TenantSlot
from drsync.agent.policy import boundaries, bytes_per_s, decide, health, rate_at, window_opening

TZ = timezone(timedelta(hours=9))


def slot(**kw: object) -> TenantSlot:
    base: dict[str, object] = dict(
        tenant="Nobeoka", window_start="22:00", window_s=3 * 3600.0, start_s=600.0,
        end_s=1800.0, deadline_s=3600.0, max_mbit_per_s=40.0,
        sends=(Send(600.0, 1200.0, 40.0), Send(1200.0, 1800.0, 10.0)))
    base.update(kw)
    return TenantSlot(**base)  # type: ignore[arg-type]


def at(hh: int, mm: int, ss: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 12, day, hh, mm, ss, tzinfo=TZ)


def test_window_opening_crosses_midnight() -> None:
    assert window_opening(at(23, 0), "22:00") == at(22, 0)
    assert window_opening(at(0, 30, day=2), "22:00") == at(22, 0)
    assert window_opening(at(21, 59, 59, day=2), "22:00") == at(22, 0)
    assert window_opening(at(12, 0, 5), "12:00:05") == at(12, 0, 5)


def test_before_the_slot_waits_for_it() -> None:
    d = decide(at(21, 0), slot(), None)
    assert (d.action, d.at, d.deadline) == ("wait", at(22, 10), at(23, 0))


def test_missed_slot_with_room_runs_at_once() -> None:
    # 22:20: 40 min to the 23:00 deadline, 20 min planned
    d = decide(at(22, 20), slot(), None)
    assert d.action == "run" and d.window == at(22, 0)


def test_missed_slot_without_room_is_missed() -> None:
    # 22:45: 15 min left, 20 min planned
    d = decide(at(22, 45), slot(), at(22, 0) - timedelta(days=1))
    assert d.action == "missed" and d.at == at(22, 10)
    assert "less than the 1200 s planned" in d.reason


def test_a_handled_window_never_runs_twice() -> None:
    d = decide(at(22, 20), slot(), at(22, 0))
    assert (d.action, d.at) == ("wait", at(22, 10, day=2))


def test_window_closed_while_down_is_missed_but_not_before_the_agent_existed() -> None:
    after = at(2, 0, day=2)  # the 22:00 window closed at 01:00
    assert decide(after, slot(), at(22, 0) - timedelta(days=1)).action == "missed"
    first = decide(after, slot(), None)
    assert (first.action, first.at) == ("wait", at(22, 10, day=2))


def test_rate_follows_send_segments_and_max_outside() -> None:
    s = slot()
    assert [rate_at(s, t) for t in (0, 600, 1199.9, 1200, 1799, 1800)] == \
        [40.0, 40.0, 40.0, 10.0, 10.0, 40.0]
    assert rate_at(slot(max_mbit_per_s=0.0, sends=()), 5) == 0.0  # no limit given
    assert boundaries(s) == [600.0, 1200.0, 1800.0]


def test_configured_cap_wins_when_lower() -> None:
    assert bytes_per_s(8.0, 0) == 1e6
    assert bytes_per_s(8.0, 5e5) == 5e5
    assert bytes_per_s(0.0, 0) == 0.0
    assert bytes_per_s(0.0, 3e5) == 3e5


@pytest.mark.parametrize(("status", "rpo", "healthy"), [
    ("ok", 3600.0, True), ("partial", 3600.0, True), ("failed", 60.0, False),
    ("missed", 60.0, False), ("overrun", 60.0, False), ("ok", 25 * 3600.0, False),
    ("ok", None, False)])
def test_health(status: str, rpo: float | None, healthy: bool) -> None:
    assert (not health(status, rpo, 24)) is healthy


@pytest.mark.parametrize(("kw", "ship", "words"), [
    ({"pitr": True}, "both", "point-in-time"),
    ({"rpo_hours": 12}, "both", "RPO of 12 h"),
    ({"has_base_job": False}, "both", "no base backup job"),
    ({"wal_bytes": 0}, "both", "no WAL waiting"),
    ({"delta_bytes": None}, "both", "could not be estimated"),
    ({"wal_bytes": 40_000_000, "delta_bytes": 9_000_000}, "delta", "adds 9000000"),
    ({"wal_bytes": 9_000_000, "delta_bytes": 9_000_000}, "delta", "adds 9000000"),
    ({"wal_bytes": 2_000_000, "delta_bytes": 9_000_000}, "wal", "WAL is 2000000"),
    ({"wal_bytes": 2_000_000, "delta_bytes": 9_000_000, "has_base": False}, "delta",
     "no base backup in the repository"),
])
def test_the_cheaper_of_wal_and_delta_within_the_tenants_policy(kw: dict[str, Any], ship: str,
                                                                 words: str) -> None:
    from drsync.agent.policy import choose_night

    args: dict[str, Any] = {"pitr": False, "rpo_hours": 24, "has_base_job": True,
                            "wal_bytes": 40_000_000, "delta_bytes": 9_000_000, **kw}
    choice = choose_night(**args)
    assert (choice.ship, words in choice.reason) == (ship, True), choice


def test_a_drill_is_due_every_n_days_from_the_last_one_on_record() -> None:
    from drsync.agent.policy import drill_due

    last = at(22, 30)
    assert drill_due(at(22, 29, day=8), last, 7) is None  # a minute short of 7 days
    assert drill_due(at(22, 30, day=8), last, 7) is not None  # exactly 7 days
    due = drill_due(at(22, 30, day=9), last, 7)
    assert due == "the last drill started 8.0 days ago (drill_every_days = 7)"
    assert drill_due(at(1, 0), None, 7) == "no drill on record"
    assert drill_due(at(1, 0), None, 0) is None  # drills off
    assert drill_due(at(1, 0, day=30), last, 0.5) is not None
    assert drill_due(last + timedelta(hours=11), last, 0.5) is None
