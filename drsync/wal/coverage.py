"""Which moments can be restored: base backups plus the unbroken WAL that follows them.

Pure functions over plain data (tested without I/O): a base backup is
restorable once every WAL file from its start to its stop segment is
archived; it then reaches as far as the WAL continues without a gap. Where
a timeline history file says a child timeline branched off inside the
segment reached, the walk moves onto the child (the newest, as
``recovery_target_timeline = 'latest'`` does), so a restored-and-promoted
server's WAL extends the range. Times of WAL are when each file was pushed: the last commit in a
file is at most that old (at most ``archive_timeout`` older on an idle server).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BaseBackup", "Coverage", "binlog_chain", "binlog_gap", "next_segment",
           "parse_history", "run_files", "wal_coverage"]

_TAIL = 8  # how many of a run's last file names a Coverage keeps (to look for commits)


@dataclass(frozen=True)
class BaseBackup:
    snapshot_id: str
    consistent_at: str
    timeline: int
    start_wal: str
    stop_wal: str
    segment_size: int = 16 << 20
    # The agent dropped the WAL before this base by policy (a tenant without PITR,
    # ``[agent] pitr = false``): a gap that ends at its start is not a fault.
    wal_restarts: bool = False


@dataclass
class Coverage:
    snapshot_id: str
    consistent_at: str
    complete: bool  # every WAL file needed for consistency is archived
    missing: str | None  # the first missing file, if not complete
    last_wal: str | None  # the last file of the unbroken run that follows the backup
    tail: list[str] = field(default_factory=list)  # the run's last few files, oldest first
    timeline: int = 0  # the timeline the run ends on

    def to_json(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "consistent_at": self.consistent_at,
                "complete": self.complete, "first_missing_wal": self.missing,
                "last_wal": self.last_wal, "timeline": self.timeline}


def _split(name: str, segment_size: int) -> tuple[int, int]:
    per_id = 0x100000000 // segment_size
    return int(name[:8], 16), int(name[8:16], 16) * per_id + int(name[16:24], 16)


def _name(tli: int, segno: int, segment_size: int) -> str:
    per_id = 0x100000000 // segment_size
    return f"{tli:08X}{segno // per_id:08X}{segno % per_id:08X}"


def next_segment(name: str, segment_size: int = 16 << 20) -> str:
    tli, segno = _split(name, segment_size)
    return _name(tli, segno + 1, segment_size)


def parse_history(text: str) -> tuple[int, int] | None:
    """A ``.history`` file's last entry: (parent timeline, switch LSN), or None if empty.

    Lines are ``parentTLI <tab> switchpoint <tab> reason``; ``#`` starts a comment.
    """
    last = None
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2:
            high, _, low = fields[1].partition("/")
            last = (int(fields[0]), (int(high, 16) << 32) | int(low, 16))
    return last


def run_files(base: BaseBackup, archived: set[str],
              switches: Mapping[int, tuple[int, int]] | None = None,
              ) -> tuple[list[str], str | None, int]:
    """The unbroken run of archived WAL files from the base backup's start segment (onto
    the newest child timeline where a history file says one branched off after the stop
    segment); the first missing file needed for consistency (None: complete); and the
    timeline the run ends on."""
    switches = switches or {}
    size = base.segment_size
    tli, segno = _split(base.start_wal, size)
    stop = _split(base.stop_wal, size)[1]
    names: list[str] = []
    while True:
        children = [c for c, (parent, lsn) in switches.items()
                    if parent == tli and lsn // size == segno and segno > stop]
        if children:
            tli = max(children)
        name = _name(tli, segno, size)
        if name not in archived:
            return names, name if segno <= stop else None, tli
        names.append(name)
        segno += 1


def wal_coverage(bases: Iterable[BaseBackup], archived: set[str],
                 switches: Mapping[int, tuple[int, int]] | None = None) -> list[Coverage]:
    """For each base backup: is it restorable, and up to which WAL file.

    ``switches`` maps a child timeline to (parent timeline, switch LSN), from the
    archived ``.history`` files.
    """
    result = []
    for base in bases:
        names, missing, tli = run_files(base, archived, switches)
        tail = names[-_TAIL:]
        result.append(Coverage(base.snapshot_id, base.consistent_at, missing is None, missing,
                               tail[-1] if missing is None and tail else None,
                               tail if missing is None else [], tli))
    return result


# MariaDB: a dump replays forward through the binlogs that follow its position's file
# without a hole (drsync.mariadbrestore); check and pitr-range walk the same chain.

def binlog_chain(first: str, archived: set[str]) -> list[str]:
    """The archived binlogs from ``first`` on, up to the first gap."""
    from drsync.sources.mariadb.binlog import next_binlog

    chain = []
    name = first
    while name in archived:
        chain.append(name)
        name = next_binlog(name)
    return chain


def binlog_gap(first: str, chain: list[str], archived: set[str]) -> str | None:
    """The binlog missing after ``chain`` when later ones of the same log are archived (a
    hole no replay crosses: the receiver was down longer than the server kept binlogs, or a
    file was lost), else None."""
    from drsync.repo.wal import is_binlog_name
    from drsync.sources.mariadb.binlog import next_binlog

    if not is_binlog_name(first):
        return None
    missing = next_binlog(chain[-1]) if chain else first
    base, _, number = missing.rpartition(".")
    later = [n for n in archived if n.rpartition(".")[0] == base
             and int(n.rpartition(".")[2]) > int(number)]
    return missing if later else None
