"""The WAL archive as a repository holds it: base backups, archived WAL names, coverage.

``pitr-range`` and ``check`` ask the same questions (which base backups are
there, which WAL files are archived, how far each base backup reaches) and
get their answers here, so they never disagree. The policy itself is the
pure ``drsync.wal.coverage``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from drsync.errors import IntegrityError
from drsync.repo.objects import FormatError
from drsync.repo.repository import Repository
from drsync.repo.snapshot import Snapshot
from drsync.repo.wal import WAL_PREFIX, open_wal, wal_key
from drsync.wal.coverage import BaseBackup, Coverage, parse_history, wal_coverage
from drsync.wal.spool import Spool

__all__ = ["WalArchive", "base_backups", "wal_archive"]


def base_backups(snapshots: Iterable[Snapshot]) -> list[BaseBackup]:
    """The pg_base snapshots, as the coverage policy sees them."""
    bases = []
    for s in snapshots:
        if s.source_kind != "pg_base":
            continue
        spec = s.source_spec
        bases.append(BaseBackup(s.id, str(spec.get("consistent_at", s.time)),
                                int(spec["timeline"]), str(spec["start_wal"]),
                                str(spec["stop_wal"]),
                                int(spec.get("wal_segment_size", 16 << 20)),
                                bool(spec.get("wal_restarts", False))))
    return bases


@dataclass
class WalArchive:
    """What the store (and optionally a spool) hold of the WAL, and the base backups."""

    repo: Repository
    bases: list[BaseBackup]
    store_names: list[str]
    spool: Spool | None = None
    spool_names: list[str] = field(default_factory=list)

    @property
    def archived(self) -> set[str]:
        return set(self.store_names) | set(self.spool_names)

    def read(self, name: str, length: int | None = None) -> bytes:
        """The object for ``name`` (or its first ``length`` bytes), spool first."""
        if self.spool is not None and name in self.spool_names:
            return self.spool.read(name, length)
        if length:
            return self.repo.store.get(wal_key(name), 0, length)
        return self.repo.store.get(wal_key(name))

    def timeline_switches(self) -> dict[int, tuple[int, int]]:
        """child timeline -> (parent, switch LSN), from the archived .history files."""
        switches = {}
        for name in sorted(self.archived):
            if not name.endswith(".history"):
                continue
            try:
                _head, plain = open_wal(self.repo.key, self.read(name), name)
                entry = parse_history(plain.decode("utf-8", "replace"))
            except (FormatError, ValueError) as err:
                raise IntegrityError(f"{self.repo.url}: timeline history {name}: {err}") from None
            if entry is not None:
                switches[int(name.split(".", 1)[0], 16)] = entry
        return switches

    def coverage(self) -> list[Coverage]:
        """For each base backup, in order: restorable or not, and up to which file."""
        return wal_coverage(self.bases, self.archived, self.timeline_switches())


def wal_archive(repo: Repository, spool: Spool | None = None,
                snapshots: Iterable[Snapshot] | None = None) -> WalArchive:
    """The archive of ``repo`` (plus ``spool``); ``snapshots`` if already loaded."""
    bases = base_backups(repo.snapshots() if snapshots is None else snapshots)
    # Listed after the snapshots: a base backup's WAL was archived before it was written.
    store_names = sorted(info.key.removeprefix(WAL_PREFIX) for info in repo.store.list(WAL_PREFIX))
    return WalArchive(repo, bases, store_names, spool,
                      spool.names() if spool is not None else [])
