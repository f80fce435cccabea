"""Which moments can be restored: base backups plus the unbroken WAL that follows them.

Pure functions over plain data (tested without I/O): a base backup is
restorable once every WAL file from its start to its stop segment is
archived; it then reaches as far as the WAL continues without a gap on its
timeline. Times of WAL are when each file was pushed: the last commit in a
file is at most that old (at most ``archive_timeout`` older on an idle server).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["BaseBackup", "Coverage", "next_segment", "wal_coverage"]


@dataclass(frozen=True)
class BaseBackup:
    snapshot_id: str
    consistent_at: str
    timeline: int
    start_wal: str
    stop_wal: str
    segment_size: int = 16 << 20


@dataclass
class Coverage:
    snapshot_id: str
    consistent_at: str
    complete: bool  # every WAL file needed for consistency is archived
    missing: str | None  # the first missing file, if not complete
    last_wal: str | None  # the last file of the unbroken run that follows the backup

    def to_json(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "consistent_at": self.consistent_at,
                "complete": self.complete, "first_missing_wal": self.missing,
                "last_wal": self.last_wal}


def _split(name: str, segment_size: int) -> tuple[int, int]:
    per_id = 0x100000000 // segment_size
    return int(name[:8], 16), int(name[8:16], 16) * per_id + int(name[16:24], 16)


def next_segment(name: str, segment_size: int = 16 << 20) -> str:
    per_id = 0x100000000 // segment_size
    tli, segno = _split(name, segment_size)
    segno += 1
    return f"{tli:08X}{segno // per_id:08X}{segno % per_id:08X}"


def wal_coverage(bases: Iterable[BaseBackup], archived: set[str]) -> list[Coverage]:
    """For each base backup: is it restorable, and up to which WAL file."""
    result = []
    for base in bases:
        name = base.start_wal
        missing = None
        last = None
        while True:
            if name not in archived:
                if _split(name, base.segment_size)[1] <= _split(base.stop_wal,
                                                                base.segment_size)[1]:
                    missing = name
                break
            last = name
            name = next_segment(name, base.segment_size)
        result.append(Coverage(base.snapshot_id, base.consistent_at, missing is None, missing,
                               last if missing is None else None))
    return result
