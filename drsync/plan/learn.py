"""Replacing planned volumes and rates with what past nights really did.

History comes as plain ``History`` records: from a CSV with the header
``tenant,date,bytes_in,bytes_out,prep_s,send_s``, or from the catalog's
backup runs (``history_from_runs``: the tenant each run recorded, its host
for a run recorded without one, names the fleet's tenant; its bytes read and
added are bytes in and out, its duration is preparation, as an agent
compresses and stores in one pipeline). For each tenant with
history, over its last ``RECENT`` nights:

- ``daily_mb``: the 90th percentile of ``bytes_in`` (nearest rank; dumps and
  WAL together, see ``history_from_runs``). Volumes
  are planned for a bad night, not an average one: a slot sized on the mean
  overruns on half the nights.
- ``compression_ratio`` and ``compress_mb_per_s``: an exponentially
  weighted mean (alpha 0.3, newest weighing most) of each night's
  ``bytes_in / bytes_out`` and ``bytes_in / (prep_s - setup_s)``. Rates
  drift slowly (data mix, host load), and one odd night should move them
  only a little.

A night that overran (the backup was stopped at the tenant's deadline,
``complete`` false) still says something: its ratio and rate are measured
on what it did, and its volume is a lower bound, so it counts as at least
what it read and never less than the volume planned (it did not get through
the night's data, so there is no evidence of less). Ignoring such nights
would learn only from the nights that fitted, and keep planning the tenant
short.

A tenant whose latest night took longer (``prep_s + send_s``) than the slot
the current plan gives it (start of preparation to last byte) is flagged.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from drsync.errors import ConfigError
from drsync.plan.fleet import Fleet, Tenant, clock_seconds
from drsync.plan.schedule import Plan, plan_fleet

__all__ = ["ALPHA", "PERCENTILE", "RECENT", "Estimate", "History", "Learned", "RunLike",
           "history_from_runs", "learn", "read_history_csv", "window_opening"]

RECENT = 28
ALPHA = 0.3
PERCENTILE = 90
COLUMNS = ("tenant", "date", "bytes_in", "bytes_out", "prep_s", "send_s")


@dataclass(frozen=True)
class History:
    """One tenant's measured night."""

    tenant: str
    date: dt.date
    bytes_in: int
    bytes_out: int
    prep_s: float
    send_s: float
    # Of bytes_in, what the night's preparation read (None: all of it). WAL was sealed
    # and recompressed during the day: its bytes count for volume and ratio, not for
    # the preparation rate.
    prep_bytes: int | None = None
    # False: the night was stopped at the deadline (an overrun run), so bytes_in is what
    # it got through, a lower bound of the night's volume.
    complete: bool = True


@dataclass(frozen=True)
class Estimate:
    tenant: str
    nights: int
    daily_mb: float
    compression_ratio: float
    compress_mb_per_s: float
    latest_s: float  # the latest night's prep_s + send_s
    slot_s: float | None  # what the plan before learning gave it; None if it did not fit
    overrun_nights: int = 0  # of ``nights``, those stopped at the deadline

    @property
    def overran(self) -> bool:
        return self.slot_s is None or self.latest_s > self.slot_s


@dataclass(frozen=True)
class Learned:
    fleet: Fleet  # the fleet with estimates in place of planned values
    estimates: tuple[Estimate, ...]
    unknown: tuple[str, ...]  # tenants in the history that the fleet does not have


def learn(fleet: Fleet, history: list[History], before: Plan | None = None) -> Learned:
    """Estimate each tenant's volume and rates from its recent nights."""
    before = before or plan_fleet(fleet)
    slots = {s.tenant.name: s.end_s - s.start_s for s in before.slots}
    by_tenant: dict[str, list[History]] = {}
    for night in history:
        by_tenant.setdefault(night.tenant, []).append(night)
    names = {t.name for t in fleet.tenants}
    estimates: list[Estimate] = []
    tenants: list[Tenant] = []
    for tenant in fleet.tenants:
        nights = sorted(by_tenant.get(tenant.name, []), key=lambda h: h.date)[-RECENT:]
        if not nights:
            tenants.append(tenant)
            continue
        est = _estimate(tenant, nights, slots.get(tenant.name))
        estimates.append(est)
        tenants.append(replace(tenant, daily_mb=est.daily_mb,
                               compression_ratio=est.compression_ratio,
                               compress_mb_per_s=est.compress_mb_per_s))
    unknown = tuple(sorted(set(by_tenant) - names))
    return Learned(fleet.with_tenants(tuple(tenants)), tuple(estimates), unknown)


def _estimate(tenant: Tenant, nights: list[History], slot_s: float | None) -> Estimate:
    volumes = sorted(h.bytes_in / 1e6 if h.complete else max(h.bytes_in / 1e6, tenant.daily_mb)
                     for h in nights)
    rank = max(1, math.ceil(PERCENTILE / 100 * len(volumes)))
    ratio = _ewma([h.bytes_in / h.bytes_out for h in nights if h.bytes_out > 0],
                  tenant.compression_ratio)
    rate = _ewma([_prep_bytes(h) / 1e6 / (h.prep_s - tenant.setup_s)
                  for h in nights if h.prep_s > tenant.setup_s and _prep_bytes(h) > 0],
                 tenant.compress_mb_per_s)
    latest = nights[-1]
    return Estimate(tenant.name, len(nights), volumes[rank - 1], ratio, rate,
                    latest.prep_s + latest.send_s, slot_s,
                    sum(1 for h in nights if not h.complete))


def _prep_bytes(night: History) -> int:
    return night.bytes_in if night.prep_bytes is None else night.prep_bytes


def _ewma(values: list[float], fallback: float) -> float:
    if not values:
        return fallback
    mean = values[0]
    for value in values[1:]:
        mean = ALPHA * value + (1 - ALPHA) * mean
    return mean


def read_history_csv(path: str | Path) -> list[History]:
    """Parse a history CSV; ConfigError names the file, line and column."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
            header = tuple(rows[0].keys()) if rows else ()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read history: {err}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"{path}: not a history CSV: {err}") from None
    missing = [c for c in COLUMNS if rows and c not in header]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}; "
                          f"expected {','.join(COLUMNS)}")
    history = []
    for line, row in enumerate(rows, start=2):
        column = "tenant"
        try:
            tenant = row["tenant"].strip()
            column = "date"
            date = dt.date.fromisoformat(row["date"].strip())
            column = "bytes_in"
            bytes_in = int(row["bytes_in"])
            column = "bytes_out"
            bytes_out = int(row["bytes_out"])
            column = "prep_s"
            prep_s = float(row["prep_s"])
            column = "send_s"
            send_s = float(row["send_s"])
        except (ValueError, AttributeError, TypeError):
            raise ConfigError(f"{path}:{line}: {column}: not a valid value: "
                              f"{row.get(column)!r}") from None
        if min(bytes_in, bytes_out) < 0 or min(prep_s, send_s) < 0:
            raise ConfigError(f"{path}:{line}: negative bytes or seconds")
        history.append(History(tenant, date, bytes_in, bytes_out, prep_s, send_s))
    return history


class RunLike(Protocol):
    """What ``history_from_runs`` reads of a catalog run (the catalog's RunRecord)."""

    @property
    def kind(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def tenant(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def started(self) -> dt.datetime: ...
    @property
    def ended(self) -> dt.datetime | None: ...
    @property
    def bytes_read(self) -> int: ...
    @property
    def bytes_added(self) -> int: ...
    @property
    def planned_start(self) -> dt.datetime | None: ...


def window_opening(at: dt.datetime, window_start: str,
                   tz: dt.tzinfo | None = None) -> dt.datetime:
    """The latest opening of the window (``window_start`` in ``tz``, None: this host's
    local time, as the fleet file's times are) at or before ``at``."""
    local = at.astimezone(tz)
    seconds = clock_seconds(window_start)
    opening = local.replace(hour=seconds // 3600, minute=seconds % 3600 // 60,
                            second=seconds % 60, microsecond=0)
    return opening if opening <= local else opening - dt.timedelta(days=1)


def history_from_runs(runs: Iterable[RunLike], window_start: str = "00:00",
                      tz: dt.tzinfo | None = None) -> list[History]:
    """Nights from finished runs, by the tenant each recorded (a run from before
    tenants were recorded: its host). The host alone is the machine, which need not be
    named as the fleet file names the tenant.

    A backup run (``ok`` or ``partial``) adds its bytes read and added and its
    duration as preparation; an ``overrun`` one (stopped at the deadline) too,
    and makes the night incomplete (see the module docstring). A wal-ship run
    (``ok``) adds the WAL it shipped:
    its bytes read are the WAL files' own size and its bytes added what went on
    the wire (after any day-time recompression), so the learned ratio is the
    one the link really saw; its duration is sending, and its bytes do not
    count for the preparation rate. A wal-ship run from before raw sizes were
    recorded (bytes read 0) counts its shipped bytes as both.

    The runs of one tenant in one night count as one night: their bytes and
    durations add up, as the window has to hold all of them. A run's night is the
    window (the fleet's ``[window] start``, see ``window_opening``) its slot's
    planned start falls in, or, for a run not started in a slot, its own start:
    the night that window opened, at or nearest before it, so a window crossing
    midnight is one night, dated by the evening it opened.
    """
    nights: dict[tuple[str, dt.date], History] = {}
    for run in runs:
        if run.ended is None:
            continue
        if run.kind == "backup" and run.status in ("ok", "partial", "overrun"):
            prep = True
        elif run.kind == "wal-ship" and run.status == "ok":
            prep = False
        else:
            continue
        tenant = run.tenant or run.host
        key = (tenant, window_opening(run.planned_start or run.started, window_start,
                                      tz).date())
        seconds = max(0.0, (run.ended - run.started).total_seconds())
        raw = run.bytes_read if prep or run.bytes_read > 0 else run.bytes_added
        old = nights.get(key) or History(tenant, key[1], 0, 0, 0.0, 0.0, 0)
        nights[key] = History(
            tenant, key[1], old.bytes_in + raw, old.bytes_out + run.bytes_added,
            old.prep_s + (seconds if prep else 0.0), old.send_s + (0.0 if prep else seconds),
            (old.prep_bytes or 0) + (raw if prep else 0),
            old.complete and run.status != "overrun")
    return sorted(nights.values(), key=lambda h: (h.tenant, h.date))
