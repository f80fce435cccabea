"""What ``agent status`` reports and the metrics carry: the last run, the next one, the
WAL spool's depth, and the RPO now (age of the newest restorable point, WAL included)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drsync.agent.config import AgentConfig, TenantSlot
from drsync.agent.policy import decide, health
from drsync.agent.state import AgentState, agent_dir
from drsync.repo import Repository
from drsync.wal.spool import Spool

__all__ = ["SpoolDepth", "agent_status", "newest_restorable", "spool_depth"]


@dataclass(frozen=True)
class SpoolDepth:
    files: int
    bytes: int
    oldest: str | None  # ISO time of the oldest spooled file

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "bytes": self.bytes, "oldest": self.oldest}


def spool_depth(spool: Spool | None) -> SpoolDepth:
    if spool is None:
        return SpoolDepth(0, 0, None)
    files, sizes, oldest = spool.usage()
    return SpoolDepth(files, sizes,
                      datetime.fromtimestamp(oldest, UTC).isoformat() if oldest else None)


def newest_restorable(repo: Repository, spool: Spool | None) -> tuple[str | None, str]:
    """(ISO time of the newest restorable point, what it is): the latest snapshot, or, for
    PostgreSQL base backups with archived WAL and MariaDB dumps with archived binlogs, the
    latest point ``pitr-range`` finds."""
    snaps = repo.snapshots()
    newest = max((s.time for s in snaps), default=None)
    basis = "snapshot"
    if any(s.source_kind == "pg_base" for s in snaps):
        from drsync.pgrestore import pitr_range

        latest = pitr_range(repo, spool)["latest"]
        if latest and (newest is None or _parse(latest) > _parse(newest)):
            newest, basis = latest, "wal"
    if any(s.source_kind == "mariadb_dump" for s in snaps):
        from drsync.mariadbrestore import mariadb_pitr_range

        found = mariadb_pitr_range(repo, spool, snaps)
        latest = found["latest"] if found else None
        if latest and (newest is None or _parse(latest) > _parse(newest)):
            newest, basis = latest, "binlog"
    return newest, basis


def _parse(iso: str) -> datetime:
    at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def age_s(iso: str | None, now: datetime) -> float | None:
    return None if iso is None else max(0.0, (now - _parse(iso)).total_seconds())


def agent_status(config: AgentConfig, slot: TenantSlot, repo: Repository,
                 spool: Spool | None, now: datetime | None = None) -> dict[str, Any]:
    """The ``agent status --json`` document; ``healthy`` false: exit 1."""
    now = now or datetime.now().astimezone()
    state = AgentState.load(agent_dir(config.settings.state_dir, config.tenant) / "state.json")
    point, basis = newest_restorable(repo, spool)
    rpo = age_s(point, now)
    decision = decide(now, slot, state.last_window)
    if decision.action == "missed":  # the agent will record it; its next slot is the news
        decision = decide(now, slot, decision.window)
    run = state.last_run
    problems = health(run.status if run else None, rpo, config.rpo_hours)
    return {
        "tenant": config.tenant,
        "repository": repo.url,
        "healthy": not problems,
        "problems": problems,
        "last_run": run.to_json() if run else None,
        "last_success": state.last_success,
        "next_run": (now if decision.action == "run" else decision.at).isoformat(),
        "next_run_reason": decision.reason,
        "spool": spool_depth(spool).to_json(),
        "newest_restorable": point,
        "newest_restorable_basis": basis if point else None,
        "rpo_s": None if rpo is None else round(rpo, 3),
        "rpo_hours_target": config.rpo_hours,
        "slot": slot.to_json(),
    }
