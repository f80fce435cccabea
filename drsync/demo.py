"""The demo job: a generated municipal database backed up, changed, backed up, restored.

This is the main job on the embedded default (a local-directory store, a
SQLite catalog, a SQLite source), small enough to run in under a minute and
real enough to show dedup, encryption and a verified restore.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drsync.backup import BackupRequest, BackupResult, run_backup
from drsync.catalog.db import Catalog
from drsync.errors import UsageError
from drsync.repo import KdfParams, RepoConfig, Repository, Secret
from drsync.restore import RestoreResult, restore_snapshot
from drsync.store import LocalStore

__all__ = ["DemoReport", "run_demo"]

MARKER = ".drsync-demo"
DB_NAME = "municipal.db"


@dataclass
class DemoReport:
    directory: str
    db_bytes: int
    rows_changed: int
    backups: list[BackupResult] = field(default_factory=list)
    restore: RestoreResult | None = None
    differences: list[str] = field(default_factory=list)
    generate_s: float = 0.0

    @property
    def verified(self) -> bool:
        return self.restore is not None and not self.differences

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "db_bytes": self.db_bytes,
            "rows_changed": self.rows_changed,
            "generate_s": round(self.generate_s, 3),
            "backups": [b.to_json() for b in self.backups],
            "restore": self.restore.to_json() if self.restore else None,
            "verified": self.verified,
            "differences": self.differences[:20],
        }


def _fresh_dir(directory: Path) -> None:
    """Start clean, but only ever delete a directory an earlier demo made."""
    if directory.exists():
        if not (directory / MARKER).exists() and any(directory.iterdir()):
            raise UsageError(f"{directory} exists and was not made by `drsync demo`; "
                             "choose another --dir")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("made by drsync demo; safe to delete\n")


def run_demo(directory: str | Path, *, size_mb: float = 50, change_fraction: float = 0.01,
             kdf: KdfParams | None = None,
             step: Callable[[str], None] | None = None) -> DemoReport:
    from drsync import sample

    say = step or (lambda _msg: None)
    root = Path(directory).absolute()
    _fresh_dir(root)
    db = root / "tenant" / DB_NAME
    db.parent.mkdir()
    say(f"generating a {size_mb:.0f} MB municipal database (residents, tax, health insurance)")
    started = time.monotonic()
    sample.generate(db, size_mb=size_mb)
    report = DemoReport(str(root), db.stat().st_size, 0,
                        generate_s=time.monotonic() - started)

    say("initialising an encrypted repository with a passphrase and a key file")
    store = LocalStore(root / "repo")
    repo = Repository.init(store, "demo passphrase", RepoConfig(), kdf=kdf or KdfParams())
    key_file = repo.add_key_file()
    key_file.write(root / "tenant.key")
    repo = Repository.open(store, Secret(key_file=key_file, source=str(root / "tenant.key")))
    catalog = Catalog(str(root / "catalog.sqlite"))

    say("night 1: backing up the database (SQLite online backup API)")
    request = BackupRequest(sqlite=str(db), tags=["demo", "night-1"])
    report.backups.append(run_backup(repo, request, catalog=catalog))
    say(f"changing {change_fraction:.0%} of the rows")
    report.rows_changed = sample.mutate(db, fraction=change_fraction)
    say("night 2: backing up again (only changed chunks are stored)")
    request = BackupRequest(sqlite=str(db), tags=["demo", "night-2"])
    report.backups.append(run_backup(repo, request, catalog=catalog))

    say("restoring the latest snapshot elsewhere and comparing row for row")
    target = root / "restore"
    report.restore = restore_snapshot(repo, "latest", target=target)
    report.differences = sample.compare(db, target / DB_NAME)
    catalog.close()
    return report
