"""Forget: remove the snapshots a retention policy does not keep, or those named.

Only the snapshot objects (``snapshots/<id>``) are removed, under the writer
lock; their packs and the WAL no kept base backup needs are removed later by
``prune``. A snapshot that cannot be read is neither kept nor removed (it
is reported: ``check`` names it). A delete the store refuses under Object
Lock is skipped and reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from drsync.errors import ObjectLocked, UsageError
from drsync.repo.lock import RepositoryLock
from drsync.repo.repository import Repository
from drsync.repo.retention import (
    Group,
    RetentionPolicy,
    apply_policy,
    binlog_starts,
    expired_binlogs,
    expired_wal,
)
from drsync.repo.snapshot import Snapshot
from drsync.repo.wal import WAL_PREFIX

__all__ = ["ForgetResult", "forget"]


@dataclass
class ForgetResult:
    policy: RetentionPolicy
    groups: list[Group]
    dry_run: bool
    removed: list[str] = field(default_factory=list)  # snapshot ids removed (or, dry, to be)
    locked: list[str] = field(default_factory=list)  # kept by the store's Object Lock
    unreadable: list[str] = field(default_factory=list)
    wal_expirable: int = 0  # WAL files the next prune removes

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "policy": self.policy.to_json(),
                "groups": [g.to_json() for g in self.groups],
                "kept": sum(len(g.kept) for g in self.groups),
                "removed": self.removed, "locked": self.locked,
                "unreadable": self.unreadable, "wal_expirable": self.wal_expirable}


def forget(repo: Repository, policy: RetentionPolicy, *, dry_run: bool = False,
           snapshots: Sequence[str] = (),
           on_removed: Callable[[str], None] | None = None) -> ForgetResult:
    """Apply ``policy`` to every group of snapshots, or (``snapshots``: ids or unique
    prefixes) remove just those, whatever the policy; a dry run only decides.
    ``on_removed`` is told each snapshot id as soon as its delete succeeded (the catalog
    records it forgotten then, so a forget cut short is not taken for a rollback)."""
    if not snapshots:
        policy.validate()
        if policy.empty:
            raise UsageError("no retention policy: give at least one --keep-* option or set "
                             "[retention] in the config file (forget keeps everything "
                             "otherwise), or name the snapshots to remove")
    if dry_run:
        return _forget(repo, policy, True, snapshots, None)
    with RepositoryLock(repo.store, "forget"):
        return _forget(repo, policy, False, snapshots, on_removed)


def _named(repo: Repository, refs: Sequence[str], snaps: list[Snapshot]) -> list[Group]:
    """Every group with the named snapshots removed, the others kept as "not named"."""
    named = {repo.find_snapshot(ref).id for ref in refs}  # NoSuchSnapshot: one line, exit 16
    groups = apply_policy(snaps, RetentionPolicy(keep_last=-1))
    for group in groups:
        for d in group.decisions:
            d.reasons = [] if d.snapshot.id in named else ["not named"]
    return groups


def _forget(repo: Repository, policy: RetentionPolicy, dry_run: bool,
            refs: Sequence[str], on_removed: Callable[[str], None] | None) -> ForgetResult:
    unreadable: list[str] = []
    snaps = repo.snapshots(warn=unreadable.append)
    groups = _named(repo, refs, snaps) if refs else apply_policy(snaps, policy)
    result = ForgetResult(policy, groups, dry_run, unreadable=unreadable)
    for group in result.groups:
        for decision in group.removed:
            snapshot_id = decision.snapshot.id
            if not dry_run:
                try:
                    repo.store.delete(f"snapshots/{snapshot_id}")
                except ObjectLocked:
                    result.locked.append(snapshot_id)
                    continue
                if on_removed is not None:
                    on_removed(snapshot_id)
            result.removed.append(snapshot_id)
    from drsync.wal.archive import base_backups

    gone = set(result.removed)
    kept = [s for s in snaps if s.id not in gone]
    try:
        bases = base_backups(kept)
    except (KeyError, ValueError, TypeError):
        return result  # a malformed pg_base snapshot: nothing expires (check names it)
    names = [i.key.removeprefix(WAL_PREFIX) for i in repo.store.list(WAL_PREFIX)]
    result.wal_expirable = len(expired_wal([(b.start_wal, b.segment_size) for b in bases],
                                           names)) + len(expired_binlogs(binlog_starts(kept),
                                                                         names))
    return result
