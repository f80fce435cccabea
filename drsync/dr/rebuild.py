"""The catalog rebuilt from the stores alone: what losing the primary and its catalog leaves.

For one repository (``rebuild_repo``) or every tenant of a fleet file
(``rebuild_fleet``, each opened as ``dr`` opens it: its key_file, else the
fleet's escrow key): every sealed run record and drill record is imported
(by id: nothing is duplicated, a run already known takes the store's
outcome), and the WAL ranges (pitr-range's ``base_backups``: how far each
base backup's archived WAL reaches) replace the repository's rows.
Snapshots are not copied: they are always read from the store itself. One
tenant that cannot be opened is an outcome with its error; the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drsync.dr.probe import open_tenant
from drsync.errors import DrsyncError
from drsync.plan.fleet import Fleet
from drsync.settings import Settings

if TYPE_CHECKING:
    from drsync.catalog.db import Catalog
    from drsync.repo import Repository

__all__ = ["Rebuilt", "rebuild_fleet", "rebuild_repo"]


@dataclass
class Rebuilt:
    tenant: str | None
    repo: str | None
    status: str = "ok"  # ok, failed, skipped (no repository configured)
    runs: int = 0
    drills: int = 0
    wal_ranges: int = 0
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "repo": self.repo, "status": self.status,
                "runs": self.runs, "drills": self.drills, "wal_ranges": self.wal_ranges,
                "error": self.error}


def rebuild_repo(catalog: Catalog, repo: Repository, tenant: str | None = None) -> Rebuilt:
    """Import the repository's run and drill records and its WAL ranges into ``catalog``."""
    from drsync.pgrestore import pitr_range
    from drsync.repo.drills import load_drills
    from drsync.repo.runs import load_runs

    runs = catalog.import_runs(repo.url, load_runs(repo))
    drills = catalog.import_drills(repo.url, load_drills(repo))
    done = Rebuilt(tenant, repo.url, runs=runs, drills=drills)
    try:
        rows = pitr_range(repo)["base_backups"]
    except DrsyncError as err:  # a damaged WAL header: the records imported stand
        done.status, done.error, done.exit_code = "failed", f"WAL ranges: {err}", err.exit_code
        return done
    done.wal_ranges = catalog.import_wal_ranges(repo.url, tenant, rows)
    return done


def rebuild_fleet(catalog: Catalog, fleet: Fleet, settings: Settings) -> list[Rebuilt]:
    """``rebuild_repo`` for every tenant of the fleet, in the fleet file's order."""
    done = []
    for tenant in fleet.tenants:
        if not tenant.repo:
            done.append(Rebuilt(tenant.name, None, "skipped",
                                error="no repository configured"))
            continue
        try:
            done.append(rebuild_repo(catalog, open_tenant(fleet, tenant, settings),
                                     tenant.name))
        except DrsyncError as err:
            done.append(Rebuilt(tenant.name, tenant.repo, "failed", error=str(err),
                                exit_code=err.exit_code))
    return done
