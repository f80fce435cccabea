"""Retention policy: which snapshots ``forget`` keeps, and why (pure, no I/O).

The semantics are restic's (``restic forget``):

- Snapshots are grouped by *host and source* (the source kind plus what names
  it: the paths of a files backup, a stream's name, a SQLite path, a database
  and its cluster's system identifier). Each group is judged on its own, so
  ``--keep-last 7`` keeps seven of every tenant database and of every file set.
- Within a group, newest first, each rule keeps snapshots:
  ``keep_last N`` the N newest; ``keep_hourly/daily/weekly/monthly/yearly N``
  the newest snapshot of each of the N newest hours, days, ISO weeks, months,
  years that hold a snapshot (a bucket with none does not count, so a missed
  night does not shorten the history); ``keep_within D`` every snapshot at
  most D older than the group's newest snapshot (not than now: a tenant whose
  backups stopped keeps its last ones); ``keep_tags`` every snapshot carrying
  one of the tags. N = -1 means no limit.
- A snapshot is kept if any rule keeps it; its reasons list every rule that
  did (``daily``, ``weekly``, ...). Everything else is removed.
- Buckets are taken in UTC (snapshot times are UTC), so a policy means the same
  thing on every host of the fleet.

An empty policy keeps everything; ``forget`` refuses one rather than guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from drsync.errors import UsageError
from drsync.repo.snapshot import Snapshot
from drsync.repo.wal import is_binlog_name

__all__ = ["Decision", "Duration", "Group", "RetentionPolicy", "apply_policy", "binlog_starts",
           "expired_binlogs", "expired_wal", "group_key", "parse_duration"]

_DURATION = re.compile(r"(\d+)([ymdh])")
# The source fields that name what was backed up (the rest, such as LSNs, differ every run).
_IDENTITY = ("paths", "path", "name", "database", "system_identifier")


@dataclass(frozen=True)
class Duration:
    """``1y2m3d4h``: calendar years and months, days and hours (restic's form)."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def before(self, at: datetime) -> datetime:
        """``at`` minus this duration (months clamp to the month's last day)."""
        month0 = at.year * 12 + at.month - 1 - self.years * 12 - self.months
        year, month = divmod(month0, 12)
        try:
            day = min(at.day, _days_in(year, month + 1))
            shifted = at.replace(year=year, month=month + 1, day=day)
            return shifted - timedelta(days=self.days, hours=self.hours)
        except (ValueError, OverflowError):  # before year 1: every snapshot is within it
            return datetime.min.replace(tzinfo=at.tzinfo)

    def __str__(self) -> str:
        text = "".join(f"{n}{u}" for n, u in ((self.years, "y"), (self.months, "m"),
                                              (self.days, "d"), (self.hours, "h")) if n)
        return text or "0h"


def _days_in(year: int, month: int) -> int:
    nxt = datetime(year + month // 12, month % 12 + 1, 1)
    return (nxt - timedelta(days=1)).day


def parse_duration(text: str) -> Duration:
    """``30d``, ``1y2m``, ``12h``; UsageError naming the text when it is not one, or is
    zero."""
    cleaned = text.strip()
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise UsageError(f"duration {text!r} is not like 30d, 1y2m or 12h "
                         "(units y, m, d, h)")
    amounts = {"y": 0, "m": 0, "d": 0, "h": 0}
    for number, unit in parts:
        amounts[unit] += int(number)
    if not any(amounts.values()):
        # keep_within keeps what is less than this older than the newest: none at all,
        # which would let one typo remove every snapshot of every group.
        raise UsageError(f"duration {text!r} is zero: it would keep no snapshot; give a "
                         "positive one like 30d, or leave keep_within out")
    return Duration(amounts["y"], amounts["m"], amounts["d"], amounts["h"])


_BUCKETS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: Duration | None = None
    keep_tags: tuple[str, ...] = ()

    def validate(self) -> RetentionPolicy:
        for name in ("keep_last", *(f"keep_{b}" for b in _BUCKETS)):
            value = getattr(self, name)
            if type(value) is not int or value < -1:
                raise UsageError(f"--{name.replace('_', '-')} must be a whole number "
                                 f"(-1 for no limit), got {value!r}")
        if any(not tag.strip() for tag in self.keep_tags):
            # An empty tag (an unset variable) matches no snapshot: as the only rule, it
            # would remove them all.
            raise UsageError("--keep-tag '' is empty (an unset variable?): give the tag to keep")
        return self

    @property
    def empty(self) -> bool:
        counts = [self.keep_last, *(getattr(self, f"keep_{b}") for b in _BUCKETS)]
        return not any(counts) and self.keep_within is None and not self.keep_tags

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"keep_last": self.keep_last}
        doc.update({f"keep_{b}": getattr(self, f"keep_{b}") for b in _BUCKETS})
        doc["keep_within"] = None if self.keep_within is None else str(self.keep_within)
        doc["keep_tags"] = list(self.keep_tags)
        return doc


@dataclass
class Decision:
    snapshot: Snapshot
    reasons: list[str] = field(default_factory=list)  # empty: removed

    @property
    def keep(self) -> bool:
        return bool(self.reasons)

    def to_json(self) -> dict[str, Any]:
        s = self.snapshot
        return {"id": s.id, "time": s.time, "tags": s.tags, "reasons": self.reasons}


@dataclass
class Group:
    host: str
    source: str
    decisions: list[Decision]  # newest first

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def removed(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "source": self.source,
                "kept": [d.to_json() for d in self.kept],
                "removed": [d.to_json() for d in self.removed]}


def group_key(snap: Snapshot) -> tuple[str, str]:
    """(host, source): what restic's default ``--group-by host,paths`` means here."""
    ident = {k: snap.source_spec[k] for k in _IDENTITY if k in snap.source_spec}
    if isinstance(ident.get("paths"), list):
        ident["paths"] = sorted(str(p) for p in ident["paths"])
    return snap.host, snap.source_kind + (" " + json.dumps(ident, sort_keys=True)
                                          if ident else "")


def _when(snap: Snapshot) -> datetime:
    at = datetime.fromisoformat(snap.time.replace("Z", "+00:00"))
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


def _decide(snaps: Sequence[Snapshot], policy: RetentionPolicy) -> list[Decision]:
    ordered = sorted(snaps, key=lambda s: (s.time, s.id), reverse=True)
    decisions = [Decision(s) for s in ordered]
    if not ordered:
        return decisions
    times = [_when(s) for s in ordered]
    for i, d in enumerate(decisions):
        if policy.keep_last == -1 or i < policy.keep_last:
            d.reasons.append("last")
    for name, bucket_of in _BUCKETS.items():
        limit = getattr(policy, f"keep_{name}")
        seen: set[tuple[int, ...]] = set()
        for d, at in zip(decisions, times, strict=True):
            if limit != -1 and len(seen) >= limit:
                break
            bucket = bucket_of(at)
            if bucket not in seen:  # newest first: the first of a bucket is its newest
                seen.add(bucket)
                d.reasons.append(name)
    if policy.keep_within is not None:
        cutoff = policy.keep_within.before(times[0])
        for d, at in zip(decisions, times, strict=True):
            if at > cutoff:
                d.reasons.append(f"within {policy.keep_within}")
    for d in decisions:
        d.reasons += [f"tag {t}" for t in policy.keep_tags if t in d.snapshot.tags]
    return decisions


def apply_policy(snapshots: Iterable[Snapshot], policy: RetentionPolicy) -> list[Group]:
    """Every group of ``snapshots`` with each snapshot's fate; groups sorted by key."""
    groups: dict[tuple[str, str], list[Snapshot]] = {}
    for snap in snapshots:
        groups.setdefault(group_key(snap), []).append(snap)
    return [Group(host, source, _decide(snaps, policy))
            for (host, source), snaps in sorted(groups.items())]


def _position(name: str, segment_size: int) -> int:
    """The WAL position (bytes) where the segment ``name`` (its first 24 digits) starts."""
    per_id = 0x100000000 // segment_size
    return (int(name[8:16], 16) * per_id + int(name[16:24], 16)) * segment_size


def expired_wal(base_starts: Iterable[tuple[str, int]], names: Iterable[str]) -> list[str]:
    """The archived WAL files no kept base backup can use: every segment (and its
    ``.partial`` or ``.backup`` label) that ends before the earliest start of any kept
    base backup, on any timeline. ``base_starts`` are (start WAL, segment size) of
    the kept base backups; with none, nothing expires (a base backup may be being
    taken: its WAL is archived before its snapshot is written). Timeline history
    files never expire (they are tiny and say how timelines branched), nor do
    MariaDB binary logs (no base backup's WAL).

    Every kept base backup needs its WAL from its own start onward, without a gap,
    to reach every moment up to the next kept one, so nothing at or after the
    earliest start may go."""
    starts = [(_position(name, size), size) for name, size in base_starts]
    if not starts:
        return []
    earliest, size = min(starts)
    return sorted(n for n in names
                  if not n.endswith(".history") and len(n) >= 24 and not is_binlog_name(n)
                  and _position(n, size) + size <= earliest)


def binlog_starts(snapshots: Iterable[Snapshot]) -> list[str]:
    """The binlog file each MariaDB dump among ``snapshots`` is consistent at."""
    return [str(s.source_spec.get("binlog_file")) for s in snapshots
            if s.source_kind == "mariadb_dump"
            and is_binlog_name(str(s.source_spec.get("binlog_file")))]


def expired_binlogs(dump_starts: Iterable[str], names: Iterable[str]) -> list[str]:
    """The archived MariaDB binlogs no kept dump can use: those before the earliest kept
    dump's binlog file, of the same log base name. ``dump_starts`` are the kept dumps'
    ``binlog_file``s; with none, nothing expires (a dump may be being taken), and a base
    name no kept dump starts in is kept whole (the server's log_bin was renamed: its old
    logs are not provably useless)."""
    earliest: dict[str, int] = {}
    for start in dump_starts:
        base, _, number = start.rpartition(".")
        earliest[base] = min(earliest.get(base, int(number)), int(number))
    out = []
    for name in names:
        if not is_binlog_name(name):
            continue
        base, _, number = name.rpartition(".")
        if base in earliest and int(number) < earliest[base]:
            out.append(name)
    return sorted(out)
